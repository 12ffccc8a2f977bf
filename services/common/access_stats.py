"""Access statistics in the job database: requests per day, endpoint (the route pattern),
method and status (`access_stats`). The backend adds its counts in the background and reads
them for the access statistics report.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from services.common.database import JobDatabase


class AccessStatistics:
    """Adding request counts and reading them back."""

    def __init__(self, database: JobDatabase) -> None:
        self.database = database

    def record_access(self, counts: Mapping[tuple[date, str, str, int], int]) -> None:
        """Add request counts keyed by (day, endpoint, method, status)."""
        if not counts:
            return
        with self.database.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                """INSERT INTO access_stats (day, endpoint, method, status, requests) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (day, endpoint, method, status)
                   DO UPDATE SET requests = access_stats.requests + EXCLUDED.requests""",
                [(*key, value) for key, value in sorted(counts.items())],
            )

    def access_statistics(self, since: date | None = None) -> list[dict[str, Any]]:
        """Rows {day, endpoint, method, status, requests}, oldest day first."""
        with self.database.connection() as conn:
            return conn.execute(
                """SELECT day, endpoint, method, status, requests FROM access_stats
                   WHERE %s::date IS NULL OR day >= %s::date ORDER BY day, endpoint, method, status""",
                (since, since),
            ).fetchall()
