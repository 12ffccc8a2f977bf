"""The per-instance deploy lock: an atomic `mkdir state/lock` with a `details` file (Kamal style).

Only one deploy, rollback or hand-taken lock holds an instance at a time. `mkdir` either creates
the folder or fails because it exists, on every local file system, so two processes can never both
win. The `details` file says who holds it, from which host and process, since when (UTC), for
which version and why. A lock whose process is gone (same host, pid not running) is *stale*: it is
reported as such and may be broken with `force`. A lock taken by hand (`isletops lock acquire`)
has no process and is never stale: it is released by hand.

With a wait (`--lock-wait S`), a live lock is waited for up to S seconds instead of refused at
once; a stale lock is never waited for (its process is gone, nothing will release it).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import getpass
import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from isletops.errors import LockError

LOCK_DIR_NAME = "lock"
DETAILS_FILE = "details"
# A lock folder with no details file is being taken right now; after this long it is abandoned.
UNREADABLE_GRACE_S = 30.0
# How often a waiting process looks at the lock again: short against a deploy's minutes.
WAIT_POLL_S = 0.25

T = TypeVar("T")


def current_user() -> str:
    """Who acts: $SUDO_USER (the person behind sudo) before the login name."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def pid_is_running(pid: int) -> bool:
    """Whether process `pid` exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text()
        if status.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass(frozen=True)
class LockDetails:
    """What the `details` file of a lock says."""

    user: str
    host: str
    pid: int | None  # None: taken by hand, held until released by hand
    acquired_at: str  # UTC ISO 8601
    command: str  # deploy | rollback | manual
    version: str = ""
    message: str = ""

    @classmethod
    def for_this_process(cls, command: str, version: str = "", message: str = "", hold: bool = True) -> LockDetails:
        """Details for a lock taken now; `hold=False` for a hand-taken lock that outlives the process."""
        return cls(
            user=current_user(),
            host=socket.gethostname(),
            pid=os.getpid() if hold else None,
            acquired_at=utc_now().isoformat(),
            command=command,
            version=version,
            message=message,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LockDetails:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("details is not a JSON object")
        pid = raw.get("pid")
        return cls(
            user=str(raw.get("user") or "?"),
            host=str(raw.get("host") or "?"),
            pid=int(pid) if pid is not None else None,
            acquired_at=str(raw.get("acquired_at") or "?"),
            command=str(raw.get("command") or "?"),
            version=str(raw.get("version") or ""),
            message=str(raw.get("message") or ""),
        )

    def is_stale(self, this_host: str | None = None) -> bool:
        """Held by a process of this host that no longer runs. Hand-taken locks are never stale;
        locks from another host cannot be checked and count as live."""
        if self.pid is None or self.host != (this_host or socket.gethostname()):
            return False
        return not pid_is_running(self.pid)

    def describe(self) -> str:
        """`root@host (pid 42, deploy 2026-11-23_02) since 2026-11-23T10:00:00+00:00: message`."""
        what = self.command + (f" {self.version}" if self.version else "")
        holder = f"pid {self.pid}, {what}" if self.pid is not None else f"by hand, {what}"
        text = f"{self.user}@{self.host} ({holder}) since {self.acquired_at}"
        return text + (f": {self.message}" if self.message else "")


@dataclass(frozen=True)
class LockStatus:
    """The lock as found: free, held (with details), stale, or unreadable."""

    held: bool
    details: LockDetails | None = None
    stale: bool = False
    problem: str = ""  # set when the details file is missing or corrupt


class LockHeld(LockError):
    """The lock is held by someone else (not a file-system failure); `found` says by whom."""

    def __init__(self, message: str, hint: str | None, found: LockStatus) -> None:
        super().__init__(message, hint)
        self.found = found


class InstanceLock:
    """The lock folder `<state_dir>/lock` of one instance."""

    def __init__(self, state_dir: Path, instance_name: str = "") -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / LOCK_DIR_NAME
        self.instance_name = instance_name or self.state_dir.parent.name
        self._owned: LockDetails | None = None

    def status(self) -> LockStatus:
        if not self.path.is_dir():
            return LockStatus(held=False)
        details_file = self.path / DETAILS_FILE
        try:
            details = LockDetails.from_json(details_file.read_text())
        except FileNotFoundError:
            age = _age_s(self.path)
            return LockStatus(
                held=True, stale=age > UNREADABLE_GRACE_S, problem=f"the lock has no details file (age {age:.0f} s)"
            )
        except (ValueError, TypeError, OSError) as exc:
            return LockStatus(held=True, stale=True, problem=f"the details file is unreadable ({exc})")
        return LockStatus(held=True, details=details, stale=details.is_stale())

    def acquire(
        self,
        details: LockDetails,
        force: bool = False,
        wait_s: float = 0.0,
        progress: Callable[[str], None] | None = None,
    ) -> LockStatus | None:
        """Take the lock or raise `LockHeld` naming who holds it and since when.

        With `force`, a stale lock is broken (and returned, so the caller can report it); a live
        lock is never broken here — that takes `isletops lock release`, a deliberate act. With
        `wait_s`, a live lock is waited for that long (see `retry_while_held`).
        """
        return self.retry_while_held(lambda: self._acquire_now(details, force), wait_s, progress)

    def _acquire_now(self, details: LockDetails, force: bool) -> LockStatus | None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        broken: LockStatus | None = None
        try:
            os.mkdir(self.path, 0o755)
        except FileExistsError:
            found = self.status()
            if not (force and found.stale):
                raise self._held(found) from None
            broken = found
            shutil.rmtree(self.path, ignore_errors=True)
            try:
                os.mkdir(self.path, 0o755)
            except FileExistsError:  # someone else broke and took it in between
                raise self._held(self.status()) from None
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC):
                raise LockError(f"Cannot create the lock {self.path}: {exc.strerror}.") from None
            raise
        _write_atomically(self.path / DETAILS_FILE, details.to_json() + "\n")
        self._owned = details
        return broken

    def retry_while_held(
        self, take: Callable[[], T], wait_s: float, progress: Callable[[str], None] | None = None
    ) -> T:
        """Call `take` (something that takes this lock, e.g. a whole deploy) and, while it raises
        `LockHeld` for a live lock, wait for the lock to go and call it again, for up to `wait_s`
        seconds in all. Past the wait, or for a stale lock, the last refusal is raised as is."""
        deadline = time.monotonic() + max(0.0, wait_s)
        while True:
            try:
                return take()
            except LockHeld as refused:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or refused.found.stale:
                    raise
                self.wait_until_free(remaining, progress)

    def wait_until_free(self, wait_s: float, progress: Callable[[str], None] | None = None) -> LockStatus:
        """Wait up to `wait_s` seconds while a live lock is held; return the lock as last seen
        (free, stale, or still held when the time ran out). Says once per holder whom it waits for."""
        deadline = time.monotonic() + max(0.0, wait_s)
        announced: LockStatus | None = None
        while True:
            found = self.status()
            if not found.held or found.stale:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return found
            if progress is not None and (announced is None or found.details != announced.details):
                holder = found.details.describe() if found.details else found.problem
                progress(f"waiting up to {remaining:.0f} s for the lock held by {holder} ...")
                announced = found
            time.sleep(min(WAIT_POLL_S, remaining))

    def _held(self, found: LockStatus) -> LockHeld:
        return LockHeld(*self._refusal(found), found)

    def _refusal(self, found: LockStatus) -> tuple[str, str]:
        name = self.instance_name
        if found.details is None:
            return (
                f"Instance '{name}' is locked but {found.problem or 'the lock details are missing'} ({self.path}).",
                "If no deploy runs, break it with --force or 'isletops lock release'.",
            )
        if found.stale:
            return (
                f"Instance '{name}' has a stale lock: {found.details.describe()}, and that process no longer runs.",
                "Check 'isletops history' and 'isletops status', then retry with --force to break it.",
            )
        return (
            f"Instance '{name}' is locked by {found.details.describe()}.",
            "Wait for it to finish, or if it was taken by hand, 'isletops lock release'.",
        )

    def release(self, only_if_owned: bool = True) -> LockDetails | None:
        """Remove the lock. With `only_if_owned` (the default for deploys), a lock that another
        process holds now is left alone. Returns the details of the lock removed, if any."""
        found = self.status()
        if not found.held:
            self._owned = None
            return None
        if only_if_owned and (self._owned is None or found.details != self._owned):
            return None
        shutil.rmtree(self.path, ignore_errors=True)
        self._owned = None
        return found.details

    @property
    def owned(self) -> bool:
        return self._owned is not None


def _age_s(path: Path) -> float:
    try:
        return max(0.0, dt.datetime.now().timestamp() - path.stat().st_mtime)
    except OSError:
        return 0.0


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
