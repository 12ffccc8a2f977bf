"""The self-healing state machine (Monit's restart budget): which broken service gets restarted
when. Pure logic plus `load_state`/`save_state`; `monitors.self_heal` does the restarts.

Per service: a service seen *broken* (exited, dead or unhealthy) in `after_checks` checks in a
row is restarted, but at most `max_restarts` times within `window_s` seconds. When the budget
is spent it *gives up*: no more restarts until the service has been seen working again (Monit:
"if 3 restarts within 5 cycles then unmonitor"). A service Docker itself keeps restarting (state
`restarting`: a crash-looping image) is never restarted by us — another restart cannot help — and
counts as given up at once. Nothing is done while a deploy holds the instance lock, or for a
service that `monitoring.self_heal.services` turns off.

State file `state/healing.json`: per service `bad_checks`, `bad_since`, `restarts` (times within
the window), `gave_up_at`, `held` (why it was held back last), and `events` (the last actions,
newest last) for mails and the status page.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from isletops.config import SelfHealConfig
from monitors.state import read_json, write_json_atomic

STATE_VERSION = 1
EVENTS_KEPT = 50
RESTART = "restart"
GIVE_UP = "give_up"
HOLD = "hold"


@dataclass(frozen=True)
class Observation:
    """One service as a check saw it. `broken` is the phrase for why it needs help ("" when fine)."""

    service: str
    broken: str = ""
    crash_looping: bool = False


@dataclass(frozen=True)
class Decision:
    """What to do about one service now: restart it, give up on it, or hold back (lock held)."""

    service: str
    action: str  # restart | give_up | hold
    reason: str


def observe(container: dict[str, Any]) -> Observation:
    """An observation from a container dict (`ContainerState.as_dict()`, as the containers probe keeps it)."""
    service = str(container.get("service") or "?")
    state, health = container.get("state"), container.get("health")
    if state == "restarting":
        restarts = container.get("restart_count") or 0
        return Observation(service, f"crash-looping (Docker restarted it {restarts} times)", crash_looping=True)
    if state in ("exited", "dead"):
        code = container.get("exit_code")
        return Observation(service, f"{state}" + (f" with exit code {code}" if code is not None else ""))
    if state == "running" and health == "unhealthy":
        return Observation(service, "unhealthy")
    return Observation(service)


def state_path(state_dir: Path) -> Path:
    return state_dir / "healing.json"


def new_state() -> dict[str, Any]:
    return {"version": STATE_VERSION, "services": {}, "events": []}


def load_state(path: Path) -> dict[str, Any]:
    state = read_json(path, None)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return new_state()
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_json_atomic(path, state)


def _entry(state: dict[str, Any], service: str) -> dict[str, Any]:
    return state["services"].setdefault(
        service, {"bad_checks": 0, "bad_since": None, "restarts": [], "gave_up_at": None, "held": ""}
    )


def minutes(seconds: float) -> str:
    return f"{max(1, round(seconds / 60))} min"


def decide(
    state: dict[str, Any],
    observations: list[Observation],
    now: float,
    policy: SelfHealConfig,
    lock_holder: str = "",
) -> tuple[dict[str, Any], list[Decision]]:
    """Fold one check's observations into `state`; return the new state and what to do now.

    `lock_holder` describes who holds the deploy lock ("" when free): then nothing is restarted.
    A `restart` decision already counts against the budget (a crash mid-restart must not give a
    free retry).
    """
    state = copy.deepcopy(state)
    decisions: list[Decision] = []
    for seen in observations:
        entry = _entry(state, seen.service)
        entry["restarts"] = [t for t in entry["restarts"] if now - t < policy.window_s]
        if not seen.broken:
            entry.update(bad_checks=0, bad_since=None, gave_up_at=None, held="")
            continue
        entry["bad_checks"] += 1
        entry["bad_since"] = entry["bad_since"] or now
        if not policy.applies_to(seen.service) or entry["gave_up_at"] is not None:
            continue
        if seen.crash_looping:
            entry["gave_up_at"] = now
            decisions.append(Decision(seen.service, GIVE_UP, f"not restarted: {seen.broken}; a restart cannot help"))
            continue
        if entry["bad_checks"] < policy.after_checks:
            continue
        if len(entry["restarts"]) >= policy.max_restarts:
            entry["gave_up_at"] = now
            first = min(entry["restarts"])
            decisions.append(Decision(
                seen.service, GIVE_UP,
                f"gave up after {len(entry['restarts'])} restarts in {minutes(now - first)}: still {seen.broken}",
            ))  # fmt: skip
            continue
        if lock_holder:
            if entry["held"] != lock_holder:
                reason = f"not restarted: a deploy holds the lock ({lock_holder})"
                decisions.append(Decision(seen.service, HOLD, reason))
            entry["held"] = lock_holder
            continue
        entry["held"] = ""
        entry["restarts"].append(now)
        entry["bad_checks"] = 0
        reason = f"{seen.broken} for {minutes(now - entry['bad_since'])}" if now > entry["bad_since"] else seen.broken
        decisions.append(Decision(seen.service, RESTART, reason))
    return state, decisions


def add_event(state: dict[str, Any], at: float, service: str, kind: str, text: str) -> dict[str, Any]:
    """Record one action (restarted, restart_failed, gave_up, held) for mails and the status page."""
    event = {"at": at, "service": service, "kind": kind, "text": text}
    state["events"] = (state.get("events", []) + [event])[-EVENTS_KEPT:]
    return event


def events_since(state: dict[str, Any], since: float) -> list[dict[str, Any]]:
    return [event for event in state.get("events", []) if event.get("at", 0) >= since]
