"""`isletops release` / `releases` and the registry client against a real docker-registry."""

import datetime as dt
import uuid

import pytest
from click.testing import CliRunner

from isletops import registry as registry_module
from isletops.cli import main
from isletops.docker_engine import DockerEngine
from isletops.errors import RegistryError
from isletops.registry import RegistryClient
from isletops.release import COMPONENTS, image_name, release

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def engine() -> DockerEngine:
    return DockerEngine()


@pytest.fixture
def tiny_builds(engine, tmp_path):
    """`isletnet-<c>:<build tag>` for every component: tiny FROM-scratch images (no pull needed)."""
    build_tag = f"h4test-{uuid.uuid4().hex[:8]}"
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "marker").write_text(build_tag)
    made: list[str] = []
    for component in COMPONENTS:
        (context / "Dockerfile").write_text(f"FROM scratch\nCOPY marker /{component}\n")
        ref = f"isletnet-{component}:{build_tag}"
        engine.build_image(context, context / "Dockerfile", ref, labels={"org.isletnet.test": "1"})
        made.append(ref)
    yield build_tag, made
    for ref in made:
        engine.remove_image(ref, force=True)


def _remove_pushed(engine, registry, tags):
    for tag in tags:
        for component in COMPONENTS:
            engine.remove_image(image_name(component, tag, registry), force=True)


def test_two_releases_the_same_day_get_consecutive_numbers(engine, fresh_registry, tiny_builds):
    build_tag, _ = tiny_builds
    today = dt.datetime.now(dt.UTC).date()
    runner = CliRunner()
    tags = []
    try:
        for _ in range(2):
            result = runner.invoke(main, ["release", "--registry", fresh_registry, "--build-tag", build_tag])
            assert result.exit_code == 0, result.output
            tags.append(result.stdout.strip().splitlines()[-1])
        assert tags == [f"{today.isoformat()}_01", f"{today.isoformat()}_02"]
        client = RegistryClient(fresh_registry)
        for component in COMPONENTS:
            assert client.tags(f"isletnet-{component}") == tags
        assert client.missing_images(tags[1]) == []
        assert sorted(client.catalog()) == sorted(f"isletnet-{c}" for c in COMPONENTS)

        dry = runner.invoke(main, ["release", "--registry", fresh_registry, "--build-tag", build_tag, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert dry.stdout.strip() == f"{today.isoformat()}_03"
        target = f"{fresh_registry}/isletnet-frontend:{today}_03"
        assert f"would push isletnet-frontend:{build_tag} as {target}" in dry.output
        assert client.tags("isletnet-frontend") == tags  # dry run pushed nothing

        listing = runner.invoke(main, ["releases", "--registry", fresh_registry])
        assert listing.exit_code == 0, listing.output
        lines = [line for line in listing.stdout.splitlines() if "_0" in line]
        assert [line[2:].split()[0] for line in lines] == list(reversed(tags))
    finally:
        _remove_pushed(engine, fresh_registry, tags)


def test_tags_follow_pagination_links(engine, fresh_registry, tiny_builds, monkeypatch):
    build_tag, _ = tiny_builds
    pushed = [f"2026-01-0{day}_01" for day in range(1, 4)]
    try:
        for tag in pushed:
            target = image_name("backend", tag, fresh_registry)
            engine.tag_image(f"isletnet-backend:{build_tag}", target)
            engine.push_image(target)
        monkeypatch.setattr(registry_module, "PAGE_SIZE", 1)  # one tag per page: three pages
        assert RegistryClient(fresh_registry).tags("isletnet-backend") == pushed
        assert RegistryClient(fresh_registry).tags("isletnet-nosuch") == []
    finally:
        for tag in pushed:
            engine.remove_image(image_name("backend", tag, fresh_registry), force=True)


def test_one_missing_component_is_named(engine, fresh_registry, tiny_builds):
    build_tag, _ = tiny_builds
    tag = "2026-02-01_01"
    try:
        for component in COMPONENTS:
            if component == "shepherd":
                continue
            target = image_name(component, tag, fresh_registry)
            engine.tag_image(f"isletnet-{component}:{build_tag}", target)
            engine.push_image(target)
        client = RegistryClient(fresh_registry)
        assert client.missing_images(tag) == [image_name("shepherd", tag, fresh_registry)]
        assert client.manifest_size("isletnet-backend", tag) > 0
        rows = runner_releases(fresh_registry)
        assert "INCOMPLETE" in rows
    finally:
        _remove_pushed(engine, fresh_registry, [tag])


def runner_releases(registry: str) -> str:
    result = CliRunner().invoke(main, ["releases", "--registry", registry])
    assert result.exit_code == 0, result.output
    return result.output


def test_unreachable_registry_is_one_sentence(unreachable_registry, tiny_builds):
    build_tag, _ = tiny_builds
    with pytest.raises(RegistryError) as excinfo:
        RegistryClient(unreachable_registry).tags("isletnet-backend")
    assert f"Registry {unreachable_registry} is unreachable" in str(excinfo.value)
    result = CliRunner().invoke(main, ["release", "--registry", unreachable_registry, "--build-tag", build_tag])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "is unreachable" in result.output and "Traceback" not in result.output


def test_release_without_local_builds_says_build_first(fresh_registry):
    with pytest.raises(RegistryError, match="isletops build"):
        release(RegistryClient(fresh_registry), _Pusher(DockerEngine()), build_tag="h4-never-built")
    assert RegistryClient(fresh_registry).catalog() == []  # nothing pushed


def test_registry_that_needs_a_login_says_so(auth_registry):
    with pytest.raises(RegistryError) as excinfo:
        RegistryClient(auth_registry).missing_images("2026-01-01_01")
    assert f"Registry {auth_registry} refused access (401 Unauthorized)" in str(excinfo.value)
    assert "registry_username" in str(excinfo.value) and "ISLETOPS_REGISTRY_PASSWORD" in str(excinfo.value)
    result = CliRunner().invoke(main, ["releases", "--registry", auth_registry])
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "401" in result.output


class _Pusher:
    """`release`'s engine side on the real Docker Engine."""

    def __init__(self, docker: DockerEngine) -> None:
        self.docker = docker

    def image_present(self, ref: str) -> bool:
        return self.docker.image_exists(ref)

    def tag(self, source: str, target: str) -> None:
        self.docker.tag_image(source, target)

    def push(self, ref: str) -> None:
        self.docker.push_image(ref)
