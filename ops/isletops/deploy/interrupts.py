"""The one interrupt controller of a deploy (certbot's `ErrorHandler`, made nesting-aware).

While a deploy runs, SIGINT, SIGTERM and SIGHUP are handled here:

- outside critical sections a signal interrupts at once (`Interrupted`, a `KeyboardInterrupt`);
- inside `critical()` sections (one engine call that must not be cut half-way, a clean-up) it is
  *deferred*: recorded, and re-delivered as `Interrupted` when the outermost section ends. A signal
  is never ignored or dropped (no `SIG_IGN`);
- inside `protected()` sections (the automatic rollback, the restore after an interrupt) every
  signal is deferred too, and `announce` is told once per signal: "rollback in progress; it will
  finish". A second or third Ctrl-C therefore never aborts a rollback (use `kill -9` to abort for
  real; `isletops status` then shows which service runs which release). The deferred signal is
  re-delivered after the protected section only if no failure is already on its way out: the
  deploy ends with the rollback's own result, and the history notes the deferred signal;
- `on_exit` clean-ups registered with `push` run last-in-first-out when the controller closes,
  inside one critical section, so a signal cannot cut them short either.

Signal handlers can only be set from the main thread; elsewhere the controller still orders the
clean-ups but leaves signal handling alone.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import Any

log = logging.getLogger(__name__)

HANDLED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
Announce = Callable[[str], None]


class Interrupted(KeyboardInterrupt):
    """A deploy was interrupted by a signal (`signal_name`: SIGINT for Ctrl-C)."""

    def __init__(self, signum: int) -> None:
        self.signal_name = signal.Signals(signum).name
        super().__init__(self.signal_name)

    def __str__(self) -> str:
        return "Ctrl-C" if self.signal_name == "SIGINT" else self.signal_name


class InterruptController:
    """Use as a context manager around a whole deploy (see the module docstring)."""

    def __init__(self, announce: Announce | None = None) -> None:
        self._announce = announce or (lambda _line: None)
        self._depth = 0  # critical sections entered and not left
        self._protected = 0  # protected sections entered and not left
        self._pending: list[int] = []  # signals received while deferred, oldest first
        self._cleanups: list[Callable[[], object]] = []
        self._previous: dict[int, Any] = {}
        self.deferred_during_protected: list[str] = []  # signal names held through a rollback

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> InterruptController:
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        try:
            with self.critical(redeliver=False):
                self._run_cleanups()
        finally:
            for signum, previous in self._previous.items():
                signal.signal(signum, previous)
            self._previous.clear()
        if self._pending and error is None:
            raise Interrupted(self._pending.pop(0))

    def push(self, cleanup: Callable[[], object]) -> None:
        """Register a clean-up; they run last-in-first-out when the controller closes."""
        self._cleanups.append(cleanup)

    def _run_cleanups(self) -> None:
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                cleanup()
            except Exception:  # one failing clean-up must not skip the others (the lock!)
                log.exception("a clean-up failed")

    # -- sections ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def critical(self, redeliver: bool = True) -> Iterator[None]:
        """Defer signals until the outermost critical section ends, then raise the first one."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if redeliver:
            self.check()

    @contextlib.contextmanager
    def protected(self, what: str) -> Iterator[None]:
        """A critical section that a signal never ends (the rollback): see the module docstring."""
        self._protected += 1
        self._depth += 1
        self._what = what
        try:
            yield
        finally:
            self._depth -= 1
            self._protected -= 1

    def check(self) -> None:
        """Raise a deferred signal now, if one is pending and nothing defers it any more."""
        if self._pending and self._depth == 0:
            raise Interrupted(self._pending.pop(0))

    @property
    def pending(self) -> list[str]:
        return [signal.Signals(signum).name for signum in self._pending]

    # -- the handler ------------------------------------------------------------------------

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self._protected:
            self._pending.append(signum)
            self.deferred_during_protected.append(signal.Signals(signum).name)
            self._announce(f"{signal.Signals(signum).name} received: {self._what} in progress; it will finish")
            return
        if self._depth:
            self._pending.append(signum)
            return
        raise Interrupted(signum)
