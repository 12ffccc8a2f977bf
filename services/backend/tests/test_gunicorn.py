"""The backend as the image runs it: gunicorn with `services.backend.app:create_app()` over real
HTTP, against real PostgreSQL and SeaweedFS (oversized bodies, JSON errors from the server)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from requests import Session, get

from services.backend.auth import METRICS_RULE
from services.backend.tests.helpers import admin_token
from services.backend.tests.images import dtz_rgb, encode
from services.common.database import JobDatabase
from services.common.lease_queue import LeaseQueue
from services.common.queue_metrics import OLDEST_QUEUED_METRIC, QUEUE_DEPTH_METRIC, QUEUE_JOBS_METRIC

pytestmark = pytest.mark.integration


def test_backend_under_gunicorn(backend_url: str, isolated_service_env: dict[str, str]) -> None:
    assert get(f"{backend_url}/api/jobs", timeout=10).status_code == 401
    requests = Session()  # the rest signed in with an admin's token
    requests.headers["Authorization"] = f"Bearer {admin_token(isolated_service_env['DATABASE_URL'])}"
    png = encode(dtz_rgb(), "PNG")
    created = requests.post(f"{backend_url}/api/jobs", files=[("images", ("a.png", png, "image/png"))], timeout=30)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert requests.get(f"{backend_url}/api/jobs/{job_id}", timeout=10).json()["state"] == "queued"
    assert requests.get(f"{backend_url}/api/spec.json", timeout=10).json()["openapi"].startswith("3.0")

    too_big = requests.post(
        f"{backend_url}/api/jobs",
        files=[("images", ("big.png", b"\x89PNG" + b"0" * 2_000_000, "image/png"))],
        headers={"Connection": "close"},  # gunicorn closes it: the unread body is not drained
        timeout=30,
    )
    assert too_big.status_code == 413
    assert too_big.json() == {"error": "The upload is larger than the limit of 1 MB; send fewer or smaller images."}

    missing = requests.get(f"{backend_url}/api/jobs/{'f' * 32}/result", timeout=10)
    assert missing.status_code == 404 and set(missing.json()) == {"error"}
    assert requests.get(f"{backend_url}/api/queue", timeout=10).json()["queued"] == 1

    trace = requests.request("TRACE", f"{backend_url}/api/jobs", timeout=10)
    assert trace.status_code == 405 and trace.headers["Content-Type"] == "application/json"
    assert set(trace.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert trace.json() == {"error": "TRACE is not allowed on /api/jobs; see /api/spec.json for the API."}


def test_metrics_serve_the_queue_depth_from_the_real_queue(backend_url: str,
                                                           isolated_service_env: dict[str, str]) -> None:
    """`/metrics` (no credentials: Prometheus scrapes it) counts the jobs of the real PostgreSQL
    queue; prometheus_client's parser reads it, as Prometheus would."""
    requests = Session()
    requests.headers["Authorization"] = f"Bearer {admin_token(isolated_service_env['DATABASE_URL'])}"
    png = encode(dtz_rgb(), "PNG")
    for _ in range(3):
        created = requests.post(f"{backend_url}/api/jobs", files=[("images", ("a.png", png, "image/png"))], timeout=30)
        assert created.status_code == 201, created.text
    assert LeaseQueue(JobDatabase.from_env(isolated_service_env)).claim("metrics-test", 60) is not None

    response = get(f"{backend_url}{METRICS_RULE}", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(response.text) for sample in family.samples}
    assert samples[(QUEUE_DEPTH_METRIC, ())] == 3
    assert samples[(QUEUE_JOBS_METRIC, (("state", "queued"),))] == 2
    assert samples[(QUEUE_JOBS_METRIC, (("state", "running"),))] == 1
    assert samples[(OLDEST_QUEUED_METRIC, ())] >= 0
    closed = get(f"{backend_url}/api/queue", timeout=10)
    assert closed.status_code == 401  # the API itself stays closed
    assert closed.headers["X-Content-Type-Options"] == "nosniff"  # what a Kubernetes Ingress passes on
