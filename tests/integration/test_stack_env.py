"""A rendered instance run by the real compose CLI: a missing required variable stops compose
with the variable's name, for every compose this host has (v2+ from PyPI, Debian's v1)."""

from __future__ import annotations

import shutil

import pytest

from isletops import stack
from isletops.config import parse_config, read_env_file
from isletops.docker_engine import DockerEngine, detect_compose
from isletops.errors import DockerError

pytestmark = pytest.mark.integration


def _composes() -> list[str]:
    found = [" ".join(detect_compose().command)]
    legacy = shutil.which("docker-compose")
    if legacy and legacy not in found:
        found.append(legacy)
    return found


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    site = parse_config({"instances_root": str(tmp_path), "instances": {"itest-env": {}}})
    instance = site.instance("itest-env")
    files = stack.prepare_instance(site, instance, "2026-11-23_01")
    return instance, files


def _without(instance, variable: str) -> None:
    kept = [line for line in instance.env_file.read_text().splitlines() if not line.startswith(f"{variable}=")]
    instance.env_file.write_text("\n".join(kept) + "\n")


@pytest.mark.parametrize("compose", _composes())
@pytest.mark.parametrize("variable", ["TAG", "DB_PASSWORD", "LOCAL_DATA_DIR", "HTTP_PORT"])
def test_missing_required_variable_is_named(prepared, monkeypatch, compose, variable):
    instance, files = prepared
    monkeypatch.setenv("ISLETOPS_COMPOSE", compose)
    monkeypatch.delenv(variable, raising=False)
    detect_compose.cache_clear()
    engine = DockerEngine()
    # A complete env file renders.
    config = engine.compose(instance.project_name, files, ["config"], capture=True)
    assert "isletnet-backend:2026-11-23_01" in config.stdout
    _without(instance, variable)
    assert variable not in read_env_file(instance.env_file)
    with pytest.raises(DockerError) as caught:
        engine.compose(instance.project_name, files, ["config"], capture=True)
    message = str(caught.value)
    assert message.startswith("compose config failed for project 'itest-env': ")
    assert variable in message and "missing-env" in message
    detect_compose.cache_clear()
