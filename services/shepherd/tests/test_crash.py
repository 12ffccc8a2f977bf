"""The shepherd as real processes: SIGKILL one mid-job, start another, and the job still
completes, exactly once; SIGTERM stops a worker cleanly; the healthcheck follows the heartbeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from services.backend.tests.images import encode
from services.common.storage import ObjectStore
from services.islets import make_dtz_image
from services.shepherd.tests.helpers import events, job, submit, wait_for
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]


def start_shepherd(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "services.shepherd"],
            env=env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def healthcheck(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.shepherd.healthcheck"], env=env, cwd=REPOSITORY,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_killed_worker_job_completes_exactly_once(isolated_service_env: dict[str, str], tmp_path: Path) -> None:
    rgb, truth = make_dtz_image(seed=11, size=(700, 800), diameters_um=(100.0, 150.0))
    png = encode(rgb, "PNG")
    job_id = submit(isolated_service_env, [(png, f"{n}.png") for n in range(6)])
    heartbeat = tmp_path / "shepherd.heartbeat"
    health_port = free_port()
    env = {
        **os.environ, **isolated_service_env, "PYTHONPATH": str(REPOSITORY),
        "LEASE_SECONDS": "3", "POLL_SECONDS": "0.2", "DRAIN_SECONDS": "20", "SHEPHERD_DEVICE": "cpu",
        "WORKERS": "1", "SHEPHERD_CONCURRENCY": "1", "MAX_BATCH_SIZE": "1",
        "SHEPHERD_HEARTBEAT_FILE": str(heartbeat), "SHEPHERD_HEARTBEAT_MAX_AGE": "5",
        "SHEPHERD_HEALTH_PORT": str(health_port),
    }  # fmt: skip
    log_path = tmp_path / "shepherd.log"
    store = ObjectStore.from_env(isolated_service_env)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        first = start_shepherd({**env, "WORKER_ID": "first"}, log_path)
        processes.append(first)
        wait_for(lambda: 0 < job(env, job_id).progress < 1, 180, "the first worker to be half-way")
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)

        killed = job(env, job_id)
        assert killed.state == "running" and killed.worker_id == "first"
        assert store.exists(f"jobs/{job_id}/outputs/0/result.json"), "the first worker had written some outputs"
        assert not store.exists(f"jobs/{job_id}/outputs/summary.json"), "it was killed before the end"

        second = start_shepherd({**env, "WORKER_ID": "second"}, log_path)
        processes.append(second)
        wait_for(lambda: job(env, job_id).state == "done", 180, "the second worker to finish the job")
        assert healthcheck(env).returncode == 0
        health = wait_for(
            lambda: (
                requests.get(f"http://127.0.0.1:{health_port}/health", timeout=10).json()["worker"].get("done") == 1
                and requests.get(f"http://127.0.0.1:{health_port}/health", timeout=10)
            ),
            30,
            "the health endpoint to report the finished job",
        )
        assert health.status_code == 200 and health.json()["worker"]["worker_id"] == "second"

        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, "SIGTERM must stop an idle worker cleanly"
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    log_text = log_path.read_text(errors="replace")

    done = job(env, job_id)
    assert (done.state, done.attempts, done.worker_id) == ("done", 2, "second"), log_text[-3000:]
    assert events(env, job_id) == ["created", "claimed", "reclaimed", "completed"]
    assert done.summary["image_count"] == 6
    assert done.summary["islet_count"] == 6 * truth["islet_count"]
    assert len(store.list(f"jobs/{job_id}/outputs/")) == 6 * 4 + 1, "a retry overwrites, never duplicates"
    assert "model classical on device cpu" in log_text

    # The worker is gone: its heartbeat goes stale and the healthcheck says so.
    os.utime(heartbeat, (0, 0))
    stale = healthcheck(env)
    assert stale.returncode == 1 and "the shepherd is stuck" in stale.stdout
