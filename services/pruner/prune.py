"""The pruner's core: which jobs are past retention, deleting each one as a unit, and the record
of every run (S3 `pruner/last_run.json` for other readers, a local status file for the healthcheck).

Rules (docs/architecture.md, "Pruner"):
- A job is prunable when it finished (done or failed) more than `RETENTION_SECONDS` ago, is not
  marked for training, and was not pruned before (`Retention.prunable_jobs`).
- Training jobs are never touched: their inputs *and* results stay, so an export always has the
  image with the result it was reviewed against.
- Synthetic test jobs (the monitor's e2e probe, the deploy gate) are pruned like any other job but
  counted apart (`deleted_synthetic_jobs`), so `deleted_jobs` says how many users' jobs went.
- One job is one unit: results (`outputs/`) go first, then the inputs, then the rest of the job's
  prefix (`request.json`); the row is marked pruned only after its prefix is empty. An
  interruption can therefore leave an input without its result, never a result without its
  input, and the unmarked row is finished by the next run (deleting is idempotent).
- Orphans: files under `jobs/<id>/` whose job has no row at all (a submit that failed half-way
  and whose own clean-up failed too) are deleted once every one of them is older than
  `ORPHAN_GRACE_SECONDS` (default a day): younger ones may be an upload in progress, whose row is
  written after its inputs. Keys that are not `jobs/<job id>/...` are never touched.
- Storage or database unreachable: retried a few times with a pause, then the run stops, is
  recorded as failed (with the last success kept) and the next scheduled run tries again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common.database import JobDatabase
from services.common.errors import ServiceError, Unavailable
from services.common.jobs import Job
from services.common.layout import JOBS_ROOT, JobKeys, deletion_order, is_input_key, is_output_key, job_id_of
from services.common.retention import Retention
from services.common.storage import ObjectInfo, ObjectNotFound, ObjectStore
from services.common.times import iso_utc, parse_utc
from services.common.training import TrainingSet
from services.pruner.status import (  # noqa: F401 - re-exported for callers of the core
    DEFAULT_INTERVAL_S,
    DEFAULT_RETENTION_S,
    DEFAULT_STATUS_FILE,
    PrunerConfigError,
    PrunerSettings,
    read_status_file,
    write_status_file,
)

log = logging.getLogger(__name__)

LAST_RUN_KEY = "pruner/last_run.json"
# Jobs planned per database query; a run keeps going batch after batch until nothing is left.
BATCH_SIZE = 200


@dataclass(frozen=True)
class JobFiles:
    """A prunable job and the objects stored under its prefix."""

    job: Job
    objects: tuple[ObjectInfo, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.objects)

    def describe(self) -> str:
        finished = self.job.finished_at.isoformat() if self.job.finished_at else "?"
        kind = "synthetic test job" if self.job.synthetic else "job"
        return (f"{kind} {self.job.id} ({self.job.state}, finished {finished}): "
                f"{len(self.objects)} objects, {self.size} bytes")


@dataclass(frozen=True)
class Orphan:
    """Files stored under `jobs/<job_id>/` for a job the database does not know."""

    job_id: str
    objects: tuple[ObjectInfo, ...]

    @property
    def size(self) -> int:
        return sum(item.size for item in self.objects)

    def describe(self) -> str:
        return f"orphaned files of job {self.job_id} (no job row): {len(self.objects)} objects, {self.size} bytes"


def orphans_among(objects: list[ObjectInfo], known_ids: set[str], older_than: datetime) -> list[Orphan]:
    """Group `jobs/` objects by job id; keep groups with no row whose newest object is older than
    `older_than` (one recent object means the upload may still be going on)."""
    groups: dict[str, list[ObjectInfo]] = {}
    for item in objects:
        job_id = job_id_of(item.key)
        if job_id is not None:
            groups.setdefault(job_id, []).append(item)
    return [
        Orphan(job_id, tuple(items))
        for job_id, items in sorted(groups.items())
        if job_id not in known_ids
        and all(item.last_modified is not None and item.last_modified < older_than for item in items)
    ]


@dataclass
class RunReport:
    """What one run did (or, for a dry run, would do)."""

    started_at: datetime
    dry_run: bool = False
    finished_at: datetime | None = None
    ok: bool = False
    error: str | None = None
    deleted_jobs: list[str] = field(default_factory=list)  # users' jobs
    deleted_synthetic_jobs: list[str] = field(default_factory=list)  # the monitor's test jobs
    deleted_objects: int = 0
    freed_bytes: int = 0
    deleted_orphans: list[str] = field(default_factory=list)  # job ids whose files had no row
    planned: list[JobFiles] = field(default_factory=list)
    planned_orphans: list[Orphan] = field(default_factory=list)
    training_jobs: int = 0
    training_images: int = 0
    training_bytes: int = 0
    last_success_at: datetime | None = None

    def deleted(self) -> str:
        """How many jobs went, for log lines: "3 jobs" or "3 jobs and 12 synthetic test jobs"."""
        synthetic, orphans = len(self.deleted_synthetic_jobs), len(self.deleted_orphans)
        return (f"{len(self.deleted_jobs)} jobs" + (f" and {synthetic} synthetic test jobs" if synthetic else "")
                + (f" and the orphaned files of {orphans} jobs" if orphans else ""))

    def record(self, retention_s: float, interval_s: float) -> dict[str, Any]:
        """The JSON document stored at `pruner/last_run.json` and in the local status file."""
        return {
            "finished_at": iso_utc(self.finished_at),
            "deleted_jobs": len(self.deleted_jobs),
            "deleted_synthetic_jobs": len(self.deleted_synthetic_jobs),
            "freed_bytes": self.freed_bytes,
            "ok": self.ok,
            "started_at": iso_utc(self.started_at),
            "deleted_objects": self.deleted_objects,
            "deleted_orphans": len(self.deleted_orphans),
            "last_success_at": iso_utc(self.last_success_at),
            "last_error": self.error,
            "retention_s": retention_s,
            "interval_s": interval_s,
            "training_jobs": self.training_jobs,
            "training_images": self.training_images,
            "training_bytes": self.training_bytes,
        }


class Pruner:
    """Deletes jobs past retention. `run_once` never raises for outside failures: it reports them."""

    def __init__(
        self,
        store: ObjectStore,
        database: JobDatabase,
        settings: PrunerSettings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        on_job_deleted: Callable[[JobFiles], None] | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.store = store
        self.database = database
        self.retention = Retention(database)
        self.training = TrainingSet(database)
        self.settings = settings
        self._sleep = sleep
        self._on_job_deleted = on_job_deleted
        self._should_stop = should_stop  # checked between jobs: a stop never splits a job
        self._last_success_at: datetime | None = None

    # -- planning ---------------------------------------------------------------------------

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Jobs that finished before this moment are past retention."""
        return (now or datetime.now(UTC)) - timedelta(seconds=self.settings.retention_s)

    def plan(self, limit: int = BATCH_SIZE, exclude: set[str] | None = None) -> list[JobFiles]:
        """The next prunable jobs (oldest first) with the objects each would free."""
        exclude = exclude or set()
        jobs = self.retention.prunable_jobs(self.cutoff(), limit=limit + len(exclude))
        return [JobFiles(job, tuple(self.store.list_objects(JobKeys(job.id).prefix)))
                for job in jobs if job.id not in exclude][:limit]

    def plan_orphans(self, now: datetime | None = None) -> list[Orphan]:
        """Files under `jobs/` whose job has no row, all older than the grace period."""
        objects = self.store.list_objects(JOBS_ROOT)
        known = self.retention.known_job_ids(sorted({job_id for item in objects if (job_id := job_id_of(item.key))}))
        older_than = (now or datetime.now(UTC)) - timedelta(seconds=self.settings.orphan_grace_s)
        return orphans_among(objects, known, older_than)

    # -- running ----------------------------------------------------------------------------

    def run_once(self, dry_run: bool = False) -> RunReport:
        """One pass: plan, delete job by job (unless `dry_run`), record the outcome."""
        report = RunReport(started_at=datetime.now(UTC), dry_run=dry_run)
        self._load_last_success()
        try:
            self._with_retries("reach storage and the job database", self._ping)
            if dry_run:
                report.planned = self._with_retries("plan", lambda: self.plan(limit=100_000))
                report.planned_orphans = self._with_retries("look for orphaned files", self.plan_orphans)
            else:
                self._delete_all(report)
                self._delete_orphans(report)
            self._count_training(report)
            report.ok = True
        except ServiceError as error:
            report.error = str(error)
            log.error("prune run failed after deleting %s: %s", report.deleted(), error)
        report.finished_at = datetime.now(UTC)
        if report.ok and not dry_run:
            self._last_success_at = report.finished_at
        report.last_success_at = self._last_success_at
        if not dry_run:
            self._record(report)
        return report

    def _ping(self) -> None:
        # ensure_bucket, not ping: on a fresh instance the pruner may start before the backend
        # has created the bucket, and an empty bucket is simply nothing to prune.
        self.store.ensure_bucket()
        self.database.ping()

    def _delete_all(self, report: RunReport) -> None:
        attempted: set[str] = set()
        while True:
            batch = self._with_retries("plan", lambda: self.plan(exclude=attempted))
            if not batch:
                return
            for files in batch:
                if self._should_stop():
                    log.info("stopping between jobs as asked; %s pruned in this pass", report.deleted())
                    return
                attempted.add(files.job.id)
                self._with_retries(f"delete job {files.job.id}", lambda files=files: self.delete_job(files))
                (report.deleted_synthetic_jobs if files.job.synthetic else report.deleted_jobs).append(files.job.id)
                report.deleted_objects += len(files.objects)
                report.freed_bytes += files.size
                log.info("pruned %s", files.describe())
                if self._on_job_deleted is not None:
                    self._on_job_deleted(files)

    def _delete_orphans(self, report: RunReport) -> None:
        for orphan in self._with_retries("look for orphaned files", self.plan_orphans):
            if self._should_stop():
                return
            # Results before inputs, as for a job: never a result left without its input.
            keys = deletion_order(item.key for item in orphan.objects)
            self._with_retries(f"delete the orphaned files of job {orphan.job_id}",
                               lambda keys=keys: self.store.delete(keys))
            report.deleted_orphans.append(orphan.job_id)
            report.deleted_objects += len(orphan.objects)
            report.freed_bytes += orphan.size
            log.info("pruned %s", orphan.describe())

    def delete_job(self, files: JobFiles) -> None:
        """Delete one job's objects as a unit (results, inputs, rest), then mark its row pruned."""
        job_id = files.job.id
        keys = [item.key for item in files.objects]
        outputs = [key for key in keys if is_output_key(key)]
        inputs = [key for key in keys if is_input_key(key)]
        rest = [key for key in keys if key not in set(outputs) | set(inputs)]
        for group in (outputs, inputs, rest):
            if group:
                self.store.delete(group)
        # Whatever appeared meanwhile (a late writer) goes too, in the same order; then the row.
        leftover = self.store.list(JobKeys(job_id).prefix)
        if leftover:
            self.store.delete(deletion_order(leftover))
        if not self.retention.mark_pruned(job_id):
            log.warning("job %s was already marked pruned or is marked for training; row left as it is", job_id)

    def _count_training(self, report: RunReport) -> None:
        """Figures about the kept training images, for the monitor's disk forecast."""
        training = self.training.training_jobs(include_exported=True)
        report.training_jobs = len(training)
        report.training_images = sum(job.image_count for job in training)
        report.training_bytes = sum(item.size for job in training
                                    for item in self.store.list_objects(JobKeys(job.id).prefix))

    def _with_retries(self, action: str, function: Callable[[], Any]) -> Any:
        """Call `function`; on `Unavailable` wait and retry, up to `retry_attempts` in all."""
        attempts = self.settings.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return function()
            except Unavailable as error:
                if attempt == attempts:
                    raise
                log.warning("could not %s (attempt %d of %d): %s; retrying in %gs",
                            action, attempt, attempts, error, self.settings.retry_delay_s)
                self._sleep(self.settings.retry_delay_s)
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the run record ---------------------------------------------------------------------

    def _load_last_success(self) -> None:
        """Remember the last success across restarts (local file first, then S3)."""
        if self._last_success_at is not None:
            return
        record = read_status_file(self.settings.status_file)
        if record is None:
            try:
                record = json.loads(self.store.get(LAST_RUN_KEY))
            except (ServiceError, ValueError):
                record = None
        self._last_success_at = parse_utc((record or {}).get("last_success_at"))

    def _record(self, report: RunReport) -> None:
        record = report.record(self.settings.retention_s, self.settings.interval_s)
        write_status_file(self.settings.status_file, record)
        try:
            self.store.put(LAST_RUN_KEY, json.dumps(record, indent=2).encode(), "application/json")
        except ServiceError as error:
            # Storage down is exactly when this fails; the local file and the log still say so.
            log.warning("could not store %s: %s", LAST_RUN_KEY, error)


def read_last_run(store: ObjectStore) -> dict[str, Any] | None:
    """The record at `pruner/last_run.json`, or None when there is none yet."""
    try:
        return json.loads(store.get(LAST_RUN_KEY))
    except ObjectNotFound:
        return None
