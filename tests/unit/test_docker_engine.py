"""`isletops.docker_engine` pure logic: compose detection, version and reference parsing,
container state from inspect data, the health-wait verdict. Fake binaries and a fake client
stand in for Docker here; tests/integration/test_stack*.py use the real engine."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from isletops import docker_engine
from isletops.docker_engine import DockerEngine, container_state, detect_compose, parse_compose_version, split_image_ref
from isletops.errors import DockerError


@pytest.fixture(autouse=True)
def _fresh_detection():
    detect_compose.cache_clear()
    yield
    detect_compose.cache_clear()


def _fake_compose(directory: Path, name: str, version_output: str, exit_code: int = 0) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{version_output}'\nexit {exit_code}\n")
    path.chmod(0o755)
    return path


def _isolate(monkeypatch, tmp_path, packaged: Path | None, path_dirs: list[Path]):
    """Make detection see only our fakes: a fake interpreter folder and a fake PATH."""
    python_dir = packaged or tmp_path / "python-bin"
    python_dir.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(sys, "executable", str(python_dir / "python"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "no-prefix"))
    monkeypatch.setattr(docker_engine.importlib.metadata, "distribution",
                        lambda name: (_ for _ in ()).throw(docker_engine.importlib.metadata.PackageNotFoundError()))
    monkeypatch.setenv("PATH", ":".join(str(d) for d in path_dirs))
    monkeypatch.delenv(docker_engine.COMPOSE_ENV_VAR, raising=False)


@pytest.mark.parametrize(("text", "expected"), [
    ("Docker Compose version v5.6.1", (5, 6, 1)),
    ("2.24.0", (2, 24, 0)),
    ("docker-compose version 1.29.2, build unknown", (1, 29, 2)),
    ("nothing here", None),
])
def test_parse_compose_version(text, expected):
    assert parse_compose_version(text) == expected


def test_the_packaged_compose_next_to_python_wins(monkeypatch, tmp_path):
    venv_bin = tmp_path / "venv" / "bin"
    _fake_compose(venv_bin, "docker-compose", "Docker Compose version v5.6.1")
    legacy = _fake_compose(tmp_path / "usr-bin", "docker-compose", "docker-compose version 1.29.2, build unknown")
    _isolate(monkeypatch, tmp_path, venv_bin, [legacy.parent])
    found = detect_compose()
    assert found.command == (str(venv_bin / "docker-compose"),)
    assert found.version == (5, 6, 1) and found.supports_wait


def test_the_docker_plugin_comes_before_debians_v1(monkeypatch, tmp_path):
    bin_dir = tmp_path / "usr-bin"
    docker = bin_dir / "docker"
    bin_dir.mkdir()
    docker.write_text('#!/bin/sh\n[ "$1" = compose ] && echo "Docker Compose version v2.20.2" && exit 0\nexit 1\n')
    docker.chmod(0o755)
    _fake_compose(bin_dir, "docker-compose", "docker-compose version 1.29.2, build unknown")
    _isolate(monkeypatch, tmp_path, None, [bin_dir])
    found = detect_compose()
    assert found.command == ("docker", "compose") and found.version == (2, 20, 2)


def test_debians_v1_is_the_fallback_and_has_no_wait(monkeypatch, tmp_path):
    legacy = _fake_compose(tmp_path / "usr-bin", "docker-compose", "docker-compose version 1.29.2, build unknown")
    _isolate(monkeypatch, tmp_path, None, [legacy.parent])
    found = detect_compose()
    assert found.command == (str(legacy),) and found.version == (1, 29, 2)
    assert not found.supports_wait


def test_a_broken_packaged_binary_is_skipped(monkeypatch, tmp_path):
    venv_bin = tmp_path / "venv" / "bin"
    _fake_compose(venv_bin, "docker-compose", "boom", exit_code=1)
    legacy = _fake_compose(tmp_path / "usr-bin", "docker-compose", "docker-compose version 1.29.2, build unknown")
    _isolate(monkeypatch, tmp_path, venv_bin, [legacy.parent])
    assert detect_compose().version == (1, 29, 2)


def test_no_compose_at_all_is_one_plain_sentence(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path, None, [tmp_path / "empty"])
    with pytest.raises(DockerError, match=r"^No docker compose was found on this host\. Install"):
        detect_compose()


def test_detection_runs_once_per_process(monkeypatch, tmp_path):
    legacy = _fake_compose(tmp_path / "usr-bin", "docker-compose", "docker-compose version 1.29.2, build unknown")
    _isolate(monkeypatch, tmp_path, None, [legacy.parent])
    engine = DockerEngine(client=object())
    assert engine.compose_command() == [str(legacy)]
    legacy.unlink()  # gone now, but the answer was cached
    assert DockerEngine(client=object()).compose_version == (1, 29, 2)


def test_the_override_must_work(monkeypatch, tmp_path):
    _isolate(monkeypatch, tmp_path, None, [tmp_path / "empty"])
    monkeypatch.setenv(docker_engine.COMPOSE_ENV_VAR, str(tmp_path / "nope"))
    with pytest.raises(DockerError, match="ISLETOPS_COMPOSE=.* does not run a working docker compose"):
        DockerEngine(client=object()).compose_command()


def test_compose_failure_reports_the_last_meaningful_stderr_line(monkeypatch, tmp_path):
    fake = tmp_path / "compose"
    fake.write_text("#!/bin/sh\n[ \"$1\" = version ] && echo 2.30.0 && exit 0\n"
                    "echo ' Container x-storage-1  Started' >&2\n"
                    "echo 'required variable TAG is missing a value: missing-env' >&2\necho >&2\nexit 14\n")
    fake.chmod(0o755)
    monkeypatch.setenv(docker_engine.COMPOSE_ENV_VAR, str(fake))
    engine = DockerEngine(client=object())
    for capture in (True, False):
        with pytest.raises(DockerError) as caught:
            engine.compose("proj", [tmp_path / "docker-compose.yml"], ["up", "-d"], capture=capture)
        assert str(caught.value) == "compose up failed for project 'proj': required variable TAG is missing a value: " \
                                    "missing-env."


@pytest.mark.parametrize(("ref", "expected"), [
    ("isletnet-backend:2026-11-23_01", ("isletnet-backend", "2026-11-23_01")),
    ("127.0.0.1:5000/isletnet-backend:2026-11-23_01", ("127.0.0.1:5000/isletnet-backend", "2026-11-23_01")),
    ("127.0.0.1:5000/isletnet-backend", ("127.0.0.1:5000/isletnet-backend", "latest")),
    ("isletnet-backend", ("isletnet-backend", "latest")),
])
def test_split_image_ref(ref, expected):
    assert split_image_ref(ref) == expected


def _container(status="running", health=None, log_output="", labels=None, exit_code=0,
               started="2026-11-23T10:00:01.123456789Z"):
    state = {"Status": status, "ExitCode": exit_code, "StartedAt": started}
    if health:
        state["Health"] = {"Status": health, "Log": [{"Output": "old"}, {"Output": log_output}]}
    attrs = {"Name": "/p-backend-1", "State": state, "RestartCount": 2,
             "Config": {"Image": "isletnet-backend:t", "Labels": {"com.docker.compose.service": "backend",
                                                                   **(labels or {})}}}
    return SimpleNamespace(attrs=attrs, name="p-backend-1", labels=attrs["Config"]["Labels"])


def test_container_state_from_inspect_data():
    state = container_state(_container(health="unhealthy", log_output="curl: (7) refused\n"))
    assert state.service == "backend" and state.name == "p-backend-1" and state.image == "isletnet-backend:t"
    assert state.health == "unhealthy" and state.last_health_output == "curl: (7) refused"
    assert state.restart_count == 2 and state.exit_code is None
    assert state.started_at == datetime(2026, 11, 23, 10, 0, 1, 123456, tzinfo=UTC)
    assert not state.is_ready
    exited = container_state(_container(status="exited", exit_code=137, started="0001-01-01T00:00:00Z"))
    assert exited.exit_code == 137 and exited.started_at is None and exited.health is None
    assert exited.describe() == "backend (exited, exit code 137)"
    assert container_state(_container()).is_ready


def test_container_state_keeps_the_health_checks_and_the_start_period():
    raw = _container(health="starting", log_output="refused")
    raw.attrs["State"]["Health"]["Log"] = [
        {"Start": "2026-11-23T10:00:05Z", "ExitCode": 1, "Output": "refused"},
        {"Start": "2026-11-23T10:00:10Z", "ExitCode": 0, "Output": "ok"},
    ]
    raw.attrs["Config"]["Healthcheck"] = {"StartPeriod": 30_000_000_000}
    state = container_state(raw)
    assert state.start_period_s == 30.0
    assert [(c.exit_code, c.output) for c in state.checks] == [(1, "refused"), (0, "ok")]
    assert state.checks[0].started_at == datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
