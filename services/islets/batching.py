"""Dynamic batching for the model stage, in the manner of Triton's dynamic batcher: requests
from many jobs are grouped into one batch of at most `max_batch_size`, waiting at most
`max_wait_s` after the first request for others to join (throughput on a GPU without making a
lone request wait long).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

log = logging.getLogger("services.islets.batching")

_STOP = object()


class BatcherClosedError(RuntimeError):
    """submit() after close()."""


class DynamicBatcher:
    """Groups submitted items into batches for `predict(list) -> list` on one worker thread.

    Thread-safe. ``submit(item)`` returns a Future for that item's result. An exception in
    predict (or a result list of the wrong length) fails that batch's futures only; the worker
    keeps serving later batches. ``close()`` finishes what was submitted, then stops.
    """

    def __init__(
        self, predict: Callable[[list], list], max_batch_size: int = 8, max_wait_s: float = 0.02, name: str = "batcher"
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1.")
        if max_wait_s < 0:
            raise ValueError("max_wait_s must not be negative.")
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._lock = threading.Lock()
        self.batch_sizes: list[int] = []  # what was run, for statistics and tests
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise BatcherClosedError("The batcher is closed; no more items are accepted.")
            self._queue.put((item, future))
        return future

    def close(self, timeout: float | None = None) -> None:
        """Stop accepting items, run the ones already submitted, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> DynamicBatcher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _collect(self, first: tuple) -> tuple[list[tuple], bool]:
        """The first item plus whatever joins before the deadline or the size limit."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                entry = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if entry is _STOP:
                return batch, True
            batch.append(entry)
        return batch, False

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            entry = self._queue.get()
            if entry is _STOP:
                break
            batch, stopping = self._collect(entry)
            # A cancelled future leaves the batch; the others run.
            live = [(item, future) for item, future in batch if future.set_running_or_notify_cancel()]
            if live:
                self._run(live)

    def _run(self, batch: list[tuple]) -> None:
        self.batch_sizes.append(len(batch))
        try:
            results = self._predict([item for item, _future in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"predict returned {len(results)} results for a batch of {len(batch)}.")
        except BaseException as error:  # noqa: BLE001 - delivered to the callers, worker stays up
            log.warning("batch of %d failed: %s", len(batch), error)
            for _item, future in batch:
                future.set_exception(error)
            return
        for (_item, future), result in zip(batch, results, strict=True):
            future.set_result(result)
