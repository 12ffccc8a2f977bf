"""Retention bookkeeping in the job database: which finished jobs are past retention, which job
ids have a row at all (files without one are orphans), and marking a job pruned. The pruner is
its one user; deleting the files is the pruner's own business. Training jobs are never prunable.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from services.common.database import JobDatabase, record_event
from services.common.jobs import Job


class Retention:
    """Rows past retention and the record that their files are gone."""

    def __init__(self, database: JobDatabase) -> None:
        self.database = database

    def prunable_jobs(self, finished_before: datetime, limit: int = 500) -> list[Job]:
        """Finished jobs older than the cutoff whose files are still stored and that are not
        marked for training (training images are never pruned); synthetic test jobs included."""
        with self.database.connection() as conn:
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
        with self.database.connection() as conn:
            rows = conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", (list(job_ids),)).fetchall()
        return {row["id"] for row in rows}

    def mark_pruned(self, job_id: str) -> bool:
        """Record that the job's files were deleted. Refuses (False) for training jobs (unless synthetic)."""
        with self.database.connection() as conn:
            row = conn.execute(
                """UPDATE jobs SET pruned_at = now() WHERE id = %s AND (NOT training OR synthetic) AND pruned_at IS NULL
                   RETURNING id""",
                (job_id,),
            ).fetchone()
            if row:
                record_event(conn, job_id, "pruned")
        return row is not None
