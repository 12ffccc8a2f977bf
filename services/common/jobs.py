"""Creating and reading jobs: the `Job` record as every service sees it, and `JobRecords`, the
one writer of new rows and reader of rows and their history. The row is also the durable queue:
`services.common.lease_queue` moves it through its states (see docs/architecture.md, "Why
PostgreSQL for the queue"); the database itself is `services.common.database`.

A job becomes visible to workers the moment `JobRecords.create_job` inserts it, so the backend
stores the inputs first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from services.common.database import DatabaseError, JobDatabase, notify_queue, record_event
from services.common.layout import is_job_id, new_job_id

STATES = ("queued", "running", "done", "failed")
DEFAULT_MAX_ATTEMPTS = 3


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


class JobRecords:
    """Creating jobs and reading them (one job, a page of jobs, a job's history)."""

    def __init__(self, database: JobDatabase) -> None:
        self.database = database

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
            raise DatabaseError(f"Job id {job_id!r} is not 32 hexadecimal digits.")
        if max_attempts < 1:
            raise DatabaseError("max_attempts must be at least 1.")
        if synthetic and training:
            raise DatabaseError("A synthetic test job cannot be marked for training.")
        with self.database.connection() as conn:
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
            record_event(conn, job_id, "created")
            notify_queue(conn)  # waiting workers claim it at once (on commit)
        return job_id

    def get(self, job_id: str) -> Job | None:
        """The job, or None when there is none with that id (malformed ids included)."""
        if not is_job_id(job_id):
            return None
        with self.database.connection() as conn:
            row = conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,)).fetchone()
        return Job.from_row(row) if row else None

    def list_jobs(
        self, limit: int = 100, offset: int = 0, state: str | None = None, *, include_synthetic: bool = True
    ) -> list[Job]:
        """Jobs, newest first; `include_synthetic=False` leaves out the monitoring test jobs (what
        users see and what statistics count)."""
        if state is not None and state not in STATES:
            raise DatabaseError(f"Unknown job state {state!r}; use one of {', '.join(STATES)}.")
        with self.database.connection() as conn:
            rows = conn.execute(
                """SELECT * FROM jobs WHERE (%(state)s::text IS NULL OR state = %(state)s)
                   AND (%(synthetic)s OR NOT synthetic)
                   ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s""",
                {"state": state, "synthetic": include_synthetic, "limit": max(0, limit), "offset": max(0, offset)},
            ).fetchall()
        return [Job.from_row(row) for row in rows]

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's history (created, claimed, reclaimed, completed, failed, released, ...)."""
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT at, event, worker_id, attempt, detail FROM job_events WHERE job_id = %s ORDER BY id",
                (job_id,),
            ).fetchall()
