"""The disk probe's forecast (least squares over stored samples) and thresholds."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import probes
from monitors.probes import disk
from monitors.result import ProbeContext, Status

NOW = 1_800_000_000.0


def test_seconds_to_full_is_a_least_squares_line() -> None:
    samples = [[0, 100, 0], [60, 160, 0], [120, 220, 0], [180, 280, 0]]  # 1 byte/s
    assert disk.seconds_to_full(samples, 3600) == pytest.approx(3600)
    noisy = [[0, 100, 0], [60, 190, 0], [120, 200, 0], [180, 310, 0]]
    assert disk.seconds_to_full(noisy, 1000) == pytest.approx(937.5)  # slope 19200/18000 bytes/s
    assert disk.seconds_to_full([[0, 300, 0], [60, 200, 0]], 1000) is None  # shrinking
    assert disk.seconds_to_full([[0, 300, 0]], 1000) is None
    assert disk.seconds_to_full([[5, 300, 0], [5, 400, 0]], 1000) is None


def context(tmp_path: Path, **options) -> ProbeContext:
    settings = {"paths": [str(tmp_path)], "docker_root": str(tmp_path / "no-docker"), **options}
    monitoring = MonitoringConfig(probes={"disk": settings})
    config = SiteConfig(source=None, monitoring=monitoring)
    instance = InstanceConfig("h5disk", tmp_path / "h5disk")
    return ProbeContext(config, instance, probes.options("disk", monitoring), now=NOW, engine=_NoDocker())


class _NoDocker:
    def project_containers(self, project, expected=()):
        from isletops.errors import DockerError

        raise DockerError("Docker Engine is not reachable.")


def seed(tmp_path: Path, bytes_per_s: float, span_s: float = 3600, every_s: float = 300) -> dict:
    """Samples in the past, on a line ending at today's real usage."""
    real = disk.usage(tmp_path)
    key = str(tmp_path.absolute())
    samples = [[NOW - age, real["used"] - bytes_per_s * age, 0] for age in range(int(span_s), 0, -int(every_s))]
    store = tmp_path / "h5disk" / "state" / "probes" / "disk-samples.json"
    store.parent.mkdir(parents=True, exist_ok=True)
    store.write_text(json.dumps({key: samples}))
    return real


def test_filling_disk_warns_before_the_threshold(tmp_path: Path) -> None:
    real = seed(tmp_path, 0)
    rate = real["available"] / (6 * 3600)  # full in 6 h at this rate
    seed(tmp_path, rate)
    result = disk.run(context(tmp_path, warning_percent=100.0, critical_percent=100.0))
    assert result.status is Status.WARNING
    assert result.message.endswith("full, full in 6 h")
    assert result.details["filesystems"][0]["full_in_s"] == pytest.approx(6 * 3600, rel=0.02)


def test_disk_filling_within_two_hours_is_critical(tmp_path: Path) -> None:
    real = disk.usage(tmp_path)
    seed(tmp_path, real["available"] / 2700)  # 45 min
    result = disk.run(context(tmp_path, warning_percent=100.0, critical_percent=100.0))
    assert result.status is Status.CRITICAL and re.search(r"full in 4\d min$", result.message)


def test_steady_disk_is_ok_and_says_so(tmp_path: Path) -> None:
    seed(tmp_path, 0)
    result = disk.run(context(tmp_path, warning_percent=100.0, critical_percent=100.0))
    assert result.status is Status.OK and result.message.endswith("not filling")


def test_too_little_history_gives_no_forecast(tmp_path: Path) -> None:
    real = disk.usage(tmp_path)
    seed(tmp_path, real["available"] / 3600, span_s=600)  # 10 min of samples < forecast_min_span_s
    result = disk.run(context(tmp_path, warning_percent=100.0, critical_percent=100.0))
    assert result.status is Status.OK


def test_thresholds(tmp_path: Path) -> None:
    percent = disk.usage(tmp_path)["percent"]
    assert disk.run(context(tmp_path, warning_percent=0.0, critical_percent=100.0)).status is Status.WARNING
    result = disk.run(context(tmp_path, warning_percent=0.0, critical_percent=0.0))
    assert result.status is Status.CRITICAL and result.value == percent


def test_docker_root_comes_from_daemon_json(tmp_path: Path) -> None:
    daemon_json = tmp_path / "daemon.json"
    daemon_json.write_text('{"data-root": "/home/docker", "log-driver": "json-file"}')
    assert disk.docker_root({"docker_root": "", "daemon_json": str(daemon_json)}) == Path("/home/docker")
    assert disk.docker_root({"docker_root": "", "daemon_json": str(tmp_path / "none")}) == Path("/var/lib/docker")


def test_big_container_logs_of_this_project_are_named(tmp_path: Path) -> None:
    root = tmp_path / "docker"
    for cid, project, size in (("a1", "h5disk", 3 * 2**20), ("b2", "other", 9 * 2**20)):
        folder = root / "containers" / cid
        folder.mkdir(parents=True)
        (folder / "config.v2.json").write_text(json.dumps(
            {"Name": f"/{project}-backend-1", "Config": {"Labels": {"com.docker.compose.project": project}}}))
        (folder / f"{cid}-json.log").write_bytes(b"x" * size)  # fmt: skip
    result = disk.run(context(tmp_path, docker_root=str(root), log_warning_mb=2.0, warning_percent=100.0,
                              critical_percent=100.0))  # fmt: skip
    assert result.status is Status.WARNING
    assert "container logs too big: h5disk-backend-1 3 MiB (log rotation off?)" in result.message
    assert "other" not in result.message


def test_used_share_free_bytes_and_forecast_are_measured_per_file_system(tmp_path: Path) -> None:
    real = seed(tmp_path, 0)
    seed(tmp_path, real["available"] / (6 * 3600))
    result = disk.run(context(tmp_path, warning_percent=80.0, critical_percent=90.0))
    measured = {m.quantity: m for m in result.measurements}
    assert set(measured) == {"disk_used", "disk_free", "disk_full_in"}
    used = measured["disk_used"]
    assert used.labels == {"path": str(tmp_path.absolute())} and (used.warn, used.crit) == (0.8, 0.9)
    assert used.value == pytest.approx(result.value / 100)
    assert measured["disk_full_in"].value == pytest.approx(6 * 3600, rel=0.02)
