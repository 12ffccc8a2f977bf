"""Access statistics: requests per day, endpoint (the route pattern, not the raw path), method and
status, counted in memory and added to the database's `access_stats` table in the background, so
a request never waits for (or fails because of) the bookkeeping."""

from __future__ import annotations

import atexit
import logging
import threading
from collections import Counter
from datetime import UTC, date, datetime

from services.common.access_stats import AccessStatistics
from services.common.errors import ServiceError

log = logging.getLogger(__name__)

# Counts kept in memory while the database is down; beyond this many distinct keys the oldest
# unflushed counts are dropped rather than growing without bound.
_MAX_PENDING_KEYS = 10_000


class AccessRecorder:
    def __init__(self, statistics: AccessStatistics, flush_interval_s: float = 10.0) -> None:
        self.statistics = statistics
        self.flush_interval_s = flush_interval_s
        self._counts: Counter[tuple[date, str, str, int]] = Counter()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._failing = False

    def record(self, endpoint: str, method: str, status: int) -> None:
        key = (datetime.now(UTC).date(), endpoint, method, int(status))
        with self._lock:
            self._counts[key] += 1
        self._start_once()

    def flush(self) -> int:
        """Write the pending counts; returns how many requests were written. On a database
        failure the counts are kept for the next flush."""
        with self._lock:
            pending, self._counts = self._counts, Counter()
        if not pending:
            return 0
        try:
            self.statistics.record_access(pending)
        except ServiceError as error:
            # Once per outage, not every flush.
            if not self._failing:
                log.warning("access statistics not saved yet (kept in memory): %s", error)
            self._failing = True
            with self._lock:
                pending.update(self._counts)
                if len(pending) > _MAX_PENDING_KEYS:
                    pending = Counter(dict(sorted(pending.items())[-_MAX_PENDING_KEYS:]))
                self._counts = pending
            return 0
        if self._failing:
            log.info("access statistics saved again")
        self._failing = False
        return sum(pending.values())

    def stop(self) -> None:
        """Stop the background writer after a last flush (also run at interpreter exit)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.flush()

    def _start_once(self) -> None:
        # Started on the first request, not at import: gunicorn forks workers after loading.
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="access-stats", daemon=True)
            self._thread.start()
        atexit.register(self.stop)

    def _run(self) -> None:
        while not self._stopped.wait(self.flush_interval_s):
            try:
                self.flush()
            except Exception:  # the statistics must never take the backend down
                log.exception("flushing access statistics failed")
