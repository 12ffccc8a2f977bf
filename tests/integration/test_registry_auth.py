"""Registries that need a login: HTTP basic auth (docker-registry with htpasswd) and Docker's token
flow (docker-registry with `auth: token:` and a real token service on another loopback port).

The registry client (tags, manifests) and Docker Engine (push and pull, through `docker login` of
the SDK) both get the site's `registry_username` and $ISLETOPS_REGISTRY_PASSWORD; the password
shows up nowhere: not in output, not in the debug log, not in files the commands write.
"""

import logging
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.docker_engine import DockerEngine
from isletops.errors import RegistryError
from isletops.registry import (
    PASSWORD_ENV_VAR,
    USERNAME_ENV_VAR,
    RegistryClient,
    RegistryCredentials,
)
from isletops.release import COMPONENTS, image_name
from tests.fixtures.registry import AUTH_PASSWORD, AUTH_USER

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "not-the-password-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def engine() -> DockerEngine:
    return DockerEngine()


@pytest.fixture(scope="module")
def tiny_builds(engine, tmp_path_factory):
    """`isletnet-<c>:<build tag>` for every component: tiny FROM-scratch images (no pull needed)."""
    build_tag = f"authtest-{uuid.uuid4().hex[:8]}"
    context = tmp_path_factory.mktemp("ctx")
    (context / "marker").write_text(build_tag)
    made = []
    for component in COMPONENTS:
        (context / "Dockerfile").write_text(f"FROM scratch\nCOPY marker /{component}\n")
        ref = f"isletnet-{component}:{build_tag}"
        engine.build_image(context, context / "Dockerfile", ref, labels={"org.isletnet.test": "1"})
        made.append(ref)
    yield build_tag
    for ref in made:
        engine.remove_image(ref, force=True)


@pytest.fixture(autouse=True)
def no_credentials_left(monkeypatch):
    """Credentials come from the test's own environment only (nothing is kept per process)."""
    monkeypatch.delenv(USERNAME_ENV_VAR, raising=False)
    monkeypatch.delenv(PASSWORD_ENV_VAR, raising=False)
    registries: list[str] = []
    return registries


def site(tmp_path: Path, registry: str, username: str = AUTH_USER) -> Path:
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "registry": registry, "registry_username": username,
        "instances_root": str(tmp_path / "instances"), "default_instance": "auth",
    }))
    return config


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def pushed_refs(registry: str, tag: str) -> list[str]:
    return [image_name(component, tag, registry) for component in COMPONENTS]


def written_files(root: Path) -> str:
    return "".join(path.read_text(errors="replace") for path in root.rglob("*") if path.is_file())


@pytest.mark.parametrize("flow", ["basic", "token"])
def test_release_releases_and_pull_with_credentials(
    flow, request, tmp_path, engine, tiny_builds, monkeypatch, caplog, no_credentials_left
):
    if flow == "basic":
        registry, service = request.getfixturevalue("auth_registry"), None
    else:
        registry, service = request.getfixturevalue("token_registry")
    no_credentials_left.append(registry)
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(PASSWORD_ENV_VAR, AUTH_PASSWORD)
    config = site(tmp_path, registry)
    tag = ""
    try:
        released = cli(config, "-v", "release", "--build-tag", tiny_builds)
        assert released.exit_code == 0, released.output
        tag = released.stdout.strip().splitlines()[-1]
        listing = cli(config, "releases")
        assert listing.exit_code == 0, listing.output
        assert tag in listing.stdout and "INCOMPLETE" not in listing.stdout

        credentials = RegistryCredentials(AUTH_USER, AUTH_PASSWORD)
        client = RegistryClient(registry, credentials=credentials)  # credentials are passed, never global
        assert client.missing_images(tag) == []
        if service is not None:  # the token service, not basic auth, let us in
            assert f"repository:{image_name('backend', tag, '').split(':')[0]}:pull" in service.issued
            assert service.refused == 0

        # A pull from a fresh engine given the credentials logs in by itself (the image was removed first).
        ref = image_name("backend", tag, registry)
        engine.remove_image(ref, force=True)
        DockerEngine(credentials={registry: credentials}).pull_image(ref)
        assert engine.image_exists(ref)

        # Without credentials the same pull is refused, as a sentence.
        engine.remove_image(ref, force=True)
        with pytest.raises(RegistryError, match=f"Pulling {ref} failed"):
            DockerEngine().pull_image(ref)
    finally:
        for ref in pushed_refs(registry, tag) if tag else []:
            engine.remove_image(ref, force=True)
    for text in (released.output, listing.output, caplog.text, written_files(tmp_path / "instances")
                 if (tmp_path / "instances").exists() else ""):
        assert AUTH_PASSWORD not in text


@pytest.mark.parametrize("flow", ["basic", "token"])
def test_wrong_password_is_one_sentence_and_changes_nothing(
    flow, request, tmp_path, engine, tiny_builds, monkeypatch, no_credentials_left
):
    if flow == "basic":
        registry, service = request.getfixturevalue("auth_registry"), None
    else:
        registry, service = request.getfixturevalue("token_registry")
    no_credentials_left.append(registry)
    monkeypatch.setenv(PASSWORD_ENV_VAR, WRONG_PASSWORD)
    config = site(tmp_path, registry)
    sentence = f"Registry {registry} refused the credentials for user {AUTH_USER}"
    for args in (["releases"], ["release", "--build-tag", tiny_builds]):
        result = cli(config, *args)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and sentence in result.output, result.output
        assert PASSWORD_ENV_VAR in result.output and "Traceback" not in result.output
        assert WRONG_PASSWORD not in result.output
    if service is not None:
        assert service.refused >= 2 and service.issued == []
    # Docker Engine's own login (used for push and pull) says the same.
    with pytest.raises(RegistryError, match=sentence):
        DockerEngine().login(registry, RegistryCredentials(AUTH_USER, WRONG_PASSWORD))
    # Nothing was pushed: the right password sees an empty registry.
    right = RegistryClient(registry, credentials=RegistryCredentials(AUTH_USER, AUTH_PASSWORD))
    assert right.catalog() == []


def test_credentials_are_only_for_the_sites_registry(tmp_path, auth_registry, monkeypatch, no_credentials_left):
    """A --registry on another host gets no password (and so the anonymous refusal)."""
    other = auth_registry.replace("127.0.0.1", "localhost")
    no_credentials_left.extend([auth_registry, other])
    monkeypatch.setenv(PASSWORD_ENV_VAR, AUTH_PASSWORD)
    result = cli(site(tmp_path, auth_registry), "releases", "--registry", other)
    assert f"not sending the registry credentials to {other}" in result.output
    assert result.exit_code == 2 and "refused access (401 Unauthorized) to anonymous requests" in result.output


@pytest.mark.parametrize(
    ("username", "password", "says"),
    [
        (AUTH_USER, "", f"A registry user ({AUTH_USER}) is configured but ${PASSWORD_ENV_VAR} is empty."),
        ("", AUTH_PASSWORD, f"${PASSWORD_ENV_VAR} is set but no registry user is configured."),
    ],
)
def test_half_configured_credentials_are_refused(
    tmp_path, unreachable_registry, monkeypatch, username, password, says
):
    if password:
        monkeypatch.setenv(PASSWORD_ENV_VAR, password)
    result = cli(site(tmp_path, unreachable_registry, username), "releases")
    assert result.exit_code == 2 and says in result.output and result.output.count("\n") == 1
