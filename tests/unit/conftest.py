"""Fixtures of the deploy-core unit tests: an instance in a temporary folder and a fake registry
holding three complete releases (`RELEASES`)."""

from pathlib import Path

import pytest

from isletops.config import InstanceConfig
from tests.fakes.registry import FakeRegistry

RELEASES = ("2026-11-20_01", "2026-11-21_01", "2026-11-22_01")
FAKE_REGISTRY = "r.test:5000"


@pytest.fixture
def instance(tmp_path: Path) -> InstanceConfig:
    return InstanceConfig(name="prod", directory=tmp_path / "prod")


@pytest.fixture
def registry() -> FakeRegistry:
    made = FakeRegistry(FAKE_REGISTRY)
    for tag in RELEASES:
        made.push_release(tag)
    return made
