"""The backend as the image runs it: gunicorn with `services.backend.app:create_app()` over real
HTTP, against real PostgreSQL and SeaweedFS (oversized bodies, JSON errors from the server)."""

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

from services.backend.tests.images import dtz_rgb, encode
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

REPOSITORY = Path(__file__).resolve().parents[3]


@pytest.fixture
def backend_url(isolated_service_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
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
        deadline = time.monotonic() + 60
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


def test_backend_under_gunicorn(backend_url: str) -> None:
    png = encode(dtz_rgb(), "PNG")
    created = requests.post(f"{backend_url}/api/jobs", files=[("images", ("a.png", png, "image/png"))], timeout=30)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert requests.get(f"{backend_url}/api/jobs/{job_id}", timeout=10).json()["state"] == "queued"
    assert requests.get(f"{backend_url}/api/spec.json", timeout=10).json()["openapi"].startswith("3.0")

    too_big = requests.post(
        f"{backend_url}/api/jobs",
        files=[("images", ("big.png", b"\x89PNG" + b"0" * 2_000_000, "image/png"))],
        timeout=30,
    )
    assert too_big.status_code == 413
    assert too_big.json() == {"error": "The upload is larger than the limit of 1 MB; send fewer or smaller images."}

    missing = requests.get(f"{backend_url}/api/jobs/{'f' * 32}/result", timeout=10)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    assert requests.get(f"{backend_url}/api/queue", timeout=10).json()["queued"] == 1
