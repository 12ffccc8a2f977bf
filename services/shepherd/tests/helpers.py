"""Shared helpers for the shepherd tests: submit real jobs through the backend (signed in as a
technician, as the lab does), build workers."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

from services.backend.app import create_app
from services.common.database import JobDatabase
from services.common.jobs import Job, JobRecords
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectStore
from services.shepherd.config import ShepherdConfig
from services.shepherd.worker import Worker
from tests.fixtures.accounts import signed_in


def submit(env: dict[str, str], files: list[tuple[bytes, str]], **fields: str) -> str:
    """POST /api/jobs through the real backend; returns the job id."""
    app = create_app(env)
    try:
        data: dict[str, Any] = {"images": [(io.BytesIO(content), name) for content, name in files], **fields}
        response = signed_in(app, role="technician").post("/api/jobs", data=data, content_type="multipart/form-data")
        assert response.status_code == 201, response.get_json()
        return response.get_json()["id"]
    finally:
        app.extensions["isletnet.access"].stop()


def make_worker(
    env: dict[str, str], tmp_path: Any, model_loader: Callable[[str], Any] | None = None, **overrides: Any
) -> Worker:
    settings = {
        "lease_s": 10.0, "drain_s": 5.0, "poll_s": 0.1, "concurrency": 1, "postprocess_threads": 2,
        "heartbeat_file": str(tmp_path / "shepherd.heartbeat"), "worker_id": "test-worker",
        "oversized_lock_file": str(tmp_path / "oversized.lock"), **overrides,
    }  # fmt: skip
    kwargs = {"model_loader": model_loader} if model_loader else {}
    return Worker(ShepherdConfig(**settings), ObjectStore.from_env(env), LeaseQueue(JobDatabase.from_env(env)),
                  **kwargs)


def process_jobs(env: dict[str, str], tmp_path: Any, count: int, **worker_options: Any) -> list[str | None]:
    """Let a fresh worker (`make_worker` options) take `count` jobs in turn; their outcomes."""
    worker = make_worker(env, tmp_path, **worker_options)
    try:
        return [worker.process_next() for _ in range(count)]
    finally:
        worker.close()


def wait_for(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def job(env: dict[str, str], job_id: str) -> Job:
    found = JobRecords(JobDatabase.from_env(env)).get(job_id)
    assert found is not None
    return found


def events(env: dict[str, str], job_id: str) -> list[str]:
    return [event["event"] for event in JobRecords(JobDatabase.from_env(env)).events(job_id)]
