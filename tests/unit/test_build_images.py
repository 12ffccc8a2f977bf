"""`stack.build_images` drives the engine with each component's recipe (Dockerfile, target,
build args), its OCI labels, and warns about an old base image. A recording fake engine: no
Docker (the real builds are in tests/integration/test_stack.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from isletops import images, release, stack


class RecordingEngine:
    """Just enough of `DockerEngine` for a build: records each build_image call."""

    def __init__(self, base_labels: dict[str, str]) -> None:
        self.base_labels = base_labels
        self.builds: dict[str, dict] = {}
        self.tags: dict[str, str] = {}

    def image_exists(self, ref: str) -> bool:
        return ref == stack.BASE_IMAGE or ref in self.builds or ref in self.tags

    def image_labels(self, ref: str) -> dict[str, str]:
        return self.base_labels

    def image_id(self, ref: str) -> str:
        return "sha256:base" if ref == stack.BASE_IMAGE else f"sha256:{ref}"

    def image_refs(self, repository: str) -> list[tuple[str, str]]:
        return [("isletnet-base:abc-202612030215", "sha256:base"), ("isletnet-base:latest", "sha256:base")]

    def build_image(self, context: Path, dockerfile: Path, tag: str, **kwargs) -> str:
        self.builds[tag] = {"dockerfile": dockerfile, **kwargs}
        return f"sha256:{tag}"

    def local_tags(self, repository: str) -> list[str]:
        return []

    def tag_image(self, source: str, ref: str) -> None:
        self.tags[ref] = source


def _fresh_labels(days_old: int) -> dict[str, str]:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=days_old)
    return {images.BASE_INDEX_LABEL: when.strftime("%Y%m%d%H%M")}


def test_each_component_is_built_from_its_recipe_with_its_labels() -> None:
    engine = RecordingEngine(_fresh_labels(3))
    result = stack.build_images(tag="2026-12-04_01", engine=engine)
    assert result.warnings == ()
    assert set(result.images) == set(release.COMPONENTS)
    backend = engine.builds["isletnet-backend:latest"]
    assert backend["dockerfile"] == images.PYTHON_DOCKERFILE and backend["target"] == "backend"
    assert backend["build_args"] == {"BASE_IMAGE": stack.BASE_IMAGE, "COMPONENT": "backend"}
    assert backend["labels"]["org.opencontainers.image.base.digest"] == "sha256:base"
    assert backend["labels"]["org.opencontainers.image.base.name"] == "isletnet-base:abc-202612030215"
    edge = engine.builds["isletnet-edge:latest"]
    assert edge["dockerfile"] == stack.PROJECT_ROOT / "services" / "edge" / "Dockerfile" and edge["target"] is None
    assert edge["build_args"] == {"BASE_IMAGE": stack.BASE_IMAGE}
    for build in engine.builds.values():
        assert {"org.opencontainers.image.created", "org.opencontainers.image.revision",
                "org.opencontainers.image.title"} <= set(build["labels"])


@pytest.mark.parametrize(("days_old", "max_age", "warned"), [(40, 30, True), (20, 30, False), (400, 0, False)])
def test_an_old_base_image_gives_a_warning(days_old: int, max_age: int, warned: bool) -> None:
    result = stack.build_images(["edge"], tag="2026-12-04_01", engine=RecordingEngine(_fresh_labels(days_old)),
                                base_max_age_days=max_age)
    assert bool(result.warnings) == warned
    if warned:
        assert result.warnings[0].startswith(f"The base image {stack.BASE_IMAGE} is {days_old} days old")
        assert "make bootstrap" in result.warnings[0]
