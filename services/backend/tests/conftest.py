"""The backend as its image runs it: gunicorn serving `services.backend.app:create_app()` over real
HTTP on loopback, against the session's real PostgreSQL and SeaweedFS (a database and a bucket of
the test's own)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fixtures.servers import free_port

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture
def backend_url(isolated_service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """URL of a gunicorn backend (2 workers × 2 threads, `MAX_UPLOAD_MB=1`), stopped afterwards."""
    port = free_port()
    env = {**os.environ, **isolated_service_env, "MAX_UPLOAD_MB": "1", "PYTHONPATH": str(REPOSITORY)}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--threads", "2", "--timeout", "60", "services.backend.app:create_app()"],
            env=env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gunicorn did not come up: {log_path.read_text(errors='replace')[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
