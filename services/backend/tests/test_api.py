"""The REST API with Flask's test client against a real PostgreSQL and a real SeaweedFS: what is
stored and queued, what a dependency outage answers, the access statistics. Bad inputs refused
before anything is stored are tested without servers in test_validation.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.backend.app import create_app
from services.backend.tests.helpers import assert_plain_error, submit
from services.backend.tests.images import dtz_rgb, encode
from services.common.access_stats import AccessStatistics
from services.common.accounts import Accounts
from services.common.database import JobDatabase
from services.common.jobs import JobRecords
from services.common.storage import ObjectStore, StorageUnavailable
from tests.fixtures.accounts import signed_in
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def env(isolated_service_env: dict[str, str]) -> dict[str, str]:
    return {**isolated_service_env, "MAX_UPLOAD_MB": "5"}


@pytest.fixture
def make_app(env: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """create_app for this test; the apps' background statistics writers stop at the end."""
    apps: list[Flask] = []

    def make(overrides: dict[str, str] | None = None, **kwargs: object) -> Flask:
        settings = {**env, **(overrides or {})}
        # Accounts stay on the live database when a test kills the job database.
        kwargs.setdefault("accounts", Accounts(JobDatabase.from_env(settings)))
        app = create_app(settings, **kwargs)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["isletnet.access"].stop()


@pytest.fixture
def client(make_app: Callable[..., Flask]) -> FlaskClient:
    return signed_in(make_app())


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode(dtz_rgb(), "PNG")


def stored_keys(env: dict[str, str]) -> list[str]:
    store = ObjectStore.from_env(env)
    store.ensure_bucket()
    return store.list("jobs/")


def job_count(env: dict[str, str]) -> int:
    return len(JobRecords(JobDatabase.from_env(env)).list_jobs())


def assert_nothing_stored(env: dict[str, str]) -> None:
    assert stored_keys(env) == []
    assert job_count(env) == 0


# -- the happy path -----------------------------------------------------------------------------


def test_submit_stores_inputs_then_queues_the_job(client: FlaskClient, env: dict[str, str], png: bytes) -> None:
    jpeg = encode(dtz_rgb(seed=2), "JPEG")
    response = submit(client, [(png, "first.png"), (jpeg, "second.jpg")], pixel_size_um="0.9", priority="5")
    assert response.status_code == 201, response.get_json()
    job_id = response.get_json()["id"]
    assert response.get_json() == {"id": job_id, "state": "queued"}
    assert response.headers["Location"] == f"/api/jobs/{job_id}"

    assert stored_keys(env) == [
        f"jobs/{job_id}/inputs/0-first.png",
        f"jobs/{job_id}/inputs/1-second.jpg",
        f"jobs/{job_id}/request.json",
    ]
    store = ObjectStore.from_env(env)
    assert store.get(f"jobs/{job_id}/inputs/0-first.png") == png
    request_document = json.loads(store.get(f"jobs/{job_id}/request.json"))
    assert request_document["pixel_size_um"] == 0.9 and request_document["model"] == "classical"
    assert [image["name"] for image in request_document["images"]] == ["first.png", "second.jpg"]
    assert request_document["images"][0]["width"] == 600

    job = client.get(f"/api/jobs/{job_id}").get_json()
    assert job["state"] == "queued" and job["progress"] == 0 and job["error"] is None
    assert (job["image_count"], job["priority"], job["file_names"]) == (2, 5, ["first.png", "second.jpg"])
    assert "lease_expires_at" not in job and "lease_token" not in job
    assert [listed["id"] for listed in client.get("/api/jobs").get_json()["jobs"]] == [job_id]


def test_defaults_and_tiff(client: FlaskClient) -> None:
    response = submit(client, [(encode(dtz_rgb(), "TIFF"), "scan.tif")], training="true")
    assert response.status_code == 201
    job = client.get(f"/api/jobs/{response.get_json()['id']}").get_json()
    assert (job["pixel_size_um"], job["model"], job["priority"], job["training"]) == (0.843, "classical", 0, True)


def test_synthetic_jobs_are_listed_only_when_asked(client: FlaskClient, env: dict[str, str], png: bytes) -> None:
    user = submit(client, [(png, "mine.png")]).get_json()["id"]
    response = submit(client, [(png, "isletops-e2e-probe.png")], synthetic="1", priority="100")
    assert response.status_code == 201, response.get_json()
    probe = response.get_json()["id"]

    assert [job["id"] for job in client.get("/api/jobs").get_json()["jobs"]] == [user]
    assert [job["id"] for job in client.get("/api/jobs?include_synthetic=0").get_json()["jobs"]] == [user]
    listed = client.get("/api/jobs?include_synthetic=1").get_json()["jobs"]
    assert [(job["id"], job["synthetic"]) for job in listed] == [(probe, True), (user, False)]
    assert client.get(f"/api/jobs/{probe}").get_json()["synthetic"] is True  # reachable by id all the same
    request_document = json.loads(ObjectStore.from_env(env).get(f"jobs/{probe}/request.json"))
    assert request_document["synthetic"] is True
    assert client.get("/api/queue").get_json()["queued"] == 2  # the queue is the queue: test jobs wait too


def test_health_models_queue(client: FlaskClient, png: bytes) -> None:
    assert client.get("/api/health").get_json() == {"status": "ok", "storage": "ok", "queue": "ok"}
    assert client.get("/api/models").get_json() == {"models": ["classical"], "default": "classical"}
    submit(client, [(png, "a.png")])
    stats = client.get("/api/queue").get_json()
    assert stats["queued"] == 1 and stats["running"] == 0 and stats["oldest_queued_age_s"] >= 0


def test_result_and_overlay_are_409_until_done(client: FlaskClient, png: bytes) -> None:
    job_id = submit(client, [(png, "a.png")]).get_json()["id"]
    assert_plain_error(client.get(f"/api/jobs/{job_id}/result"), 409, r"is queued .*ready when its state is done")
    assert_plain_error(client.get(f"/api/jobs/{job_id}/overlay.png"), 409, "is queued")
    assert_plain_error(client.get(f"/api/jobs/{job_id}/overlay.png?image=3"), 404, "has 1 images")
    assert_plain_error(client.get(f"/api/jobs/{job_id}/overlay.png?image=x"), 400, "is not a whole number")


# -- inputs that are stored, or reach the database ---------------------------------------------


def test_path_in_file_name_is_reduced_to_a_safe_base_name(client: FlaskClient, env: dict[str, str], png: bytes) -> None:
    response = submit(client, [(png, "../../x.png"), (png, "/etc/cron.d/y tab.png"), (png, "../..")])
    assert response.status_code == 201
    job_id = response.get_json()["id"]
    assert stored_keys(env) == [
        f"jobs/{job_id}/inputs/0-x.png",
        f"jobs/{job_id}/inputs/1-y_tab.png",
        f"jobs/{job_id}/inputs/2-image-2",
        f"jobs/{job_id}/request.json",
    ]
    assert client.get(f"/api/jobs/{job_id}").get_json()["file_names"] == ["x.png", "y_tab.png", "image-2"]


def test_unknown_job_id_is_404(client: FlaskClient) -> None:
    job_id = "0" * 32
    for suffix in ("", "/result", "/overlay.png"):
        assert_plain_error(client.get(f"/api/jobs/{job_id}{suffix}"), 404, "no job|no endpoint")


# -- dependencies down --------------------------------------------------------------------------


def test_storage_down_on_submit_is_503_with_retry_and_nothing_queued(
    make_app: Callable[..., Flask], env: dict[str, str], png: bytes
) -> None:
    dead = ObjectStore(f"http://127.0.0.1:{free_port()}", "a", "b", "isletnet", connect_timeout_s=1, max_attempts=1)
    client = signed_in(make_app(store=dead))
    response = submit(client, [(png, "a.png")])
    assert_plain_error(response, 503, r"^The job was not accepted because storage at .* cannot be reached")
    assert response.headers["Retry-After"] == "30"
    assert job_count(env) == 0
    health = client.get("/api/health")
    assert health.status_code == 503 and health.get_json()["queue"] == "ok"
    assert "cannot be reached" in health.get_json()["storage"]


def test_database_down_on_submit_is_503_and_the_inputs_are_removed(
    make_app: Callable[..., Flask], env: dict[str, str], png: bytes
) -> None:
    dead = JobDatabase(f"postgresql://x:y@127.0.0.1:{free_port()}/x", connect_timeout_s=1)
    client = signed_in(make_app(database=dead))
    response = submit(client, [(png, "a.png"), (png, "b.png")])
    assert_plain_error(response, 503, "job database .* cannot be reached")
    assert response.headers["Retry-After"] == "30"
    assert stored_keys(env) == [], "inputs written before the failed enqueue must be deleted"


def test_storage_failing_half_way_leaves_nothing(
    make_app: Callable[..., Flask], env: dict[str, str], png: bytes
) -> None:
    class FailsOnRequestDocument(ObjectStore):
        def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
            if key.endswith("request.json"):
                raise StorageUnavailable("Storage at the test endpoint stopped answering; try again later.")
            super().put(key, data, content_type)

    client = signed_in(make_app(store=FailsOnRequestDocument.from_env(env)))
    response = submit(client, [(png, "a.png"), (png, "b.png")])
    assert_plain_error(response, 503, "stopped answering")
    assert_nothing_stored(env)


# -- access statistics --------------------------------------------------------------------------


def test_access_statistics_are_counted_per_route(
    make_app: Callable[..., Flask], env: dict[str, str], png: bytes
) -> None:
    app = make_app()
    client = signed_in(app)
    client.get("/api/health")
    client.get("/api/health")
    client.get(f"/api/jobs/{'0' * 32}")
    submit(client, [(png, "a.png")])
    assert app.extensions["isletnet.access"].flush() == 4
    stored = AccessStatistics(JobDatabase.from_env(env)).access_statistics()
    rows = {(r["endpoint"], r["method"], r["status"]): r["requests"] for r in stored}
    assert rows == {
        ("/api/health", "GET", 200): 2,
        ("/api/jobs/<job_id>", "GET", 404): 1,
        ("/api/jobs", "POST", 201): 1,
    }


def test_reads_while_the_database_is_down_are_503(make_app: Callable[..., Flask]) -> None:
    dead = JobDatabase(f"postgresql://x:y@127.0.0.1:{free_port()}/x", connect_timeout_s=1)
    client = signed_in(make_app(database=dead))
    for path in ("/api/jobs", f"/api/jobs/{'a' * 32}", "/api/queue"):
        response = client.get(path)
        assert_plain_error(response, 503, "job database .* cannot be reached")
        assert response.headers["Retry-After"] == "30"
