"""The training set in the job database: jobs marked for training and the record of their
one-time export (`exported_at` and an `exported` job event). The backend's export route and the
pruner's figures read it; synthetic test jobs are never part of it.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.database import JobDatabase, record_event
from services.common.jobs import Job


class TrainingSet:
    """Training-marked jobs, oldest first, and marking them exported."""

    def __init__(self, database: JobDatabase) -> None:
        self.database = database

    def training_jobs(self, include_exported: bool = False) -> list[Job]:
        """Jobs marked for training, oldest first; by default only those not yet exported. Never a
        synthetic test job (`create_job` refuses the combination; rows written otherwise stay out)."""
        with self.database.connection() as conn:
            rows = conn.execute(
                """SELECT * FROM jobs WHERE training AND NOT synthetic AND (%s OR exported_at IS NULL)
                   ORDER BY created_at, id""",
                (include_exported,),
            ).fetchall()
        return [Job.from_row(row) for row in rows]

    def mark_exported(self, job_ids: Sequence[str]) -> int:
        """Record that these training jobs were exported; returns how many were newly marked."""
        with self.database.connection() as conn:
            rows = conn.execute(
                """UPDATE jobs SET exported_at = now() WHERE id = ANY(%s) AND training AND exported_at IS NULL
                   RETURNING id""",
                (list(job_ids),),
            ).fetchall()
            for row in rows:
                record_event(conn, row["id"], "exported")
        return len(rows)
