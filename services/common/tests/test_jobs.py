"""The job database modules against a real PostgreSQL: claim ordering, exclusive claims, leases, exactly-once
completion, attempts, statistics and the retention/training bookkeeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from services.common import database as database_module
from services.common.access_stats import AccessStatistics
from services.common.database import DatabaseError, DatabaseUnavailable, JobDatabase
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue
from services.common.retention import Retention
from services.common.training import TrainingSet
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def database(postgres_db: str) -> JobDatabase:
    return JobDatabase(postgres_db)


def _part_of_the_database(kind: type, name: str):  # noqa: ANN202 - a pytest fixture
    """A fixture `name` giving `kind(database)`: the records, queue, retention... of one database."""

    @pytest.fixture(name=name)
    def part(database: JobDatabase) -> object:
        return kind(database)

    return part


records = _part_of_the_database(JobRecords, "records")
queue = _part_of_the_database(LeaseQueue, "queue")
retention = _part_of_the_database(Retention, "retention")
training = _part_of_the_database(TrainingSet, "training")
access = _part_of_the_database(AccessStatistics, "access")


def make_job(records: JobRecords, **overrides: object) -> str:
    arguments: dict = {"model": "classical", "pixel_size_um": 0.843, "file_names": ["a.png"], **overrides}
    return records.create_job(**arguments)


def events(records: JobRecords, job_id: str) -> list[str]:
    return [event["event"] for event in records.events(job_id)]


def test_created_job_is_queued_and_readable(records: JobRecords) -> None:
    job_id = make_job(records, file_names=["a.png", "b.tif"], priority=3, training=True)
    job = records.get(job_id)
    assert job is not None
    assert (job.state, job.image_count, job.file_names, job.priority, job.training) == (
        "queued",
        2,
        ["a.png", "b.tif"],
        3,
        True,
    )
    assert job.attempts == 0 and job.progress == 0 and job.error is None
    assert job.to_dict()["created_at"].endswith("+00:00")


def test_unknown_and_malformed_ids_are_none(records: JobRecords) -> None:
    assert records.get("0" * 32) is None
    assert records.get("../../etc/passwd") is None
    assert records.get("") is None


def test_list_is_newest_first(records: JobRecords) -> None:
    first, second = make_job(records), make_job(records)
    assert [job.id for job in records.list_jobs()] == [second, first]
    assert [job.id for job in records.list_jobs(limit=1)] == [second]
    with pytest.raises(DatabaseError, match="Unknown job state"):
        records.list_jobs(state="bogus")


def test_claim_takes_highest_priority_then_oldest(records: JobRecords, queue: LeaseQueue) -> None:
    old_low = make_job(records)
    high = make_job(records, priority=10)
    new_low = make_job(records)
    order = [queue.claim("w", 30).id for _ in range(3)]
    assert order == [high, old_low, new_low]
    assert queue.claim("w", 30) is None


def test_concurrent_workers_never_get_the_same_job(records: JobRecords, queue: LeaseQueue) -> None:
    created = {make_job(records) for _ in range(24)}
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(name: str) -> None:
        mine = claimed.setdefault(name, [])
        barrier.wait()
        while (job := queue.claim(name, 30)) is not None:
            mine.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    everything = [job_id for ids in claimed.values() for job_id in ids]
    assert len(everything) == len(set(everything)) == 24
    assert set(everything) == created


def test_expired_lease_is_reclaimed_and_completes_exactly_once(records: JobRecords, queue: LeaseQueue) -> None:
    job_id = make_job(records)
    first = queue.claim("worker-a", 0.5)
    assert first is not None and first.job.attempts == 1 and not first.reclaimed
    assert queue.claim("worker-b", 30) is None, "a live lease must not be claimable"
    time.sleep(1.0)

    second = queue.claim("worker-b", 30)
    assert second is not None and second.id == job_id
    assert second.reclaimed and second.job.attempts == 2 and second.job.worker_id == "worker-b"

    # The first worker wakes up late: its token no longer counts.
    assert queue.heartbeat(job_id, first.token, 0.9) is False
    assert queue.complete(job_id, first.token, {"islet_count": 1}) is False
    assert queue.fail(job_id, first.token, "late failure") is False
    assert records.get(job_id).state == "running"

    assert queue.complete(job_id, second.token, {"islet_count": 7}) is True
    assert queue.complete(job_id, second.token, {"islet_count": 8}) is False
    job = records.get(job_id)
    assert (job.state, job.summary, job.progress) == ("done", {"islet_count": 7}, 1.0)
    assert events(records, job_id).count("completed") == 1
    assert events(records, job_id) == ["created", "claimed", "reclaimed", "completed"]


def test_heartbeats_keep_the_lease(records: JobRecords, queue: LeaseQueue) -> None:
    job_id = make_job(records)
    claimed = queue.claim("worker-a", 0.6)
    for progress in (0.2, 0.4, 0.6, 0.8):
        time.sleep(0.25)
        assert queue.heartbeat(job_id, claimed.token, progress) is True
    assert queue.claim("worker-b", 30) is None
    assert records.get(job_id).progress == pytest.approx(0.8)


def test_job_fails_after_max_attempts_with_a_clear_error(records: JobRecords, queue: LeaseQueue) -> None:
    job_id = make_job(records, max_attempts=2)
    assert queue.claim("w1", 0.3) is not None
    time.sleep(0.5)
    assert queue.claim("w2", 0.3).job.attempts == 2
    time.sleep(0.5)
    assert queue.claim("w3", 30) is None
    job = records.get(job_id)
    assert job.state == "failed" and job.finished_at is not None
    assert job.error.startswith("Gave up after 2 attempts") and "w2" in job.error
    assert events(records, job_id)[-1] == "gave_up"


def test_fail_is_final_and_keeps_the_message(records: JobRecords, queue: LeaseQueue) -> None:
    job_id = make_job(records)
    claimed = queue.claim("w", 30)
    assert queue.fail(job_id, claimed.token, "Image 1 (a.png) is not a readable image.") is True
    assert queue.complete(job_id, claimed.token, {}) is False
    assert queue.claim("w", 30) is None
    assert records.get(job_id).error == "Image 1 (a.png) is not a readable image."


def test_release_requeues_without_spending_an_attempt(records: JobRecords, queue: LeaseQueue) -> None:
    job_id = make_job(records, max_attempts=1)
    claimed = queue.claim("w1", 30)
    assert queue.release(job_id, claimed.token) is True
    job = records.get(job_id)
    assert (job.state, job.attempts, job.worker_id) == ("queued", 0, None)
    again = queue.claim("w2", 30)
    assert again.id == job_id and again.job.attempts == 1
    assert queue.release(job_id, claimed.token) is False, "the old token must not release the new claim"


def test_queue_stats(records: JobRecords, queue: LeaseQueue) -> None:
    empty = queue.queue_stats()
    assert (empty.queued, empty.running, empty.oldest_queued_age_s, empty.mean_service_time_s) == (0, 0, 0, None)
    done_id = make_job(records)
    claimed = queue.claim("w", 30)
    time.sleep(0.3)
    queue.complete(done_id, claimed.token, {})
    make_job(records)
    make_job(records)
    queue.claim("w", 30)
    time.sleep(0.2)
    stats = queue.queue_stats().to_dict()
    assert stats["queued"] == 1 and stats["running"] == 1 and stats["done_last_hour"] == 1
    assert stats["oldest_queued_age_s"] >= 0.2
    assert 0.3 <= stats["mean_service_time_s"] < 5


def test_ensure_schema_is_safe_when_processes_start_at_once(postgres_db: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            JobDatabase(postgres_db).ensure_schema()
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    JobDatabase(postgres_db).ensure_schema()


def test_unreachable_database_is_queue_unavailable() -> None:
    url = f"postgresql://isletnet:secret@127.0.0.1:{free_port()}/isletnet"
    queue = LeaseQueue(JobDatabase(url, connect_timeout_s=2))
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="cannot be reached") as caught:
        queue.queue_stats()
    assert "secret" not in str(caught.value), "the password must not leak into messages"
    assert time.monotonic() - started < 10


def test_missing_database_url_is_a_plain_error() -> None:
    with pytest.raises(DatabaseError, match="DATABASE_URL is not set"):
        JobDatabase.from_env({})


def test_prunable_jobs_never_include_training_jobs(
    records: JobRecords, queue: LeaseQueue, retention: Retention
) -> None:
    normal, training = make_job(records), make_job(records, training=True)
    for _ in (normal, training):
        claimed = queue.claim("w", 30)
        queue.complete(claimed.id, claimed.token, {})
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert [job.id for job in retention.prunable_jobs(later)] == [normal]
    assert retention.prunable_jobs(datetime.now(UTC) - timedelta(hours=1)) == []
    assert retention.mark_pruned(training) is False
    assert retention.mark_pruned(normal) is True and retention.mark_pruned(normal) is False
    assert retention.prunable_jobs(later) == []


def test_a_database_from_before_synthetic_jobs_gains_the_column(postgres_db: str) -> None:
    added = "ALTER TABLE jobs ADD COLUMN IF NOT EXISTS synthetic boolean NOT NULL DEFAULT false;"
    assert added in database_module._SCHEMA
    old_id = "0" * 31 + "1"
    with psycopg.connect(postgres_db) as conn:  # the schema as the first release created it, with one job
        conn.execute(database_module._SCHEMA.replace(added, ""))
        conn.execute("INSERT INTO jobs (id, model, pixel_size_um, image_count) VALUES (%s, 'classical', 0.843, 1)",
                     (old_id,))

    records = JobRecords(JobDatabase(postgres_db))
    old = records.get(old_id)
    assert old is not None and old.synthetic is False and old.state == "queued"  # the old job is intact
    JobDatabase(postgres_db).ensure_schema()  # a second service starting later: a no-op
    probe = make_job(records, synthetic=True)
    assert records.get(probe).synthetic is True
    assert [job.id for job in records.list_jobs(include_synthetic=False)] == [old_id]
    assert [job.id for job in records.list_jobs()] == [probe, old_id]


def test_synthetic_jobs_are_pruned_and_never_exported(
    postgres_db: str, records: JobRecords, queue: LeaseQueue, retention: Retention, training: TrainingSet
) -> None:
    with pytest.raises(DatabaseError, match="synthetic test job cannot be marked for training"):
        make_job(records, synthetic=True, training=True)
    assert records.list_jobs() == []
    probe = make_job(records, synthetic=True)
    user = make_job(records, training=True)
    # A row marked both ways by hand (not through create_job) still counts as a test job.
    forced = make_job(records, synthetic=True)
    with psycopg.connect(postgres_db) as conn:
        conn.execute("UPDATE jobs SET training = true WHERE id = %s", (forced,))
    for _ in range(3):
        claimed = queue.claim("w", 30)
        queue.complete(claimed.id, claimed.token, {})
    assert [job.id for job in training.training_jobs(include_exported=True)] == [user]
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert [job.id for job in retention.prunable_jobs(later)] == [probe, forced]
    assert retention.mark_pruned(forced) is True and retention.mark_pruned(user) is False


def test_training_export_is_recorded_once(records: JobRecords, training: TrainingSet) -> None:
    first, second = make_job(records, training=True), make_job(records, training=True)
    make_job(records)
    assert [job.id for job in training.training_jobs()] == [first, second]
    assert training.mark_exported([first]) == 1
    assert training.mark_exported([first]) == 0
    assert [job.id for job in training.training_jobs()] == [second]
    assert len(training.training_jobs(include_exported=True)) == 2


def test_access_statistics_accumulate(access: AccessStatistics) -> None:
    today = date.today()
    access.record_access({(today, "/api/jobs", "POST", 201): 2, (today, "/api/health", "GET", 200): 5})
    access.record_access({(today, "/api/jobs", "POST", 201): 1})
    rows = {(row["endpoint"], row["status"]): row["requests"] for row in access.access_statistics()}
    assert rows == {("/api/jobs", 201): 3, ("/api/health", 200): 5}
    assert access.access_statistics(since=today + timedelta(days=1)) == []
