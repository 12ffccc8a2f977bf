"""The disk probe on a real, small filesystem (8 MiB tmpfs, or a loop-mounted ext4 image) that
the test fills step by step while the probe's clock advances ten minutes per step."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import runner
from monitors.result import Status

pytestmark = pytest.mark.integration
STEP_S = 600.0


def _mount(target: Path, image: Path) -> str | None:
    target.mkdir(parents=True)
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(target)], capture_output=True)
    if tmpfs.returncode == 0:
        return "tmpfs"
    if shutil.which("mkfs.ext4") is None:
        return None
    subprocess.run(["truncate", "-s", "8M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    loop = subprocess.run(["mount", "-o", "loop", str(image), str(target)], capture_output=True)
    return "loop" if loop.returncode == 0 else None


@pytest.fixture
def small_filesystem(tmp_path: Path):
    target = tmp_path / "fs"
    kind = _mount(target, tmp_path / "fs.img")
    if kind is None:
        pytest.skip("cannot mount a small filesystem here (needs root: tmpfs or a loop device)")
    try:
        yield target
    finally:
        subprocess.run(["umount", str(target)], check=False)


def test_filling_filesystem_warns_from_the_forecast_then_goes_critical(tmp_path: Path, small_filesystem: Path) -> None:
    monitoring = MonitoringConfig(
        probes={"disk": {"paths": [str(small_filesystem)], "docker_root": str(tmp_path / "no-docker")}}
    )
    config = SiteConfig(source=None, monitoring=monitoring)
    instance = InstanceConfig("h5disk", tmp_path / "h5disk")
    now = 1_800_000_000.0
    seen = []
    for step in range(40):
        with contextlib.suppress(OSError):  # full: exactly what the probe must have warned about
            (small_filesystem / f"upload-{step:02d}.bin").write_bytes(b"\x5a" * 400 * 1024)  # 400 KiB per 10 min
        (result,) = runner.run_probes(config, instance, ["disk"], now=now + step * STEP_S)
        seen.append((step, result.status, result.value, result.message))
        if result.value >= 95:
            break
    first_warning = next(entry for entry in seen if entry[1] is not Status.OK)
    step, status, percent, message = first_warning
    assert step >= 2, "a forecast needs samples spanning 15 minutes"
    assert status is Status.WARNING and percent < 80 and ", full in " in message and " h" in message, seen
    critical = [entry for entry in seen if entry[1] is Status.CRITICAL]
    assert critical and critical[0][2] < 90, "the forecast (full within 2 h) goes critical before the threshold"
    assert seen[-1][1] is Status.CRITICAL and "% full" in seen[-1][3]
    samples = (instance.state_dir / "probes" / "disk-samples.json").read_text()
    assert str(small_filesystem) in samples


def test_freed_space_recovers(tmp_path: Path, small_filesystem: Path) -> None:
    monitoring = MonitoringConfig(
        probes={"disk": {"paths": [str(small_filesystem)], "docker_root": str(tmp_path / "no-docker")}}
    )
    config = SiteConfig(source=None, monitoring=monitoring)
    instance = InstanceConfig("h5disk", tmp_path / "h5disk")
    (small_filesystem / "big.bin").write_bytes(b"\0" * 7_700_000)
    (result,) = runner.run_probes(config, instance, ["disk"], now=1_800_000_000.0)
    assert result.status is Status.CRITICAL and result.value >= 90
    (small_filesystem / "big.bin").unlink()
    (result,) = runner.run_probes(config, instance, ["disk"], now=1_800_000_600.0)
    assert result.status is Status.OK and result.value < 10
