"""Report, statistics and training-export routes against a real PostgreSQL and a real SeaweedFS.

Jobs are submitted through the real POST /api/jobs and analysed by the real shepherd worker, so
the reports are built from genuine results.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openpyxl import load_workbook
from pypdf import PdfReader

from services.backend.app import create_app
from services.backend.tests.images import dtz_rgb, encode
from services.common.database import JobDatabase
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue
from services.common.retention import Retention
from services.common.storage import ObjectStore
from services.shepherd.config import ShepherdConfig
from services.shepherd.worker import Worker
from tests.fixtures.accounts import signed_in

pytestmark = pytest.mark.integration


def process_next_job(store: ObjectStore, queue: LeaseQueue, worker_id: str = "test-shepherd") -> str | None:
    """Let the real shepherd worker do one job; returns its id (None when the queue is empty)."""
    # A generous lease: a loaded test host may be slow.
    worker = Worker(ShepherdConfig(lease_s=600, concurrency=1, worker_id=worker_id), store, queue)
    try:
        claimed = queue.claim(worker.worker_id, worker.config.lease_s)
        if claimed is None:
            return None
        assert worker.process(claimed) == "done"
        return claimed.id
    finally:
        worker.close()


@pytest.fixture
def app(isolated_service_env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(isolated_service_env)
    yield app
    app.extensions["isletnet.access"].stop()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return signed_in(app)


@pytest.fixture
def store(app: Flask) -> ObjectStore:
    return app.extensions["isletnet.store"]


@pytest.fixture
def database(app: Flask) -> JobDatabase:
    return app.extensions["isletnet.database"]


@pytest.fixture
def queue(database: JobDatabase) -> LeaseQueue:
    return LeaseQueue(database)


@pytest.fixture(scope="module")
def pngs() -> list[bytes]:
    return [encode(dtz_rgb(seed=3, diameters_um=(90, 130, 170)), "PNG"), encode(dtz_rgb(seed=4), "PNG")]


def submit(client: FlaskClient, pngs: list[bytes], training: bool = False, synthetic: bool = False) -> str:
    data = {"images": [(io.BytesIO(png), f"sample-{n}.png") for n, png in enumerate(pngs)],
            "training": "true" if training else "false", "synthetic": "1" if synthetic else "0"}
    response = client.post("/api/jobs", data=data, content_type="multipart/form-data")
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


@pytest.fixture
def done_job(client: FlaskClient, store: ObjectStore, queue: LeaseQueue, pngs: list[bytes]) -> str:
    job_id = submit(client, pngs)
    assert process_next_job(store, queue) == job_id
    return job_id


def test_csv_xlsx_pdf_and_zip_of_a_finished_job(client: FlaskClient, done_job: str) -> None:
    result = client.get(f"/api/jobs/{done_job}/result").get_json()
    count = sum(len(image["islets"]) for image in result["images"])
    assert count >= 4

    csv_response = client.get(f"/api/jobs/{done_job}/islets.csv")
    assert csv_response.status_code == 200 and csv_response.mimetype == "text/csv"
    assert f'filename="isletnet-{done_job[:8]}-islets.csv"' in csv_response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(csv_response.get_data(as_text=True))))
    assert len(rows) == count and {row["image"] for row in rows} == {"1", "2"}
    assert {row["file"] for row in rows} == {"sample-0.png", "sample-1.png"}

    workbook = load_workbook(io.BytesIO(client.get(f"/api/jobs/{done_job}/islets.xlsx").data))
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(values_only=True) if row and row[0]}
    assert summary["Job"] == done_job and summary["Islet count"] == count
    assert workbook["Islets"].max_row == count + 1

    pdf = PdfReader(io.BytesIO(client.get(f"/api/jobs/{done_job}/report.pdf").data))
    text = "\n".join(page.extract_text() for page in pdf.pages)
    assert done_job in text and f"Islets ({count})" in text
    assert f"{result['summary']['ieq_ricordi']:.2f}" in text
    assert sum(len(page.images) for page in pdf.pages) == 2  # one overlay per image

    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{done_job}/archive.zip").data))
    names = set(archive.namelist())
    folder = f"job-{done_job}/"
    assert {folder + n for n in ("islets.csv", "islets.xlsx", "report.pdf", "job.json", "outputs/summary.json",
                                 "outputs/0/overlay.png", "outputs/1/result.json")} <= names
    assert not any(name.startswith(folder + "inputs/") for name in names)
    with_inputs = zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{done_job}/archive.zip?inputs=1").data))
    assert folder + "inputs/0-sample-0.png" in with_inputs.namelist()


def test_reports_of_unfinished_unknown_and_pruned_jobs_are_plain_errors(
    client: FlaskClient, queue: LeaseQueue, store: ObjectStore, pngs: list[bytes]
) -> None:
    waiting = submit(client, pngs[:1])
    response = client.get(f"/api/jobs/{waiting}/report.pdf")
    assert response.status_code == 409
    assert response.get_json()["error"].startswith(f"Job {waiting} is queued")
    unknown = client.get(f"/api/jobs/{'0' * 32}/islets.csv")
    assert unknown.status_code == 404 and unknown.get_json()["error"].startswith("There is no job")
    process_next_job(store, queue)
    store.delete_prefix(f"jobs/{waiting}/")
    assert Retention(queue.database).mark_pruned(waiting)
    gone = client.get(f"/api/jobs/{waiting}/archive.zip")
    assert gone.status_code == 410
    assert gone.get_json() == {"error": f"The results of job {waiting} were deleted by the retention policy."}


def test_statistics_and_access_statistics_workbook(client: FlaskClient, done_job: str, pngs: list[bytes]) -> None:
    submit(client, pngs[:1])
    client.get("/api/jobs/not-a-job")  # a 404 the access statistics count as a client error
    stats = client.get("/api/statistics").get_json()
    totals = stats["totals"]
    assert totals["jobs"] == 2 and totals["jobs_by_state"] == {"done": 1, "queued": 1}
    assert totals["images"] == 3 and totals["islets"] >= 4
    assert stats["per_day"][-1]["jobs"] == 2 and stats["per_day"][-1]["requests"] >= 3

    response = client.get("/api/statistics/access_statistics.xlsx")
    assert response.status_code == 200
    workbook = load_workbook(io.BytesIO(response.data))
    assert workbook.sheetnames == ["Per day", "Per endpoint", "Totals"]
    endpoints = list(workbook["Per endpoint"].iter_rows(values_only=True))[1:]
    posts = [row for row in endpoints if row[1] == "POST" and row[2] == "/api/jobs"]
    assert posts and posts[0][3] == 2  # two submits today
    missing = [row for row in endpoints if row[2] == "/api/jobs/<job_id>" and row[4] >= 1]
    assert missing, endpoints
    totals_sheet = {row[0]: row[1] for row in workbook["Totals"].iter_rows(values_only=True)}
    assert totals_sheet["jobs"] == 2


def test_synthetic_jobs_stay_out_of_the_statistics(client: FlaskClient, store: ObjectStore, queue: LeaseQueue,
                                                   done_job: str, pngs: list[bytes]) -> None:
    before = client.get("/api/statistics").get_json()
    probe = submit(client, pngs[:1], synthetic=True)
    assert process_next_job(store, queue) == probe
    assert client.get(f"/api/jobs/{probe}/result").status_code == 200  # its result is served as usual

    after = client.get("/api/statistics").get_json()
    assert after["totals"] == before["totals"] and after["totals"]["jobs"] == 1
    assert {key: after["per_day"][-1][key] for key in ("jobs", "images", "failed_jobs")} == {
        "jobs": 1, "images": 2, "failed_jobs": 0}
    assert after["queue"]["done_last_hour"] == 2  # queue figures are about the queue, test jobs included
    workbook = load_workbook(io.BytesIO(client.get("/api/statistics/access_statistics.xlsx").data))
    assert {row[0]: row[1] for row in workbook["Totals"].iter_rows(values_only=True)}["jobs"] == 1


def test_training_export_once_then_all(client: FlaskClient, queue: LeaseQueue, store: ObjectStore,
                                       pngs: list[bytes]) -> None:
    assert client.post("/api/training/export").status_code == 204  # nothing marked yet
    plain = submit(client, pngs[:1])
    marked = submit(client, pngs, training=True)

    first = client.post("/api/training/export")
    assert first.status_code == 200 and first.headers["X-Exported-Jobs"] == "1"
    assert first.headers["X-Exported-Images"] == "2"
    archive = zipfile.ZipFile(io.BytesIO(first.data))
    names = archive.namelist()
    assert f"{marked}/inputs/0-sample-0.png" in names and f"{marked}/inputs/1-sample-1.png" in names
    assert archive.read(f"{marked}/inputs/1-sample-1.png") == pngs[1]
    assert not any(name.startswith(plain) for name in names)
    manifest = json.loads(archive.read("manifest.json"))
    assert [job["id"] for job in manifest["jobs"]] == [marked]
    records = JobRecords(queue.database)
    assert records.get(marked).exported_at is not None and records.get(plain).exported_at is None
    assert store.list("training/exports/")  # the export is recorded in storage as well

    assert client.post("/api/training/export").status_code == 204  # one-time: nothing new
    again = client.post("/api/training/export?all=1")
    assert again.status_code == 200 and again.headers["X-Exported-Jobs"] == "1"
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(again.data)).read("manifest.json"))
    assert manifest["jobs"][0]["previously_exported_at"] is not None
    assert store.exists(f"jobs/{marked}/inputs/0-sample-0.png")  # exporting never deletes


def test_the_openapi_document_lists_the_report_routes(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    spec = client.get("/api/spec.json").get_json()
    validate(spec)
    for path in ("/api/jobs/{job_id}/report.pdf", "/api/jobs/{job_id}/islets.csv", "/api/jobs/{job_id}/islets.xlsx",
                 "/api/jobs/{job_id}/archive.zip", "/api/statistics", "/api/statistics/access_statistics.xlsx",
                 "/api/training/export"):
        assert path in spec["paths"], path
