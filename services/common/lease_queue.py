"""The lease queue: workers claim jobs, keep them by heartbeating a lease token, and settle them
exactly once (complete, fail or release); `queue_stats()` says how loaded the queue is.

Life of a job::

    JobRecords.create_job(...)   -> state "queued"
    claim(worker, lease_s)       -> state "running", attempts+1, fresh lease_token, lease_expires_at
    heartbeat(id, token, p)      -> extends the lease, records progress (False: the lease was lost)
    complete(id, token, sum)     -> state "done"    (only with the current token: exactly once)
    fail(id, token, error)       -> state "failed"  (a bad image or a broken model: not retried)
    release(id, token)           -> state "queued"  (graceful shutdown: another worker takes it)

Creating and releasing a job NOTIFY the channel `isletnet_jobs` in the same transaction; `watch()`
LISTENs on it, so an idle worker claims a new job at once rather than at its next poll.

A worker that dies simply stops heartbeating; once `lease_expires_at` passes, the next `claim`
takes the job again (attempts+1). A job whose lease expired `max_attempts` times is failed with
a clear error instead of being retried forever. All times are the database's `now()`, so worker
clocks do not matter. Every transition is also appended to `job_events` (who, when, which
attempt), which makes "done exactly once" observable.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from services.common.database import QUEUE_CHANNEL, DatabaseError, JobDatabase, notify_queue, record_event
from services.common.jobs import Job

log = logging.getLogger(__name__)

# Mean service time is taken over this many most recently finished jobs.
_SERVICE_TIME_WINDOW = 20


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker holds: the `token` proves the lease in heartbeat/complete/fail/release."""

    job: Job
    token: str
    worker_id: str
    lease_s: float
    reclaimed: bool = False  # True when a previous worker's lease had expired

    @property
    def id(self) -> str:
        return self.job.id


@dataclass
class QueueStats:
    queued: int
    running: int
    oldest_queued_age_s: float
    mean_service_time_s: float | None
    done_last_hour: int
    failed_last_hour: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "running": self.running,
            "oldest_queued_age_s": self.oldest_queued_age_s,
            "mean_service_time_s": self.mean_service_time_s,
            "done_last_hour": self.done_last_hour,
            "failed_last_hour": self.failed_last_hour,
        }


class LeaseQueue:
    """The worker side of the jobs table, and the queue's load figures."""

    def __init__(self, database: JobDatabase) -> None:
        self.database = database

    def claim(self, worker_id: str, lease_s: float) -> ClaimedJob | None:
        """Take the most urgent claimable job (queued, or running with an expired lease), or None.

        Several workers calling this at once never get the same job (row locks, SKIP LOCKED).
        Expired jobs that already used all their attempts are failed here instead."""
        if lease_s <= 0:
            raise DatabaseError("The lease must be a positive number of seconds.")
        token = uuid.uuid4().hex
        with self.database.connection() as conn:
            exhausted = conn.execute(
                """UPDATE jobs SET state = 'failed', finished_at = now(), lease_token = NULL,
                          error = 'Gave up after ' || attempts || ' attempts: the worker processing this job '
                                  'stopped responding each time (last: ' || coalesce(worker_id, 'unknown')
                                  || '); check the shepherd logs.'
                   WHERE id IN (SELECT id FROM jobs
                                WHERE state = 'running' AND lease_expires_at < now() AND attempts >= max_attempts
                                FOR UPDATE SKIP LOCKED)
                   RETURNING id, attempts, worker_id""",
            ).fetchall()
            for row in exhausted:
                log.warning("job %s failed: lease expired after %s attempts", row["id"], row["attempts"])
                record_event(conn, row["id"], "gave_up", row["worker_id"], row["attempts"], "lease expired")
            row = conn.execute(
                """WITH candidate AS (
                       SELECT id, state AS previous_state, worker_id AS previous_worker FROM jobs
                       WHERE state = 'queued' OR (state = 'running' AND lease_expires_at < now())
                       ORDER BY priority DESC, created_at, id
                       LIMIT 1
                       FOR UPDATE SKIP LOCKED)
                   UPDATE jobs AS j SET state = 'running', attempts = j.attempts + 1, worker_id = %(worker)s,
                          lease_token = %(token)s, lease_seconds = %(lease)s,
                          lease_expires_at = now() + make_interval(secs => %(lease)s),
                          started_at = now(), progress = 0, error = NULL
                   FROM candidate AS c WHERE j.id = c.id
                   RETURNING j.*, c.previous_state, c.previous_worker""",
                {"worker": worker_id, "token": token, "lease": float(lease_s)},
            ).fetchone()
            if row is None:
                return None
            reclaimed = row["previous_state"] == "running"
            detail = f"lease of {row['previous_worker']} expired" if reclaimed else None
            record_event(conn, row["id"], "reclaimed" if reclaimed else "claimed", worker_id, row["attempts"], detail)
        return ClaimedJob(Job.from_row(row), token, worker_id, float(lease_s), reclaimed)

    def heartbeat(self, job_id: str, token: str, progress: float | None = None) -> bool:
        """Extend the lease (by the claim's lease length) and record progress 0..1. False when the
        lease was lost (expired and taken by another worker, released, or the job finished)."""
        with self.database.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET lease_expires_at = now() + make_interval(secs => lease_seconds),
                          progress = coalesce(%s, progress)
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING id""",
                (None if progress is None else min(1.0, max(0.0, float(progress))), job_id, token),
            ).fetchone()
        return row is not None

    def complete(self, job_id: str, token: str, summary: Mapping[str, Any] | None = None) -> bool:
        """Mark the job done. True only for the worker holding the current lease, so a job is
        completed exactly once even when a slow worker finishes after losing its lease."""
        with self.database.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'done', progress = 1, finished_at = now(), summary = %s,
                          lease_token = NULL, lease_expires_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING worker_id, attempts""",
                (Jsonb(dict(summary)) if summary is not None else None, job_id, token),
            ).fetchone()
            if row:
                record_event(conn, job_id, "completed", row["worker_id"], row["attempts"])
        return row is not None

    def fail(self, job_id: str, token: str, error: str) -> bool:
        """Mark the job failed for good (bad input, broken model) with `error`, one sentence for
        the user. False when this worker no longer holds the lease."""
        with self.database.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'failed', finished_at = now(), error = %s,
                          lease_token = NULL, lease_expires_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING worker_id, attempts""",
                (error, job_id, token),
            ).fetchone()
            if row:
                record_event(conn, job_id, "failed", row["worker_id"], row["attempts"], error)
        return row is not None

    def release(self, job_id: str, token: str, reason: str = "worker stopping") -> bool:
        """Give the job back to the queue now (graceful shutdown, storage outage). The attempt is
        not counted, since the job itself did not fail. False when the lease was already lost."""
        with self.database.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), progress = 0,
                          lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, started_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING attempts""",
                (job_id, token),
            ).fetchone()
            if row:
                record_event(conn, job_id, "released", None, row["attempts"], reason)
                notify_queue(conn)
        return row is not None

    def watch(self, on_claimable: Callable[[], None], stop: threading.Event, timeout_s: float = 1.0) -> None:
        """Call `on_claimable()` whenever a job is created or released (PostgreSQL LISTEN/NOTIFY),
        and once when watching starts, until `stop` is set. A job whose lease expired is not
        announced: workers still claim now and then to find those. Raises DatabaseUnavailable
        when the connection is lost."""
        self.database.listen(QUEUE_CHANNEL, on_claimable, stop, timeout_s)

    def queue_stats(self) -> QueueStats:
        """What the e2e probe needs to tell "slow because loaded" from "broken"."""
        with self.database.connection() as conn:
            counts = conn.execute(
                """SELECT count(*) FILTER (WHERE state = 'queued'
                                           OR (state = 'running' AND lease_expires_at < now())) AS queued,
                          count(*) FILTER (WHERE state = 'running' AND lease_expires_at >= now()) AS running,
                          coalesce(extract(epoch FROM now() - min(created_at)
                                   FILTER (WHERE state = 'queued')), 0)::float AS oldest_queued_age_s,
                          count(*) FILTER (WHERE state = 'done' AND finished_at > now() - interval '1 hour')
                              AS done_last_hour,
                          count(*) FILTER (WHERE state = 'failed' AND finished_at > now() - interval '1 hour')
                              AS failed_last_hour
                   FROM jobs WHERE state IN ('queued', 'running') OR finished_at > now() - interval '1 hour'"""
            ).fetchone()
            service = conn.execute(
                """SELECT avg(extract(epoch FROM finished_at - started_at))::float AS mean_s FROM (
                       SELECT finished_at, started_at FROM jobs
                       WHERE state = 'done' AND started_at IS NOT NULL AND finished_at IS NOT NULL
                       ORDER BY finished_at DESC LIMIT %s) AS recent""",
                (_SERVICE_TIME_WINDOW,),
            ).fetchone()
        return QueueStats(
            queued=counts["queued"],
            running=counts["running"],
            oldest_queued_age_s=round(counts["oldest_queued_age_s"], 3),
            mean_service_time_s=None if service["mean_s"] is None else round(service["mean_s"], 3),
            done_last_hour=counts["done_last_hour"],
            failed_last_hour=counts["failed_last_hour"],
        )
