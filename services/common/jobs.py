"""The one job-queue/database module of the IsletNet services: the `jobs` table is both the job
record and the durable queue (see docs/architecture.md, "Why PostgreSQL for the queue").

Life of a job::

    create_job(...)            -> state "queued"
    claim(worker, lease_s)     -> state "running", attempts+1, fresh lease_token, lease_expires_at
    heartbeat(id, token, p)    -> extends the lease, records progress (False: the lease was lost)
    complete(id, token, sum)   -> state "done"    (only with the current token: exactly once)
    fail(id, token, error)     -> state "failed"  (a bad image or a broken model: not retried)
    release(id, token)         -> state "queued"  (graceful shutdown: another worker takes it)

A worker that dies simply stops heartbeating; once `lease_expires_at` passes, the next `claim`
takes the job again (attempts+1). A job whose lease expired `max_attempts` times is failed with
a clear error instead of being retried forever. All times are the database's `now()`, so worker
clocks do not matter. Every transition is also appended to `job_events` (who, when, which
attempt), which makes "done exactly once" observable.

`access_stats` (requests per day/endpoint/method/status) lives here too, for the backend's
access statistics report.

Environment (`JobQueue.from_env`): `DATABASE_URL` (`postgresql://user:pass@host:5432/db`).
Connection failures raise `QueueUnavailable` (one sentence, worth retrying).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from services.common.errors import ServiceError, Unavailable
from services.common.layout import is_job_id, new_job_id

log = logging.getLogger(__name__)

STATES = ("queued", "running", "done", "failed")
DEFAULT_MAX_ATTEMPTS = 3
# Fixed key for pg_advisory_xact_lock so concurrent ensure_schema() calls run one after another.
_SCHEMA_LOCK_KEY = 0x15_1E_7_0B
# Mean service time is taken over this many most recently finished jobs.
_SERVICE_TIME_WINDOW = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               text PRIMARY KEY,
    state            text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    model            text NOT NULL,
    pixel_size_um    double precision NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    training         boolean NOT NULL DEFAULT false,
    image_count      integer NOT NULL,
    file_names       jsonb NOT NULL DEFAULT '[]',
    progress         double precision NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    error            text,
    summary          jsonb,
    worker_id        text,
    lease_token      text,
    lease_seconds    double precision,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    exported_at      timestamptz,
    pruned_at        timestamptz
);
-- Columns added after the first release, so that existing databases gain them on the next start.
-- synthetic: a monitoring/deploy test job (e2e probe, deploy gate), kept out of users' lists,
-- statistics and training exports, pruned like any other job.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS synthetic boolean NOT NULL DEFAULT false;
CREATE INDEX IF NOT EXISTS jobs_claim_order ON jobs (priority DESC, created_at, id)
    WHERE state IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS job_events (
    id        bigserial PRIMARY KEY,
    job_id    text NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    event     text NOT NULL,
    worker_id text,
    attempt   integer,
    detail    text
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, id);

CREATE TABLE IF NOT EXISTS access_stats (
    day      date NOT NULL,
    endpoint text NOT NULL,
    method   text NOT NULL,
    status   integer NOT NULL,
    requests bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (day, endpoint, method, status)
);
"""


class QueueError(ServiceError):
    """The database answered but the operation is not possible (bad arguments, schema trouble)."""


class QueueUnavailable(QueueError, Unavailable):
    """The database cannot be reached or did not answer in time."""


@dataclass(frozen=True)
class Job:
    """One row of the `jobs` table."""

    id: str
    state: str
    model: str
    pixel_size_um: float
    priority: int
    training: bool
    image_count: int
    file_names: list[str]
    progress: float
    attempts: int
    max_attempts: int
    error: str | None
    summary: dict[str, Any] | None
    worker_id: str | None
    lease_expires_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exported_at: datetime | None
    pruned_at: datetime | None
    synthetic: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(**{name: row[name] for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready representation (times as ISO 8601 UTC) as served by the REST API."""
        data: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            data[name] = value.isoformat() if isinstance(value, datetime) else value
        return data


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


class JobQueue:
    """Access to the jobs table. Opens a short connection per operation, so a database restart
    heals by itself (no stale pooled connections); safe to share between threads."""

    def __init__(self, database_url: str, *, connect_timeout_s: int = 3, statement_timeout_ms: int = 15000) -> None:
        if not database_url:
            raise QueueError("DATABASE_URL is not set; set it to postgresql://user:password@host:5432/isletnet.")
        self.database_url = database_url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> JobQueue:
        env = os.environ if env is None else env
        return cls(env.get("DATABASE_URL", ""), **kwargs)

    # -- connections and schema -------------------------------------------------------------

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.database_url)

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A connection in a transaction (committed on success, rolled back on error), rows as
        dicts. Connection failures become `QueueUnavailable`. Creates the schema on first use."""
        if not self._schema_ready:
            self.ensure_schema()
        with self._raw_connection() as conn:
            yield conn

    @contextmanager
    def _raw_connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        try:
            conn = psycopg.connect(
                self.database_url,
                connect_timeout=self.connect_timeout_s,
                options=f"-c statement_timeout={self.statement_timeout_ms}",
                row_factory=dict_row,
                application_name="isletnet",
            )
        except psycopg.OperationalError as error:
            raise QueueUnavailable(
                f"The job database at {self.safe_url} cannot be reached; try again later."
            ) from error
        try:
            with conn:  # commits on success, rolls back on exception, closes
                yield conn
        except psycopg.OperationalError as error:
            raise QueueUnavailable(
                f"The job database at {self.safe_url} stopped answering ({type(error).__name__}); try again later."
            ) from error
        except psycopg.Error as error:
            raise QueueError(f"The job database refused an operation: {str(error).strip().splitlines()[0]}.") from error

    def ensure_schema(self) -> None:
        """Create the tables and indexes if missing. Idempotent; several processes may call it at
        once (they serialise on a transaction-scoped advisory lock)."""
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._raw_connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                conn.execute(_SCHEMA)
            self._schema_ready = True

    def ping(self) -> None:
        """Return when the database answers; raise `QueueUnavailable` otherwise."""
        with self.connection() as conn:
            conn.execute("SELECT 1")

    # -- creating and reading jobs ----------------------------------------------------------

    def create_job(
        self,
        *,
        model: str,
        pixel_size_um: float,
        file_names: Sequence[str],
        priority: int = 0,
        training: bool = False,
        synthetic: bool = False,
        job_id: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    ) -> str:
        """Insert a queued job and return its id (uuid4 hex; pass `job_id` when the inputs were
        already stored under it). This is the moment the job becomes visible to workers.

        `synthetic` marks a monitoring test job; it cannot also be a training job (training jobs
        are never pruned, synthetic ones always are)."""
        job_id = job_id or new_job_id()
        if not is_job_id(job_id):
            raise QueueError(f"Job id {job_id!r} is not 32 hexadecimal digits.")
        if max_attempts < 1:
            raise QueueError("max_attempts must be at least 1.")
        if synthetic and training:
            raise QueueError("A synthetic test job cannot be marked for training.")
        with self.connection() as conn:
            conn.execute(
                """INSERT INTO jobs (id, model, pixel_size_um, priority, training, synthetic, image_count,
                                     file_names, max_attempts)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    job_id,
                    model,
                    pixel_size_um,
                    priority,
                    training,
                    synthetic,
                    len(file_names),
                    Jsonb(list(file_names)),
                    max_attempts,
                ),
            )
            self._event(conn, job_id, "created")
        return job_id

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is none with that id (malformed ids included)."""
        if not is_job_id(job_id):
            return None
        with self.connection() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def list_jobs(
        self, limit: int = 100, offset: int = 0, state: str | None = None, *, include_synthetic: bool = True
    ) -> list[Job]:
        """Jobs, newest first; `include_synthetic=False` leaves out the monitoring test jobs (what
        users see and what statistics count)."""
        if state is not None and state not in STATES:
            raise QueueError(f"Unknown job state {state!r}; use one of {', '.join(STATES)}.")
        with self.connection() as conn:
            rows = conn.execute(
                """SELECT * FROM jobs WHERE (%(state)s::text IS NULL OR state = %(state)s)
                   AND (%(synthetic)s OR NOT synthetic)
                   ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
                {"state": state, "synthetic": include_synthetic, "limit": max(0, limit), "offset": max(0, offset)},
            ).fetchall()
        return [Job.from_row(row) for row in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history (created, claimed, reclaimed, completed, failed, released, ...)."""
        with self.connection() as conn:
            return conn.execute(
                "SELECT at, event, worker_id, attempt, detail FROM job_events WHERE job_id = %s ORDER BY id",
                (job_id,),
            ).fetchall()

    # -- the worker side --------------------------------------------------------------------

    def claim(self, worker_id: str, lease_s: float) -> ClaimedJob | None:
        """Take the most urgent claimable job (queued, or running with an expired lease), or None.

        Several workers calling this at once never get the same job (row locks, SKIP LOCKED).
        Expired jobs that already used all their attempts are failed here instead."""
        if lease_s <= 0:
            raise QueueError("The lease must be a positive number of seconds.")
        token = uuid.uuid4().hex
        with self.connection() as conn:
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
                self._event(conn, row["id"], "gave_up", row["worker_id"], row["attempts"], "lease expired")
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
            self._event(conn, row["id"], "reclaimed" if reclaimed else "claimed", worker_id, row["attempts"], detail)
        return ClaimedJob(Job.from_row(row), token, worker_id, float(lease_s), reclaimed)

    def heartbeat(self, job_id: str, token: str, progress: float | None = None) -> bool:
        """Extend the lease (by the claim's lease length) and record progress 0..1. False when the
        lease was lost (expired and taken by another worker, released, or the job finished)."""
        with self.connection() as conn:
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
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'done', progress = 1, finished_at = now(), summary = %s,
                          lease_token = NULL, lease_expires_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING worker_id, attempts""",
                (Jsonb(dict(summary)) if summary is not None else None, job_id, token),
            ).fetchone()
            if row:
                self._event(conn, job_id, "completed", row["worker_id"], row["attempts"])
        return row is not None

    def fail(self, job_id: str, token: str, error: str) -> bool:
        """Mark the job failed for good (bad input, broken model) with `error`, one sentence for
        the user. False when this worker no longer holds the lease."""
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'failed', finished_at = now(), error = %s,
                          lease_token = NULL, lease_expires_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING worker_id, attempts""",
                (error, job_id, token),
            ).fetchone()
            if row:
                self._event(conn, job_id, "failed", row["worker_id"], row["attempts"], error)
        return row is not None

    def release(self, job_id: str, token: str, reason: str = "worker stopping") -> bool:
        """Give the job back to the queue now (graceful shutdown, storage outage). The attempt is
        not counted, since the job itself did not fail. False when the lease was already lost."""
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET state = 'queued', attempts = greatest(attempts - 1, 0), progress = 0,
                          lease_token = NULL, lease_expires_at = NULL, worker_id = NULL, started_at = NULL
                   WHERE id = %s AND lease_token = %s AND state = 'running' RETURNING attempts""",
                (job_id, token),
            ).fetchone()
            if row:
                self._event(conn, job_id, "released", None, row["attempts"], reason)
        return row is not None

    # -- statistics -------------------------------------------------------------------------

    def queue_stats(self) -> QueueStats:
        """What the e2e probe needs to tell "slow because loaded" from "broken"."""
        with self.connection() as conn:
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

    # -- retention and training export (used by the pruner and the backend) ----------------

    def prunable_jobs(self, finished_before: datetime, limit: int = 500) -> list[Job]:
        """Finished jobs older than the cutoff whose files are still stored and that are not
        marked for training (training images are never pruned); synthetic test jobs included."""
        with self.connection() as conn:
            rows = conn.execute(
                """SELECT * FROM jobs WHERE state IN ('done', 'failed') AND finished_at < %s
                   AND pruned_at IS NULL AND (NOT training OR synthetic) ORDER BY finished_at LIMIT %s""",
                (finished_before, limit),
            ).fetchall()
        return [Job.from_row(row) for row in rows]

    def known_job_ids(self, job_ids: Sequence[str]) -> set[str]:
        """Which of `job_ids` have a row (pruned or not): the rest are files without a job."""
        if not job_ids:
            return set()
        with self.connection() as conn:
            rows = conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", (list(job_ids),)).fetchall()
        return {row["id"] for row in rows}

    def mark_pruned(self, job_id: str) -> bool:
        """Record that the job's files were deleted. Refuses (False) for training jobs (unless synthetic)."""
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET pruned_at = now() WHERE id = %s AND (NOT training OR synthetic) AND pruned_at IS NULL
                   RETURNING id""",
                (job_id,),
            ).fetchone()
            if row:
                self._event(conn, job_id, "pruned")
        return row is not None

    def training_jobs(self, include_exported: bool = False) -> list[Job]:
        """Jobs marked for training, oldest first; by default only those not yet exported. Never a
        synthetic test job (`create_job` refuses the combination; rows written otherwise stay out)."""
        with self.connection() as conn:
            rows = conn.execute(
                """SELECT * FROM jobs WHERE training AND NOT synthetic AND (%s OR exported_at IS NULL)
                   ORDER BY created_at, id""",
                (include_exported,),
            ).fetchall()
        return [Job.from_row(row) for row in rows]

    def mark_exported(self, job_ids: Sequence[str]) -> int:
        """Record that these training jobs were exported; returns how many were newly marked."""
        with self.connection() as conn:
            rows = conn.execute(
                """UPDATE jobs SET exported_at = now() WHERE id = ANY(%s) AND training AND exported_at IS NULL
                   RETURNING id""",
                (list(job_ids),),
            ).fetchall()
            for row in rows:
                self._event(conn, row["id"], "exported")
        return len(rows)

    # -- access statistics ------------------------------------------------------------------

    def record_access(self, counts: Mapping[tuple[date, str, str, int], int]) -> None:
        """Add request counts keyed by (day, endpoint, method, status)."""
        if not counts:
            return
        with self.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                """INSERT INTO access_stats (day, endpoint, method, status, requests) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (day, endpoint, method, status)
                   DO UPDATE SET requests = access_stats.requests + EXCLUDED.requests""",
                [(*key, value) for key, value in sorted(counts.items())],
            )

    def access_statistics(self, since: date | None = None) -> list[dict[str, Any]]:
        """Rows {day, endpoint, method, status, requests}, oldest day first."""
        with self.connection() as conn:
            return conn.execute(
                """SELECT day, endpoint, method, status, requests FROM access_stats
                   WHERE %s::date IS NULL OR day >= %s::date ORDER BY day, endpoint, method, status""",
                (since, since),
            ).fetchall()

    # -- plumbing ---------------------------------------------------------------------------

    @staticmethod
    def _event(
        conn: psycopg.Connection[Any],
        job_id: str,
        event: str,
        worker_id: str | None = None,
        attempt: int | None = None,
        detail: str | None = None,
    ) -> None:
        conn.execute(
            "INSERT INTO job_events (job_id, event, worker_id, attempt, detail) VALUES (%s, %s, %s, %s, %s)",
            (job_id, event, worker_id, attempt, detail),
        )
