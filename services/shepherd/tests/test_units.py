"""Pure parts of the shepherd: configuration, worker planning per GPU, the job summary across
images, the heartbeat file and its healthcheck."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import numpy as np
import pytest

import services.islets as islets
from services.common.jobs import Job
from services.islets import models as islets_models
from services.islets.models import MODEL_THREADS_ENV
from services.shepherd import gpus
from services.shepherd.config import ConfigError, ShepherdConfig
from services.shepherd.healthcheck import check
from services.shepherd.heartbeat import read_heartbeat, write_heartbeat
from services.shepherd.supervisor import (
    THREAD_VARIABLES,
    cpu_count,
    gpu_postprocess_processes,
    plan_workers,
    thread_settings,
)
from services.shepherd.worker import StageTimes, job_summary


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
    # GPU hosts: one worker per GPU however many cores (the batcher feeds it).
    assert plan_workers(ShepherdConfig.from_env({}), cores=16) == ["0", "1"]
    # No GPU: one worker process per core; the serial pipeline of before keeps one.
    assert plan_workers(ShepherdConfig.from_env({"SHEPHERD_DEVICE": "cpu"}), cores=4) == [None] * 4
    assert plan_workers(ShepherdConfig.from_env({"SHEPHERD_DEVICE": "cpu", "SHEPHERD_PIPELINE": "serial"})) == [None]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert plan_workers(ShepherdConfig.from_env({"WORKERS": "2"}), cores=8) == [None, None]
    assert plan_workers(ShepherdConfig.from_env({}), cores=3) == [None] * 3


def test_thread_settings_share_the_cores_between_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each CPU worker gets cores/workers threads for BLAS, OpenMP and the model runtimes (at
    least 1), so several worker processes do not oversubscribe the host; MODEL_THREADS wins."""
    settings = thread_settings(ShepherdConfig.from_env({}), workers=2, cores=8)
    assert settings == {name: "4" for name in THREAD_VARIABLES}
    assert "OPENBLAS_NUM_THREADS" in settings and MODEL_THREADS_ENV in settings
    assert set(thread_settings(ShepherdConfig.from_env({}), workers=4, cores=2).values()) == {"1"}
    assert set(thread_settings(ShepherdConfig.from_env({"MODEL_THREADS": "3"}), 2, cores=2).values()) == {"3"}
    monkeypatch.setenv(MODEL_THREADS_ENV, "2")
    assert islets_models.model_threads() == 2
    monkeypatch.setenv(MODEL_THREADS_ENV, "many")
    assert islets_models.model_threads() is None


def test_cpu_count_follows_the_containers_cpu_quota(tmp_path) -> None:
    """A container limited to 1.5 CPUs (cgroup v2 cpu.max) runs 2 CPU workers, not one per host core."""
    cpu_max = tmp_path / "cpu.max"
    host = cpu_count(tmp_path / "missing")
    cpu_max.write_text("150000 100000\n")
    assert cpu_count(cpu_max) == min(host, 2)
    cpu_max.write_text("max 100000\n")
    assert cpu_count(cpu_max) == host
    cpu_max.write_text("garbage\n")
    assert cpu_count(cpu_max) == host


def test_gpu_workers_measure_in_processes_on_the_spare_cores() -> None:
    """A GPU worker is one process; its CPU stages get the cores shared out between the GPUs,
    less one for the worker itself. CPU workers (one per core already) keep threads."""
    assert ShepherdConfig.from_env({}).postprocess_processes == 0
    assert gpu_postprocess_processes(ShepherdConfig.from_env({}), gpus=1, cores=16) == 15
    assert gpu_postprocess_processes(ShepherdConfig.from_env({}), gpus=4, cores=16) == 3
    assert gpu_postprocess_processes(ShepherdConfig.from_env({}), gpus=2, cores=2) == 1
    assert gpu_postprocess_processes(ShepherdConfig.from_env({"POSTPROCESS_PROCESSES": "2"}), 1, cores=16) == 2
    assert gpu_postprocess_processes(ShepherdConfig.from_env({"SHEPHERD_PIPELINE": "serial"}), 1, cores=16) == 0


def test_pipeline_setting() -> None:
    assert ShepherdConfig.from_env({}).overlap is True
    assert ShepherdConfig.from_env({"SHEPHERD_PIPELINE": " Serial "}).overlap is False
    with pytest.raises(ConfigError, match="SHEPHERD_PIPELINE='fast' is unknown; use overlap or serial."):
        ShepherdConfig.from_env({"SHEPHERD_PIPELINE": "fast"})
    with pytest.raises(ConfigError, match="STORAGE_THREADS must be at least 1, got 0"):
        ShepherdConfig.from_env({"STORAGE_THREADS": "0"})


def test_stage_times_add_up_per_stage_in_pipeline_order() -> None:
    times = StageTimes()
    times.add("storage_writes", 0.5, 0.0)
    times.add("decode", 0.25, 0.25)
    times.add("decode", 0.25, 0.125)
    with times.measure("postprocess"):
        sum(range(200_000))
    stages = times.to_dict()
    assert list(stages) == ["decode", "postprocess", "storage_writes"]
    assert stages["decode"] == {"wall_s": 0.5, "cpu_s": 0.375}
    assert stages["postprocess"]["wall_s"] > 0 and stages["postprocess"]["cpu_s"] > 0


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
