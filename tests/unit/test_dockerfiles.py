"""Every component's Dockerfile follows the image rules (docs/architecture.md, "Components"):
a public `BASE_IMAGE` can replace the local base, the process runs as a numeric non-root uid
under tini with a healthcheck, the Python images share one wheel stage and one user block
(`services/python.Dockerfile`, a target per component), and the nginx images stop gracefully
(SIGQUIT lets in-flight requests finish, which a side-by-side deploy relies on). Read from the
files: no Docker needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from isletops import images, stack
from isletops.release import COMPONENTS
from isletops.render import PROJECT_ROOT

NGINX_IMAGES = ("frontend", "edge")
# The uids the host data folders are given to (stack.DATA_DIR_OWNERS): every other image runs as 10001.
EXPECTED_UIDS = stack.DATA_DIR_OWNERS


def dockerfile(component: str) -> str:
    return images.recipe(component).dockerfile.read_text()


def chain_text(component: str) -> str:
    """The instructions of the target's stage and the stages it is built FROM, in file order."""
    rec = images.recipe(component)
    text = rec.dockerfile.read_text()
    segments = re.split(r"(?m)^(?=FROM )", text)
    by_name = {}
    for segment in segments[1:]:
        words = segment.split(None, 4)
        by_name[words[3] if len(words) > 3 and words[2].lower() == "as" else "last"] = (words[1], segment)
    name = rec.target or "last"
    chain = []
    while name in by_name:
        base, segment = by_name[name]
        chain.insert(0, segment)
        name = base
    return "".join(chain)


@pytest.mark.parametrize("component", COMPONENTS)
def test_base_image_tini_and_healthcheck(component: str) -> None:
    text = dockerfile(component)
    assert re.search(r"^ARG BASE_IMAGE=isletnet-base:latest$", text, re.M), component
    assert images.base_reference(images.recipe(component)) == "${BASE_IMAGE}", component
    chain = chain_text(component)
    assert re.search(r'^ENTRYPOINT \["/usr/bin/tini", "--"', chain, re.M), component
    assert re.search(r"^HEALTHCHECK ", chain, re.M), component
    assert f"org.opencontainers.image.title=isletnet-{component} " in chain, component


@pytest.mark.parametrize("component", COMPONENTS)
def test_the_final_user_is_a_numeric_non_root_uid_and_gid(component: str) -> None:
    """Kubernetes' runAsNonRoot can check only a numeric USER (a name would need /etc/passwd)."""
    user = images.final_user(images.recipe(component)) or ""
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) > 0 and int(gid) > 0, (component, user)
    assert int(uid) == EXPECTED_UIDS.get(component, 10001), component


def test_every_user_line_anywhere_is_numeric() -> None:
    for path in [images.PYTHON_DOCKERFILE, *PROJECT_ROOT.glob("services/*/Dockerfile")]:
        for user in re.findall(r"^USER (\S+)$", path.read_text(), re.M):
            assert re.fullmatch(r"[1-9]\d*:[1-9]\d*", user), (path, user)


def test_the_python_images_share_one_wheel_stage_and_one_user_block() -> None:
    text = images.PYTHON_DOCKERFILE.read_text()
    assert text.count("pip install") == 1 and text.count("useradd") == 1
    for component in stack.WHEEL_COMPONENTS:
        rec = images.recipe(component)
        assert rec.dockerfile == images.PYTHON_DOCKERFILE and rec.target == component
        assert rec.build_args == {"COMPONENT": component}
        assert not (PROJECT_ROOT / "services" / component / "Dockerfile").exists(), component
        names = [stage.name for stage in images.needed_stages(images.parse_stages(text, rec.build_args), component)]
        assert names[0] in ("wheels", "user") and "wheels" in names and "user" in names, names
    # The classic builder builds every stage above the target with that target's COMPONENT, so
    # storage (which copies `weed` out of its own venv) must be the last stage.
    assert [stage.name for stage in images.parse_stages(text)][-1] == "storage"


def test_the_inputs_of_an_image_are_what_its_stages_copy() -> None:
    backend = images.input_paths(images.recipe("backend"))
    pruner = images.input_paths(images.recipe("pruner"))
    assert {"services/python.Dockerfile", ".dockerignore", "build/wheelhouse", "services/common",
            "services/backend/requirements.txt", "services/islets", "services/backend"} <= set(backend)
    assert "services/islets" not in pruner and "services/backend" not in pruner
    assert "services/pruner" in pruner
    copied = re.findall(r"^COPY (\S+)", dockerfile("edge"), re.M)
    assert "services/edge/nginx.conf" in copied
    assert images.input_paths(images.recipe("edge")) == sorted(
        {"services/edge/Dockerfile", "services/edge/Dockerfile.dockerignore", *copied})


@pytest.mark.parametrize("component", NGINX_IMAGES)
def test_nginx_images_stop_gracefully_and_have_a_narrow_build_context(component: str) -> None:
    assert re.search(r"^STOPSIGNAL SIGQUIT$", dockerfile(component), re.M)
    ignore = Path(PROJECT_ROOT / "services" / component / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything not named after it is left out of the build context


def test_the_edge_image_has_no_per_build_input() -> None:
    """Its id must stay the same from release to release (deploys then keep it running)."""
    text = dockerfile("edge")
    assert "ARG " not in text.replace("ARG BASE_IMAGE=isletnet-base:latest", "")
    assert re.findall(r"^COPY (\S+)", text, re.M) == [
        "docker/nginx-start.sh", "services/edge/nginx.conf", "services/common/security-headers.conf"]
