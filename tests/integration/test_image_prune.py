"""`isletops prune images` and the prune after a deploy, against real Docker images.

Images: one tiny FROM-scratch image per release tag (each a distinct image id, so "used by a
container" is about that image only), tagged under a made-up registry name of this test only
(`prune-<hex>.test:5000`, never contacted), plus look-alikes that must survive: a non-release tag,
the same tag under another registry name, and a non-component repository.
"""

import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.config import load_config
from isletops.docker_engine import DockerEngine
from isletops.engines import engine_for
from isletops.history import History, HistoryEntry
from isletops.release import image_name

pytestmark = pytest.mark.integration

T1, T2, T3, T4, T5 = "2026-01-01_01", "2026-01-02_01", "2026-01-03_01", "2026-01-04_01", "2026-01-04_02"
TEST_LABEL = {"org.isletnet.test": "1"}


@pytest.fixture
def local_release_images(tmp_path):
    """Release T1..T5 of backend and frontend under a made-up registry; removed afterwards."""
    engine = DockerEngine()
    registry = f"prune-{uuid.uuid4().hex[:8]}.test:5000"
    other = f"other-{uuid.uuid4().hex[:8]}.test:5000"
    context = tmp_path / "ctx"
    context.mkdir()
    made: list[str] = []
    containers = []
    for tag in (T1, T2, T3, T4, T5):
        (context / "marker").write_text(f"{registry} {tag}")  # a distinct image per tag
        (context / "Dockerfile").write_text("FROM scratch\nCOPY marker /marker\n")
        first = image_name("backend", tag, registry)
        engine.build_image(context, context / "Dockerfile", first, labels=TEST_LABEL)
        engine.tag_image(first, image_name("frontend", tag, registry))
        made += [first, image_name("frontend", tag, registry)]
    lookalikes = [f"{registry}/isletnet-backend:latest", image_name("backend", T1, other),
                  f"{registry}/isletnet-notacomponent:{T1}"]
    for ref in lookalikes:
        engine.tag_image(image_name("backend", T1, registry), ref)
        made.append(ref)
    try:
        yield engine, registry, lookalikes, containers
    finally:
        for container in containers:
            container.remove(force=True)
        for ref in made:
            engine.remove_image(ref, force=True)


def site(tmp_path: Path, registry: str, retain: int | None = None) -> Path:
    config = tmp_path / "isletops.yml"
    settings = {"registry": registry, "instances_root": str(tmp_path / "instances"), "default_instance": "prune"}
    if retain is not None:
        settings["retain_releases"] = retain
    config.write_text(yaml.safe_dump(settings))
    return config


def deployed(tmp_path: Path, *tags: str) -> None:
    """A history in which `tags` were deployed one after the other (the last one runs)."""
    history = History(tmp_path / "instances" / "prune" / "state", "prune")
    for tag in tags:
        history.append(HistoryEntry(command="deploy", from_tag="", to_tag=tag, result="ok", duration_s=1.0))


def present(engine: DockerEngine, registry: str, component: str = "backend") -> list[str]:
    return [tag for tag in (T1, T2, T3, T4, T5) if engine.image_exists(image_name(component, tag, registry))]


def test_prune_keeps_newest_deployed_previous_and_used_images(tmp_path, local_release_images):
    engine, registry, lookalikes, containers = local_release_images
    config = site(tmp_path, registry)
    deployed(tmp_path, T2, T3)  # T3 runs, T2 is where rollback goes
    # A stopped container created from T1's image: that image is in use.
    containers.append(engine.client.containers.create(image_name("backend", T1, registry), command=["/marker"],
                                                      labels=TEST_LABEL))

    dry = CliRunner().invoke(main, ["--config", str(config), "prune", "images", "--keep", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"remove {image_name('backend', T4, registry)}" in dry.output
    assert f"keep   {image_name('backend', T5, registry)}  (one of the newest 1 releases)" in dry.output
    assert f"keep   {image_name('frontend', T3, registry)}  (deployed on instance 'prune')" in dry.output
    assert f"keep   {image_name('backend', T2, registry)}  (previous on instance 'prune')" in dry.output
    assert f"keep   {image_name('backend', T1, registry)}  (used by a container)" in dry.output
    assert "would remove 2 image(s), keep 8." in dry.output
    assert present(engine, registry) == [T1, T2, T3, T4, T5]  # a dry run removes nothing

    pruned = CliRunner().invoke(main, ["--config", str(config), "prune", "images", "--keep", "1"])
    assert pruned.exit_code == 0, pruned.output
    assert "removed 2 image(s), kept 8." in pruned.output
    for component in ("backend", "frontend"):
        assert present(engine, registry, component) == [T1, T2, T3, T5]
    for ref in lookalikes:
        assert engine.image_exists(ref), ref


def test_the_engines_retain_prune_after_a_deploy(tmp_path, local_release_images):
    """What a good deploy runs with `retain_releases: 2` (that it runs only then, and never with 0,
    is tests/unit/test_deploy_run.py::test_retain_prune_runs_after_a_good_deploy_only)."""
    engine, registry, _lookalikes, _containers = local_release_images
    deployed(tmp_path, T5)
    config = load_config(site(tmp_path, registry, retain=2))
    notes = engine_for(config, config.instance(None)).prune_releases(registry, config.retain_releases)
    assert notes == ["removed 6 image(s) of releases older than the newest 2"]
    assert present(engine, registry) == [T4, T5] and present(engine, registry, "frontend") == [T4, T5]


def test_bad_keep_and_bad_retain_are_refused(tmp_path):
    config = site(tmp_path, "127.0.0.1:5000")
    result = CliRunner().invoke(main, ["--config", str(config), "prune", "images", "--keep", "0"])
    assert result.exit_code == 2 and "--keep" in result.output and "Traceback" not in result.output
    config = site(tmp_path, "127.0.0.1:5000", retain=-1)
    result = CliRunner().invoke(main, ["--config", str(config), "prune", "images"])
    assert result.exit_code == 2 and "retain_releases must be 0 (never prune) or more" in result.output
    config.write_text(yaml.safe_dump({"retain_releases": "five"}))
    result = CliRunner().invoke(main, ["--config", str(config), "prune", "images"])
    assert result.exit_code == 2 and "retain_releases must be a whole number" in result.output
