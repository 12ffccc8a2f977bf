"""Silences and maintenance windows: while one covers a probe, its failures send no mail.

Stored in the instance's `state/silences.json` (its own file, so a deploy can silence while the
monitor daemon writes alert state). Public API, used by `isletops silence` and by deploys:

    from monitors.silences import silence, unsilence, silenced
    entry = silence(instance.state_dir, "all", 1800, "deploy 2026-11-25_01")   # returns a Silence
    ...
    unsilence(instance.state_dir, entry.id)
    # or: with silenced(instance.state_dir, "all", 1800, "deploy ..."): ...

A silence with a later `start` is a planned maintenance window. Failures keep being counted
while silenced, so a problem that outlives the silence alerts at once when the silence ends.
"""

from __future__ import annotations

import contextlib
import getpass
import re
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from isletops.errors import IsletOpsError
from monitors.state import locked, read_json, write_json_atomic

ALL = "all"
MAX_SILENCE_S = 30 * 24 * 3600
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class SilenceError(IsletOpsError):
    """A silence was asked for with a bad target, duration or reason."""


@dataclass(frozen=True)
class Silence:
    id: str
    target: str  # a probe name or "all"
    start: float
    end: float
    reason: str
    author: str
    created_at: float

    def covers(self, probe: str, now: float) -> bool:
        return self.target in (ALL, probe) and self.start <= now < self.end

    def active(self, now: float) -> bool:
        return self.start <= now < self.end


def silences_path(state_dir: Path) -> Path:
    return state_dir / "silences.json"


def parse_duration(text: str) -> float:
    """'2h', '30m', '1h30m', '90s', '1d' or plain seconds -> seconds."""
    text = (text or "").strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        raise SilenceError(f"'{text}' is not a duration.", "Write it like 90s, 30m, 2h, 1h30m or 1d.")
    return sum(float(amount) * _UNIT_S[unit.lower()] for amount, unit in parts)


def _load(state_dir: Path) -> list[Silence]:
    raw = read_json(silences_path(state_dir), {"silences": []})
    return [Silence(**entry) for entry in raw.get("silences", [])]


def _save(state_dir: Path, entries: Iterable[Silence], now: float) -> None:
    kept = [asdict(entry) for entry in entries if entry.end > now]  # expired ones are dropped
    write_json_atomic(silences_path(state_dir), {"silences": kept})


def silence(
    state_dir: Path,
    target: str,
    for_s: float,
    reason: str,
    *,
    start: float | None = None,
    author: str | None = None,
    known_probes: Iterable[str] | None = None,
    now: float | None = None,
) -> Silence:
    """Silence `target` (a probe or "all") for `for_s` seconds from `start` (default: now)."""
    now = time.time() if now is None else now
    if known_probes is not None and target != ALL and target not in set(known_probes):
        raise SilenceError(
            f"'{target}' is not a probe.", f"Silence one of: {ALL}, {', '.join(sorted(known_probes))}."
        )
    if not (0 < for_s <= MAX_SILENCE_S):
        raise SilenceError("A silence lasts more than 0 seconds and at most 30 days.", "Pass e.g. --for 2h.")
    if not (reason or "").strip():
        raise SilenceError("A silence needs a reason.", "Pass --reason 'what is being done'.")
    begin = now if start is None else start
    if begin + for_s <= now:
        raise SilenceError("That maintenance window is already over.", "Give a start time in the future.")
    entry = Silence(
        id=secrets.token_hex(4),
        target=target,
        start=begin,
        end=begin + for_s,
        reason=reason.strip(),
        author=author or _whoami(),
        created_at=now,
    )
    path = silences_path(state_dir)
    with locked(path):
        _save(state_dir, [*_load(state_dir), entry], now)
    return entry


def unsilence(state_dir: Path, target_or_id: str, *, now: float | None = None) -> list[Silence]:
    """End silences by id or by target ("all" ends only silences whose target is "all")."""
    now = time.time() if now is None else now
    path = silences_path(state_dir)
    with locked(path):
        entries = _load(state_dir)
        removed = [entry for entry in entries if target_or_id in (entry.id, entry.target) and entry.end > now]
        if not removed:
            raise SilenceError(
                f"No silence matches '{target_or_id}'.", "List them with 'isletops silence --list'."
            )
        _save(state_dir, [entry for entry in entries if entry not in removed], now)
    return removed


def list_silences(state_dir: Path, *, now: float | None = None) -> list[Silence]:
    """Current and planned silences, soonest ending first."""
    now = time.time() if now is None else now
    return sorted((entry for entry in _load(state_dir) if entry.end > now), key=lambda entry: entry.end)


def is_silenced(entries: Iterable[Silence], probe: str, now: float) -> bool:
    return any(entry.covers(probe, now) for entry in entries)


@contextlib.contextmanager
def silenced(state_dir: Path, target: str, for_s: float, reason: str) -> Iterator[Silence]:
    """Silence for the duration of a `with` block (at most `for_s`); ended on exit, even on error."""
    entry = silence(state_dir, target, for_s, reason)
    try:
        yield entry
    finally:
        with contextlib.suppress(SilenceError):
            unsilence(state_dir, entry.id)


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
