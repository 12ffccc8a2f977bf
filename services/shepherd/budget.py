"""How many pixels a shepherd holds in memory at once.

The overlapped pipeline keeps several images of several jobs in flight in each worker process,
and a CPU host runs a worker per core. For 3-Mpx images that is cheap; for the largest images
allowed (`MAX_IMAGE_PIXELS`, 200 Mpx: about 1.5 GiB while it is analysed) it would run the
container out of memory. So each worker admits an image only while its images in flight stay
within its share of `SHEPHERD_PIXEL_BUDGET`, and an image larger than that share (an "oversized"
one) only when the worker holds nothing else **and** it holds the container-wide lock file, so
at most one oversized image is analysed in the whole container at a time. Memory then stays
below (workers x share) + one image of `MAX_IMAGE_PIXELS`.

The lock is `flock(2)` on a file in the container's own /tmp: the kernel drops it when its
process dies, so a killed worker never leaves it held.
"""

from __future__ import annotations

import fcntl
import os
import threading
from dataclasses import dataclass


@dataclass
class Admission:
    """Pixels admitted for one image; give it back with `PixelBudget.release`."""

    pixels: int
    lock_fd: int | None = None


class PixelBudget:
    """A worker's share of the container's pixel budget (thread-safe; one per worker process)."""

    def __init__(self, limit_pixels: int, oversized_lock_path: str) -> None:
        self.limit_pixels = limit_pixels
        self.oversized_lock_path = oversized_lock_path
        self._used = 0
        self._changed = threading.Condition()

    @property
    def used_pixels(self) -> int:
        with self._changed:
            return self._used

    def try_admit(self, pixels: int) -> Admission | None:
        """Admit an image of `pixels` now, or None when it must wait."""
        with self._changed:
            return self._admit_locked(pixels)

    def admit(self, pixels: int, wait_s: float) -> Admission | None:
        """Admit it, waiting up to `wait_s` for other images of this worker to be released."""
        with self._changed:
            admission = self._admit_locked(pixels)
            if admission is None:
                self._changed.wait(wait_s)
                admission = self._admit_locked(pixels)
            return admission

    def release(self, admission: Admission) -> None:
        with self._changed:
            self._used -= admission.pixels
            if admission.lock_fd is not None:
                os.close(admission.lock_fd)  # closing the descriptor drops the flock
                admission.lock_fd = None
            self._changed.notify_all()

    def _admit_locked(self, pixels: int) -> Admission | None:
        if pixels <= self.limit_pixels:
            if self._used + pixels > self.limit_pixels:
                return None
            self._used += pixels
            return Admission(pixels)
        if self._used:  # oversized: only alone in this worker ...
            return None
        lock_fd = self._try_lock_oversized()
        if lock_fd is None:  # ... and alone in the container
            return None
        self._used += pixels
        return Admission(pixels, lock_fd)

    def _try_lock_oversized(self) -> int | None:
        fd = os.open(self.oversized_lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd
