"""The one owner of the job database (PostgreSQL): connections, the schema, the shared job
history (`job_events`) and the errors every table module raises. The tables are read and written
by one module each (docs/architecture.md, "Database"):

| module | owns |
|---|---|
| `services.common.jobs` | creating and reading jobs (`JobRecords`) |
| `services.common.lease_queue` | claims, leases, heartbeats, completion, queue statistics (`LeaseQueue`) |
| `services.common.retention` | which jobs are past retention, marking them pruned (`Retention`) |
| `services.common.training` | training-marked jobs and their one-time export (`TrainingSet`) |
| `services.common.access_stats` | requests per day/endpoint/method/status (`AccessStatistics`) |

Environment (`JobDatabase.from_env`): `DATABASE_URL` (`postgresql://user:pass@host:5432/db`), or the
file `DATABASE_URL_FILE` names (a Swarm secret).
Connection failures raise `DatabaseUnavailable` (one sentence, worth retrying).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from services.common.errors import ServiceError, Unavailable
from services.common.settings import read_secret

# The channel on which a job that became claimable (created, released) is announced; workers
# LISTEN on it, so a new job is claimed at once instead of at the next poll.
QUEUE_CHANNEL = "isletnet_jobs"

# Fixed key for pg_advisory_xact_lock so concurrent ensure_schema() calls run one after another.
_SCHEMA_LOCK_KEY = 0x15_1E_7_0B

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



class DatabaseError(ServiceError):
    """The database answered but the operation is not possible (bad arguments, schema trouble)."""


class DatabaseUnavailable(DatabaseError, Unavailable):
    """The database cannot be reached or did not answer in time."""


Connection = psycopg.Connection[dict[str, Any]]


class JobDatabase:
    """The job database. Opens a short connection per operation, so a database restart heals by
    itself (no stale pooled connections); safe to share between threads."""

    def __init__(self, database_url: str, *, connect_timeout_s: int = 3, statement_timeout_ms: int = 15000) -> None:
        if not database_url:
            raise DatabaseError("DATABASE_URL is not set; set it to postgresql://user:password@host:5432/isletnet.")
        self.database_url = database_url
        self.connect_timeout_s = connect_timeout_s
        self.statement_timeout_ms = statement_timeout_ms
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> JobDatabase:
        env = os.environ if env is None else env
        return cls(read_secret(env, "DATABASE_URL"), **kwargs)

    @property
    def safe_url(self) -> str:
        """The URL without its password, for messages."""
        return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", self.database_url)

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection in a transaction (committed on success, rolled back on error), rows as
        dicts. Connection failures become `DatabaseUnavailable`. Creates the schema on first use."""
        if not self._schema_ready:
            self.ensure_schema()
        with self._raw_connection() as conn:
            yield conn

    @contextmanager
    def _raw_connection(self) -> Iterator[Connection]:
        try:
            conn = psycopg.connect(
                self.database_url,
                connect_timeout=self.connect_timeout_s,
                options=f"-c statement_timeout={self.statement_timeout_ms}",
                row_factory=dict_row,
                application_name="isletnet",
            )
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(
                f"The job database at {self.safe_url} cannot be reached; try again later."
            ) from error
        try:
            with conn:  # commits on success, rolls back on exception, closes
                yield conn
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(
                f"The job database at {self.safe_url} stopped answering ({type(error).__name__}); try again later."
            ) from error
        except psycopg.Error as error:
            raise DatabaseError(
                f"The job database refused an operation: {str(error).strip().splitlines()[0]}."
            ) from error

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

    def listen(
        self, channel: str, on_notify: Callable[[], None], stop: threading.Event, timeout_s: float = 1.0
    ) -> None:
        """Call `on_notify()` for each NOTIFY on `channel`, and once right after LISTEN starts
        (what was announced before is not replayed), until `stop` is set. One dedicated
        connection, in autocommit mode as LISTEN needs. `DatabaseUnavailable` when it cannot
        connect or the connection drops; the caller decides when to listen again."""
        if not self._schema_ready:
            self.ensure_schema()
        try:
            with psycopg.connect(
                self.database_url, autocommit=True, connect_timeout=self.connect_timeout_s,
                application_name="isletnet-listen",
            ) as conn:  # fmt: skip
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                on_notify()
                while not stop.is_set():
                    for _notice in conn.notifies(timeout=timeout_s):
                        on_notify()
                        if stop.is_set():
                            break
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(
                f"The job database at {self.safe_url} stopped answering ({type(error).__name__}); try again later."
            ) from error

    def ping(self) -> None:
        """Return when the database answers; raise `DatabaseUnavailable` otherwise."""
        with self.connection() as conn:
            conn.execute("SELECT 1")


def notify_queue(conn: psycopg.Connection[Any]) -> None:
    """Announce that a job became claimable; delivered when the caller's transaction commits."""
    conn.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))


def record_event(
    conn: psycopg.Connection[Any],
    job_id: str,
    event: str,
    worker_id: str | None = None,
    attempt: int | None = None,
    detail: str | None = None,
) -> None:
    """Append one line to the job's history (`job_events`), in the caller's transaction."""
    conn.execute(
        "INSERT INTO job_events (job_id, event, worker_id, attempt, detail) VALUES (%s, %s, %s, %s, %s)",
        (job_id, event, worker_id, attempt, detail),
    )
