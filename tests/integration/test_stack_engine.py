"""`DockerEngine` against the real Docker Engine: builds (with the per-Dockerfile ignore file),
tags, removal, failure messages, helper containers and removal by label. Tiny images FROM the
local base image; everything is labelled and removed."""

from __future__ import annotations

import secrets

import pytest

from isletops.docker_engine import DockerEngine
from isletops.errors import DockerError
from tests.fixtures.stack import TEST_LABEL_KEY

pytestmark = pytest.mark.integration
BASE = "isletnet-base:latest"


@pytest.fixture
def engine():
    engine = DockerEngine()
    try:
        engine.client  # noqa: B018
    except DockerError as error:
        pytest.skip(str(error))
    if not engine.image_exists(BASE):
        pytest.fail(f"{BASE} is missing: run make bootstrap")
    return engine


@pytest.fixture
def image_name(engine):
    name = f"itest-engine-{secrets.token_hex(3)}"
    yield name
    for image in engine.client.images.list(name=name):
        for tag in image.tags:
            engine.remove_image(tag, force=True)


def test_build_tag_and_remove_with_the_dockerfile_ignore_file(engine, image_name, tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "kept.txt").write_text("kept")
    (tmp_path / "secret.txt").write_text("must not reach the daemon")
    (tmp_path / ".dockerignore").write_text("*\n")  # the root file would exclude everything…
    dockerfile = tmp_path / "app" / "Dockerfile"
    dockerfile.write_text(f"FROM {BASE}\nCOPY . /ctx\nRUN test -f /ctx/app/kept.txt && test ! -e /ctx/secret.txt\n")
    (tmp_path / "app" / "Dockerfile.dockerignore").write_text("*\n!app\n")  # …this one wins
    lines: list[str] = []
    image_id = engine.build_image(tmp_path, dockerfile, f"{image_name}:one", labels={TEST_LABEL_KEY: "1"},
                                  progress=lines.append)
    assert image_id.startswith("sha256:") and engine.image_id(f"{image_name}:one") == image_id
    assert any(line.startswith("Step") for line in lines)
    assert engine.image_labels(f"{image_name}:one")[TEST_LABEL_KEY] == "1"
    engine.tag_image(f"{image_name}:one", f"{image_name}:2026-11-23_01")
    assert engine.local_tags(image_name) == ["2026-11-23_01", "one"]
    engine.remove_image(f"{image_name}:one")
    assert not engine.image_exists(f"{image_name}:one") and engine.image_exists(f"{image_name}:2026-11-23_01")
    engine.remove_image(f"{image_name}:one")  # already gone: fine


def test_a_failing_build_says_which_step_failed(engine, image_name, tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(f"FROM {BASE}\nRUN echo doomed && exit 3\n")
    with pytest.raises(DockerError) as caught:
        engine.build_image(tmp_path, dockerfile, f"{image_name}:bad")
    assert str(caught.value).startswith(f"Building {image_name}:bad failed: The command '/bin/sh -c echo doomed")
    assert "returned a non-zero code: 3" in str(caught.value)
    assert not engine.image_exists(f"{image_name}:bad")


def test_missing_images_and_dockerfiles_are_plain_errors(engine, tmp_path):
    with pytest.raises(DockerError, match=r"^Dockerfile .*/nope does not exist\.$"):
        engine.build_image(tmp_path, tmp_path / "nope", "itest-engine-x:1")
    with pytest.raises(DockerError, match=r"^Image itest-engine-absent:1 does not exist locally\. Build or pull"):
        engine.tag_image("itest-engine-absent:1", "itest-engine-absent:2")
    assert engine.image_exists("itest-engine-absent:1") is False


def test_helper_container_and_removal_by_label(engine, tmp_path):
    target = tmp_path / "owned"
    target.mkdir()
    engine.run_oneshot(BASE, ["sh", "-c", "chown 10001:10001 /target && echo done"], binds={str(target): "/target"})
    assert target.stat().st_uid == 10001
    with pytest.raises(DockerError, match="Helper container from isletnet-base:latest failed: nope"):
        engine.run_oneshot(BASE, ["sh", "-c", "echo nope >&2; exit 4"])
    label = f"{TEST_LABEL_KEY}.sweep={secrets.token_hex(3)}"
    key, value = label.split("=")
    labels = {TEST_LABEL_KEY: "1", key: value}
    network = engine.client.networks.create(f"itest-engine-{value}", labels=labels)
    engine.client.containers.create(BASE, ["sleep", "60"], labels=labels, name=f"itest-engine-{value}",
                                    network=network.name)
    engine.client.volumes.create(f"itest-engine-{value}", labels=labels)
    engine.remove_by_label(label)
    assert not engine.client.containers.list(all=True, filters={"label": label})
    assert not engine.client.networks.list(filters={"label": label})
    assert not engine.client.volumes.list(filters={"label": label})
