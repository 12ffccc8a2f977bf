"""Pure parts of the shepherd: configuration, worker planning per GPU, the job summary across
images, the heartbeat file and its healthcheck."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pytest

import services.islets as islets
from services.common.jobs import Job
from services.shepherd import gpus
from services.shepherd.config import ConfigError, ShepherdConfig
from services.shepherd.healthcheck import check
from services.shepherd.heartbeat import read_heartbeat, write_heartbeat
from services.shepherd.supervisor import plan_workers
from services.shepherd.worker import job_summary


def make_job(file_names: list[str]) -> Job:
    now = datetime.now(UTC)
    return Job(
        id="a" * 32, state="running", model="classical", pixel_size_um=0.843, priority=0, training=False,
        image_count=len(file_names), file_names=file_names, progress=0, attempts=1, max_attempts=3, error=None,
        summary=None, worker_id="w", lease_expires_at=now, created_at=now, started_at=now, finished_at=None,
        exported_at=None, pruned_at=None,
    )  # fmt: skip


def test_config_defaults_and_errors() -> None:
    config = ShepherdConfig.from_env({})
    assert (config.lease_s, config.drain_s, config.heartbeat_interval_s, config.workers) == (60, 30, 20, None)
    assert config.heartbeat_file == "/tmp/shepherd.heartbeat"
    assert ShepherdConfig.from_env({"WORKERS": "3", "LEASE_SECONDS": "9"}).heartbeat_interval_s == 3
    with pytest.raises(ConfigError, match=r"LEASE_SECONDS='soon' is not a number"):
        ShepherdConfig.from_env({"LEASE_SECONDS": "soon"})
    with pytest.raises(ConfigError, match="SHEPHERD_DEVICE='tpu' is unknown"):
        ShepherdConfig.from_env({"SHEPHERD_DEVICE": "tpu"})


def test_plan_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert plan_workers(ShepherdConfig.from_env({})) == ["0", "1"]
    assert plan_workers(ShepherdConfig.from_env({"WORKERS": "3"})) == ["0", "1", "0"]
    assert plan_workers(ShepherdConfig.from_env({"SHEPHERD_DEVICE": "cpu"})) == [None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert plan_workers(ShepherdConfig.from_env({"WORKERS": "2"})) == [None, None]


def test_no_nvml_means_cpu(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    class FailingNvml:
        @staticmethod
        def nvmlInit() -> None:
            raise RuntimeError("NVML Shared Library Not Found")

    monkeypatch.setitem(__import__("sys").modules, "pynvml", FailingNvml)
    caplog.set_level("INFO")
    assert gpus.visible_gpu_ids({}) == []
    assert "no GPU: running on CPU" in caplog.text


def test_summary_across_images_adds_counts_and_weights_ratios() -> None:
    first = {"islet_count": 3, "ieq_ricordi": 2.0, "ieq_sphere": 1.5, "ieq_ellipsoid": 1.4, "purity": 0.9,
             "fragmentation": 0.1, "islet_area_um2": 900.0, "exocrine_area_um2": 100.0,
             "size_classes": {"50-100": 2, "100-150": 1}}  # fmt: skip
    second = {"islet_count": 1, "ieq_ricordi": 1.0, "ieq_sphere": 0.5, "ieq_ellipsoid": 0.6, "purity": 0.1,
              "fragmentation": 0.5, "islet_area_um2": 100.0, "exocrine_area_um2": 900.0,
              "size_classes": {"50-100": 1}}  # fmt: skip
    summary = job_summary(make_job(["a.png", "b.png"]), [first, second])
    assert summary["islet_count"] == 4
    assert (summary["ieq_ricordi"], summary["ieq_sphere"], summary["ieq_ellipsoid"]) == (3.0, 2.0, 2.0)
    assert summary["ieq_per_islet"] == 0.75
    assert summary["purity"] == 0.5  # 1000 islet / 2000 islet+exocrine, not the mean of 0.9 and 0.1
    assert summary["fragmentation"] == pytest.approx(0.14)  # (0.1*900 + 0.5*100) / 1000
    assert {name: n for name, n in summary["size_classes"].items() if n} == {"50-100": 3, "100-150": 1}
    assert [image["name"] for image in summary["images"]] == ["a.png", "b.png"]
    assert (summary["job_id"], summary["pixel_size_um"], summary["model"]) == ("a" * 32, 0.843, "classical")


def test_summary_of_images_without_tissue_is_zero_not_none() -> None:
    """docs/architecture.md: purity and fragmentation are 0.0 when there is no (islet) tissue."""
    blank = islets.measure(np.zeros((64, 64), dtype=np.uint8), pixel_size_um=0.843)["summary"]
    summary = job_summary(make_job(["blank.png", "blank-too.png"]), [blank, blank])
    assert (summary["islet_count"], summary["ieq_per_islet"], summary["purity"], summary["fragmentation"]) == (
        0, 0.0, 0.0, 0.0,
    )  # fmt: skip
    assert summary == {**islets.summarise_images([{"summary": blank}] * 2), **{
        key: summary[key] for key in ("job_id", "pixel_size_um", "model", "images")}}, "one summary function"


def test_healthcheck_follows_the_heartbeat(tmp_path) -> None:
    path = tmp_path / "beat"
    config = ShepherdConfig.from_env({"SHEPHERD_HEARTBEAT_FILE": str(path), "SHEPHERD_HEARTBEAT_MAX_AGE": "30"})
    healthy, message = check(config)
    assert not healthy and "no heartbeat file" in message
    write_heartbeat(str(path), {"state": "busy"})
    assert check(config)[0] is True
    assert read_heartbeat(str(path))["state"] == "busy"
    os.utime(path, (1, 1))
    healthy, message = check(config)
    assert not healthy and "last state: busy" in message
    assert [p.name for p in tmp_path.iterdir()] == ["beat"], "no temporary files left behind"
