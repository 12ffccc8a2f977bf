"""The deploy history of an instance: append-only JSON lines in `state/history.jsonl`.

Every deploy and rollback attempt leaves one line (time, user, host, command, from/to tag,
result, duration, message), and one Kamal-format line in `state/audit.log`. The history is the
source of truth for "which tag is deployed" and "which tag was good before it": the successful
entries form a stack (a deploy pushes, a rollback pops back to its target). A corrupt file never
stops a command: readable lines are kept, unreadable ones are reported by line number.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path

from isletops.errors import IsletOpsError
from isletops.lock import current_user, utc_now

HISTORY_FILE = "history.jsonl"
AUDIT_FILE = "audit.log"
COMMANDS = ("deploy", "rollback")
RESULTS = ("ok", "failed", "rolled_back", "interrupted")


class HistoryError(IsletOpsError):
    """The history file cannot be written."""


@dataclass(frozen=True)
class HistoryEntry:
    """One deploy or rollback attempt."""

    command: str  # deploy | rollback
    from_tag: str  # "" when nothing was deployed before
    to_tag: str
    result: str  # ok | failed | rolled_back | interrupted
    duration_s: float
    message: str = ""
    time: str = field(default_factory=lambda: utc_now().isoformat())
    user: str = field(default_factory=current_user)
    host: str = field(default_factory=socket.gethostname)
    instance: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: object) -> HistoryEntry:
        """Parse one line's object; raises ValueError naming what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        missing = [key for key in ("command", "to_tag", "result", "time") if key not in raw]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
        if raw["command"] not in COMMANDS:
            raise ValueError(f"unknown command {raw['command']!r}")
        if raw["result"] not in RESULTS:
            raise ValueError(f"unknown result {raw['result']!r}")
        try:
            duration = float(raw.get("duration_s") or 0.0)
        except (TypeError, ValueError):
            raise ValueError("duration_s is not a number") from None
        return cls(
            command=str(raw["command"]),
            from_tag=str(raw.get("from_tag") or ""),
            to_tag=str(raw["to_tag"]),
            result=str(raw["result"]),
            duration_s=duration,
            message=str(raw.get("message") or ""),
            time=str(raw["time"]),
            user=str(raw.get("user") or "?"),
            host=str(raw.get("host") or "?"),
            instance=str(raw.get("instance") or ""),
        )

    def audit_line(self) -> str:
        """Kamal's audit format: `[<UTC ISO8601>] [<user>] [<destination>] <message>`."""
        moved = f"{self.from_tag or 'nothing'} -> {self.to_tag}"
        text = f"{self.command} {moved}: {self.result} in {self.duration_s:.0f} s"
        if self.message:
            text += f" ({' '.join(self.message.split())})"
        return f"[{self.time}] [{self.user}] [{self.instance or '-'}] {text}"


@dataclass(frozen=True)
class HistoryProblem:
    line_number: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line_number}: {self.reason}"


@dataclass(frozen=True)
class HistoryRead:
    """What was read: the good entries (oldest first) and the lines that could not be read."""

    entries: list[HistoryEntry]
    problems: list[HistoryProblem]

    def problem_summary(self, path: Path) -> str:
        if not self.problems:
            return ""
        shown = ", ".join(str(p.line_number) for p in self.problems[:10])
        more = f" and {len(self.problems) - 10} more" if len(self.problems) > 10 else ""
        return (
            f"{path} has {len(self.problems)} unreadable line(s) ({shown}{more}); "
            f"they were skipped, the other {len(self.entries)} kept."
        )


def parse_history(text: str) -> HistoryRead:
    entries: list[HistoryEntry] = []
    problems: list[HistoryProblem] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(HistoryEntry.from_dict(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(HistoryProblem(number, f"not JSON ({exc.msg})"))
        except ValueError as exc:
            problems.append(HistoryProblem(number, str(exc)))
    return HistoryRead(entries, problems)


@dataclass(frozen=True)
class Deployed:
    """Which tag runs now according to the history, and which was good before it."""

    current: str
    previous: str
    stack: tuple[str, ...]


def deployed_tags(entries: list[HistoryEntry]) -> Deployed:
    """Replay the successful entries: a deploy pushes its tag, a rollback pops back to its target
    (or pushes it, when it is not on the stack). The top is what runs; the one below is the
    previous good tag, where `rollback` with no argument goes. Failed and rolled-back attempts
    leave the stack as it was, because the tool restored the previous tag.
    """
    stack: list[str] = []
    for entry in entries:
        if entry.result != "ok":
            continue
        if entry.command == "rollback" and entry.to_tag in stack:
            while stack[-1] != entry.to_tag:
                stack.pop()
        elif not stack or stack[-1] != entry.to_tag:
            if entry.to_tag in stack:  # deployed again: it moves to the top
                stack.remove(entry.to_tag)
            stack.append(entry.to_tag)
    return Deployed(
        current=stack[-1] if stack else "",
        previous=stack[-2] if len(stack) > 1 else "",
        stack=tuple(stack),
    )


def failed_tags(entries: list[HistoryEntry]) -> set[str]:
    """Tags whose last deploy or rollback attempt failed or was rolled back (an interrupted one
    says nothing about the release itself)."""
    last: dict[str, str] = {}
    for entry in entries:
        if entry.result in ("ok", "failed", "rolled_back"):
            last[entry.to_tag] = entry.result
    return {tag for tag, result in last.items() if result != "ok"}


def last_attempt_notice(entries: list[HistoryEntry]) -> str:
    """A sentence about the last attempt when it did not end well (shown by the next command)."""
    if not entries:
        return ""
    last = entries[-1]
    who = f"by {last.user} at {last.time}"
    if last.result == "interrupted":
        if not last.from_tag:
            restored = "nothing was running before"
        elif f"{last.from_tag} restored" in last.message:
            restored = f"{last.from_tag} was restored"
        else:
            restored = f"{last.from_tag} may not have been restored (see 'isletops status')"
        moved = f"{last.from_tag or 'nothing'} -> {last.to_tag}"
        return f"The last {last.command} ({moved}, {who}) was interrupted; {restored}."
    if last.result == "rolled_back":
        return (
            f"The last {last.command} to {last.to_tag} ({who}) failed and was rolled back to "
            f"{last.from_tag or 'nothing'}: {last.message}"
        ).rstrip(": ")
    if last.result == "failed":
        return f"The last {last.command} to {last.to_tag} ({who}) failed: {last.message}".rstrip(": ")
    return ""


class History:
    """The history and audit files of one instance."""

    def __init__(self, state_dir: Path, instance_name: str = "") -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / HISTORY_FILE
        self.audit_path = self.state_dir / AUDIT_FILE
        self.instance_name = instance_name or self.state_dir.parent.name

    def read(self) -> HistoryRead:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return HistoryRead([], [])
        except OSError as exc:
            raise HistoryError(f"Cannot read {self.path}: {exc.strerror}.") from None
        return parse_history(text)

    def append(self, entry: HistoryEntry) -> HistoryEntry:
        """Append one line (and its audit line), flushed to disk: a crash right after still has it."""
        if not entry.instance:
            entry = HistoryEntry(**{**asdict(entry), "instance": self.instance_name})
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            _append_line(self.path, entry.to_json())
            _append_line(self.audit_path, entry.audit_line())
        except OSError as exc:
            raise HistoryError(
                f"Cannot write the deploy history {self.path}: {exc.strerror}.", "Free disk space or fix permissions."
            ) from None
        return entry


def _append_line(path: Path, line: str) -> None:
    # A file that lost its last newline (a crash mid-write) must not glue two entries together.
    prefix = ""
    if path.exists() and path.stat().st_size > 0:
        with path.open("rb") as handle:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                prefix = "\n"
    with path.open("a", encoding="utf-8") as handle:
        handle.write(prefix + line + "\n")
        handle.flush()
        os.fsync(handle.fileno())
