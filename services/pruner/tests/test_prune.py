"""Pruner against real PostgreSQL and real SeaweedFS: retention, training jobs, dry run, outages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlparse

import pytest

from services.common.database import JobDatabase
from services.common.jobs import Job, JobRecords
from services.common.layout import new_job_id
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectInfo, ObjectStore
from services.pruner import healthcheck
from services.pruner.prune import (
    LAST_RUN_KEY,
    Pruner,
    PrunerConfigError,
    PrunerSettings,
    orphans_among,
    read_status_file,
)
from services.pruner.tests.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[3]


# -- unit tests of the pure parts ---------------------------------------------------------------


def test_settings_read_seconds_and_refuse_nonsense() -> None:
    settings = PrunerSettings.from_env({"RETENTION_SECONDS": "90", "PRUNE_INTERVAL_SECONDS": "15"})
    assert (settings.retention_s, settings.interval_s) == (90.0, 15.0)
    assert PrunerSettings.from_env({}).retention_s == 30 * 86400
    assert PrunerSettings.from_env({"ISLETNET_STATE_DIR": "/var/lib/isletnet"}).status_file == Path(
        "/var/lib/isletnet/pruner/last_run.json")
    with pytest.raises(PrunerConfigError, match=r"^RETENTION_SECONDS='a week' is not a number of seconds"):
        PrunerSettings.from_env({"RETENTION_SECONDS": "a week"})
    with pytest.raises(PrunerConfigError, match="PRUNE_INTERVAL_SECONDS must be at least 1"):
        PrunerSettings.from_env({"PRUNE_INTERVAL_SECONDS": "0"})


def test_healthcheck_judges_the_age_of_the_last_success() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    fresh = {"ok": True, "interval_s": 60, "last_success_at": "2026-11-25T11:58:00Z"}
    assert healthcheck.check(fresh, now)[0] is True
    stale = {"ok": True, "interval_s": 60, "last_success_at": "2026-11-25T11:50:00Z"}  # 600 s > 2*60+300
    healthy, sentence = healthcheck.check(stale, now)
    assert not healthy and "600 s ago (allowed 420 s)" in sentence
    failing = {"ok": False, "interval_s": 60, "last_success_at": None, "last_error": "Storage cannot be reached."}
    assert healthcheck.check(failing, now) == (
        False, "The pruner has never finished a pass; last error: Storage cannot be reached.")
    assert healthcheck.check(None, now)[0] is False


def test_orphans_are_jobs_without_a_row_whose_every_file_is_past_the_grace() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    old, fresh = now - timedelta(days=2), now - timedelta(minutes=5)
    gone, uploading, known = "a" * 32, "b" * 32, "c" * 32
    objects = [
        ObjectInfo(f"jobs/{gone}/inputs/0-a.png", 10, old),
        ObjectInfo(f"jobs/{gone}/request.json", 2, old),
        ObjectInfo(f"jobs/{uploading}/inputs/0-a.png", 10, old),
        ObjectInfo(f"jobs/{uploading}/inputs/1-b.png", 10, fresh),  # still being uploaded
        ObjectInfo(f"jobs/{known}/inputs/0-a.png", 10, old),
        ObjectInfo("jobs/not-a-job-id/readme.txt", 1, old),  # not ours: never touched
        ObjectInfo("pruner/last_run.json", 1, old),
    ]
    orphans = orphans_among(objects, known_ids={known}, older_than=now - timedelta(days=1))
    assert [(orphan.job_id, orphan.size) for orphan in orphans] == [(gone, 12)]
    assert [o.job_id for o in orphans_among(objects, known_ids={known}, older_than=now)] == [gone, uploading]


# -- integration: real database and storage -----------------------------------------------------


@pytest.fixture
def env(isolated_service_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {**isolated_service_env, "PRUNER_STATUS_FILE": str(tmp_path / "status" / "last_run.json")}


@pytest.fixture
def store(env: dict[str, str]) -> ObjectStore:
    store = ObjectStore.from_env(env)
    store.ensure_bucket()
    return store


@pytest.fixture
def database(env: dict[str, str]) -> JobDatabase:
    return JobDatabase.from_env(env)


def job(database: JobDatabase, job_id: str) -> Job:
    found = JobRecords(database).get(job_id)
    assert found is not None
    return found


def settings(env: dict[str, str], retention_s: float = 0.0) -> PrunerSettings:
    return PrunerSettings(retention_s=retention_s, interval_s=60, retry_attempts=2, retry_delay_s=0.05,
                          status_file=Path(env["PRUNER_STATUS_FILE"]))


def make_job(store: ObjectStore, database: JobDatabase, *, training: bool = False, finish: str | None = "done",
             synthetic: bool = False) -> str:
    """A job as the backend and shepherd leave it: request, two inputs, per-image results, summary."""
    job_id = JobRecords(database).create_job(model="classical", pixel_size_um=0.843, file_names=["a.png", "b.png"],
                                             training=training, synthetic=synthetic)
    queue = LeaseQueue(database)
    prefix = f"jobs/{job_id}/"
    store.put(prefix + "request.json", json.dumps({"pixel_size_um": 0.843}).encode(), "application/json")
    for index, name in enumerate(["a.png", "b.png"]):
        store.put(f"{prefix}inputs/{index}-{name}", os.urandom(1000 + index), "image/png")
    if finish is not None:
        claimed = queue.claim("test-worker", 60)
        assert claimed is not None and claimed.id == job_id
        for index in range(2):
            store.put(f"{prefix}outputs/{index}/result.json", b'{"islets": []}', "application/json")
            store.put(f"{prefix}outputs/{index}/overlay.png", os.urandom(500), "image/png")
        store.put(prefix + "outputs/summary.json", b"{}", "application/json")
        if finish == "done":
            assert queue.complete(job_id, claimed.token, {"islet_count": 0})
        else:
            assert queue.fail(job_id, claimed.token, "The image is not a readable PNG.")
    return job_id


def stored_size(store: ObjectStore, job_id: str) -> int:
    return sum(item.size for item in store.list_objects(f"jobs/{job_id}/"))


def keys(store: ObjectStore, job_id: str) -> list[str]:
    return store.list(f"jobs/{job_id}/")


def dry_run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`python -m services.pruner --dry-run --retention-seconds 0`, as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "services.pruner", "--dry-run", "--retention-seconds", "0"],
        env={**os.environ, **env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.integration
def test_retention_zero_removes_exactly_the_unmarked_finished_jobs(
    env: dict[str, str], store: ObjectStore, database: JobDatabase
) -> None:
    training = [make_job(store, database, training=True), make_job(store, database, training=True, finish="failed")]
    plain = [make_job(store, database), make_job(store, database, finish="failed")]
    waiting = make_job(store, database, finish=None)  # still queued: never pruned, whatever its age
    before = {job_id: keys(store, job_id) for job_id in [*training, *plain, waiting]}
    expected_bytes = sum(stored_size(store, job_id) for job_id in plain)

    report = Pruner(store, database, settings(env)).run_once()

    assert report.ok and report.error is None
    assert sorted(report.deleted_jobs) == sorted(plain)
    assert report.freed_bytes == expected_bytes
    for job_id in plain:
        assert keys(store, job_id) == []
        assert job(database, job_id).pruned_at is not None
    for job_id in [*training, waiting]:
        assert keys(store, job_id) == before[job_id]  # inputs and results of training jobs all kept
        assert job(database, job_id).pruned_at is None
    record = json.loads(store.get(LAST_RUN_KEY))
    assert record["ok"] is True and record["deleted_jobs"] == 2 and record["freed_bytes"] == expected_bytes
    assert record["last_success_at"] == record["finished_at"]
    assert record["training_jobs"] == 2 and record["training_images"] == 4
    assert record["training_bytes"] == sum(stored_size(store, job_id) for job_id in training)
    assert read_status_file(Path(env["PRUNER_STATUS_FILE"])) == record
    assert healthcheck.main([env["PRUNER_STATUS_FILE"]]) == 0

    again = Pruner(store, database, settings(env)).run_once()  # nothing left to do: a no-op pass
    assert again.ok and again.deleted_jobs == [] and again.freed_bytes == 0


@pytest.mark.integration
def test_synthetic_test_jobs_are_pruned_and_counted_apart(env: dict[str, str], store: ObjectStore,
                                                          database: JobDatabase) -> None:
    user = make_job(store, database)
    probes = [make_job(store, database, synthetic=True), make_job(store, database, synthetic=True, finish="failed")]
    kept = make_job(store, database, training=True)
    expected_bytes = sum(stored_size(store, job_id) for job_id in [user, *probes])

    dry = dry_run(env)
    assert dry.returncode == 0, dry.stderr
    assert f"would delete synthetic test job {probes[0]} (done" in dry.stdout
    assert "dry run: 1 jobs (and 2 synthetic test jobs) past 0 s retention" in dry.stdout

    report = Pruner(store, database, settings(env)).run_once()

    assert report.ok and report.deleted_jobs == [user] and sorted(report.deleted_synthetic_jobs) == sorted(probes)
    assert report.freed_bytes == expected_bytes
    for job_id in [user, *probes]:
        assert keys(store, job_id) == [] and job(database, job_id).pruned_at is not None
    assert keys(store, kept) and job(database, kept).pruned_at is None
    record = json.loads(store.get(LAST_RUN_KEY))
    assert (record["deleted_jobs"], record["deleted_synthetic_jobs"]) == (1, 2)
    assert record["freed_bytes"] == expected_bytes and record["training_jobs"] == 1


@pytest.mark.integration
def test_retention_is_counted_in_seconds_from_the_end_of_the_job(
    env: dict[str, str], store: ObjectStore, database: JobDatabase
) -> None:
    job_id = make_job(store, database)
    pruner = Pruner(store, database, settings(env, retention_s=3))
    assert pruner.run_once().deleted_jobs == []
    assert keys(store, job_id)
    finished = job(database, job_id).finished_at
    time.sleep(max(0.0, (finished + timedelta(seconds=3.2) - datetime.now(UTC)).total_seconds()))
    assert pruner.run_once().deleted_jobs == [job_id]
    assert keys(store, job_id) == []


@pytest.mark.integration
def test_dry_run_lists_and_deletes_nothing(env: dict[str, str], store: ObjectStore, database: JobDatabase) -> None:
    plain = make_job(store, database)
    kept = make_job(store, database, training=True)
    before = keys(store, plain)
    result = dry_run(env)
    assert result.returncode == 0, result.stderr
    assert f"would delete job {plain} (done" in result.stdout
    assert kept not in result.stdout
    assert "dry run: 1 jobs past 0 s retention" in result.stdout
    assert keys(store, plain) == before
    assert job(database, plain).pruned_at is None
    assert not store.exists(LAST_RUN_KEY)  # a dry run is not a pass: the monitor must not count it
    assert not Path(env["PRUNER_STATUS_FILE"]).exists()


@pytest.mark.integration
def test_storage_unreachable_deletes_nothing_and_records_the_failure(
    env: dict[str, str], store: ObjectStore, database: JobDatabase
) -> None:
    job_id = make_job(store, database)
    before = keys(store, job_id)
    proxy = TcpProxy("127.0.0.1", urlparse(env["S3_ENDPOINT_URL"]).port)
    try:
        proxy.cut()
        down = ObjectStore.from_env({**env, "S3_ENDPOINT_URL": proxy.url}, max_attempts=1, connect_timeout_s=1)
        sleeps: list[float] = []
        report = Pruner(down, database, settings(env), sleep=sleeps.append).run_once()
    finally:
        proxy.close()
    assert not report.ok
    assert report.error.startswith(f"Storage at {proxy.url} cannot be reached")
    assert sleeps == [0.05]  # retried once (2 attempts in all) before giving up
    assert keys(store, job_id) == before
    assert job(database, job_id).pruned_at is None
    record = read_status_file(Path(env["PRUNER_STATUS_FILE"]))
    assert record["ok"] is False and record["last_error"] == report.error and record["last_success_at"] is None
    assert healthcheck.main([env["PRUNER_STATUS_FILE"]]) == 1


@pytest.mark.integration
def test_storage_lost_mid_run_leaves_whole_jobs_and_the_next_run_finishes(
    env: dict[str, str], store: ObjectStore, database: JobDatabase
) -> None:
    first, second = make_job(store, database), make_job(store, database)
    proxy = TcpProxy("127.0.0.1", urlparse(env["S3_ENDPOINT_URL"]).port)
    try:
        through_proxy = ObjectStore.from_env({**env, "S3_ENDPOINT_URL": proxy.url}, max_attempts=1,
                                             connect_timeout_s=1)
        pruner = Pruner(through_proxy, database, settings(env), on_job_deleted=lambda _files: proxy.cut())
        report = pruner.run_once()
        assert not report.ok and len(report.deleted_jobs) == 1
        gone, left = report.deleted_jobs[0], (second if report.deleted_jobs[0] == first else first)
        assert keys(store, gone) == [] and job(database, gone).pruned_at is not None
        assert len(keys(store, left)) == 8  # every object of the other job is still there
        assert job(database, left).pruned_at is None
        assert read_status_file(Path(env["PRUNER_STATUS_FILE"]))["ok"] is False

        proxy.restore()
        pruner._on_job_deleted = None  # storage is back: the next pass completes the work
        again = pruner.run_once()
    finally:
        proxy.close()
    assert again.ok and again.deleted_jobs == [left]
    assert keys(store, left) == []
    record = json.loads(store.get(LAST_RUN_KEY))
    assert record["ok"] is True and record["deleted_jobs"] == 1


@pytest.mark.integration
def test_the_loop_runs_on_schedule_and_stops_on_sigterm(env: dict[str, str], store: ObjectStore,
                                                        database: JobDatabase) -> None:
    job_id = make_job(store, database)
    process = subprocess.Popen(
        [sys.executable, "-m", "services.pruner"],
        env={**os.environ, **env, "PYTHONPATH": str(REPO), "RETENTION_SECONDS": "0", "PRUNE_INTERVAL_SECONDS": "1"},
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while keys(store, job_id) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert keys(store, job_id) == []
        later = make_job(store, database)  # picked up by a later pass of the same process
        while keys(store, later) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert keys(store, later) == []
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "pruner stopped" in output
    health = subprocess.run([sys.executable, "-m", "services.pruner.healthcheck"], env={**os.environ, **env},
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stdout
    assert json.loads(health.stdout.splitlines()[-1])["ok"] is True


@pytest.mark.integration
def test_orphaned_files_without_a_job_row_go_after_the_grace_and_jobs_stay(
    env: dict[str, str], store: ObjectStore, database: JobDatabase
) -> None:
    orphan = new_job_id()  # a submit whose clean-up failed: inputs stored, no row
    for key in ("request.json", "inputs/0-a.png"):
        store.put(f"jobs/{orphan}/{key}", b"x" * 100)
    running = make_job(store, database, finish=None)  # has a row: never an orphan
    before = keys(store, running)

    patient = Pruner(store, database, replace(settings(env), orphan_grace_s=3600)).run_once()
    assert patient.ok and patient.deleted_orphans == [] and len(keys(store, orphan)) == 2  # may be an upload

    listing = dry_run({**env, "ORPHAN_GRACE_SECONDS": "0"})
    assert listing.returncode == 0, listing.stderr
    assert f"would delete orphaned files of job {orphan} (no job row): 2 objects, 200 bytes" in listing.stdout
    assert len(keys(store, orphan)) == 2  # a dry run deletes nothing

    report = Pruner(store, database, replace(settings(env), orphan_grace_s=0)).run_once()
    assert report.ok and report.deleted_orphans == [orphan] and report.freed_bytes >= 200
    assert keys(store, orphan) == [] and keys(store, running) == before
    assert json.loads(store.get(LAST_RUN_KEY))["deleted_orphans"] == 1
