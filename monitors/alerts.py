"""The alert state machine: which probe results become which mails. Pure logic, no I/O but
`load_state`/`save_state`.

Per probe: a failure streak of `failures_to_alert` results makes it *fire*; `successes_to_resolve`
successes in a row make it *resolve*. A probe that keeps changing between pass and fail
(`flap_threshold` changes among its last `flap_window` results) is *flapping*: it fires even
without a long enough streak and does not resolve until it settles, so a flaky service gives
one alert, not a storm of trigger/resolve pairs.

Per instance: firing probes are grouped into one open *incident* with a stable name
(`<instance>#<n>`). The first probe to fire opens it (a `trigger` mail); probes that fire within
`group_window_s` of the opening join silently (one breakage breaking several probes = one
mail); later joiners, or a rise in severity, send an `update`. While open, a `reminder` goes out
every `reminder_interval_s`; when every probe has resolved, one `resolve` mail closes it.
Silenced probes are counted but never start or escalate an incident, and get no reminders.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isletops.config import MonitoringConfig
from monitors.result import ProbeResult, Status
from monitors.silences import Silence, is_silenced
from monitors.state import read_json, write_json_atomic

STATE_VERSION = 1
CLOSED_KEPT = 20  # closed incidents kept in the state file for `isletops alerts`/the status page


@dataclass(frozen=True)
class Policy:
    failures_to_alert: int = 3
    successes_to_resolve: int = 2
    reminder_interval_s: float = 4 * 3600
    group_window_s: float = 900
    alert_on_unknown: bool = True
    flap_window: int = 10
    flap_threshold: int = 5

    @classmethod
    def from_config(cls, monitoring: MonitoringConfig) -> Policy:
        return cls(
            failures_to_alert=monitoring.failures_to_alert,
            successes_to_resolve=monitoring.successes_to_resolve,
            reminder_interval_s=monitoring.reminder_interval_s,
            group_window_s=monitoring.group_window_s,
            alert_on_unknown=monitoring.alert_on_unknown,
            flap_window=monitoring.flap_window,
            flap_threshold=monitoring.flap_threshold,
        )

    def is_failure(self, status: Status) -> bool:
        if status is Status.UNKNOWN:
            return self.alert_on_unknown
        return status is not Status.OK


@dataclass
class Notification:
    """One mail to send: what happened to which incident, with a snapshot of its probes."""

    kind: str  # trigger | update | reminder | resolve
    instance: str
    incident: str  # stable name, e.g. "prod#3"
    seq: int
    opened_at: float
    severity: Status
    mail_number: int  # 0 for the trigger; threads replies to it
    now: float
    probes: list[dict[str, Any]] = field(default_factory=list)  # see _snapshot
    joined: list[str] = field(default_factory=list)  # probes new to the incident in this mail

    @property
    def state_word(self) -> str:
        """The word the subject starts with."""
        return "RESOLVED" if self.kind == "resolve" else self.severity.name


def new_state(instance: str) -> dict[str, Any]:
    return {"version": STATE_VERSION, "instance": instance, "next_seq": 1, "probes": {}, "open": None, "closed": []}


def load_state(path: Path, instance: str) -> dict[str, Any]:
    state = read_json(path, None)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return new_state(instance)
    return state


def save_state(path: Path, state: dict[str, Any]) -> None:
    write_json_atomic(path, state)


def _new_probe() -> dict[str, Any]:
    return {
        "status": "OK",
        "failing": False,
        "failures": 0,
        "successes": 0,
        "streak_since": None,
        "firing": False,
        "firing_since": None,
        "flapping": False,
        "history": [],
        "value": None,
        "unit": "",
        "message": "",
        "checked_at": None,
        "last_good_value": None,
        "last_good_at": None,
        "last_good_message": None,
        "last_failure_status": None,
        "last_failure_message": None,
    }


def _changes(history: list[bool]) -> int:
    return sum(1 for before, after in zip(history, history[1:], strict=False) if before != after)


def _record(entry: dict[str, Any], result: ProbeResult, policy: Policy) -> None:
    """Fold one result into a probe's counters, history and flapping flag."""
    failing = policy.is_failure(result.status)
    entry.update(
        status=result.status.name,
        failing=failing,
        value=result.value,
        unit=str(result.details.get("unit", "")),
        message=result.message,
        checked_at=result.checked_at,
    )
    entry["history"] = (entry["history"] + [failing])[-policy.flap_window :]
    changes = _changes(entry["history"])
    if not entry["flapping"] and changes >= policy.flap_threshold:
        entry["flapping"] = True
    elif entry["flapping"] and changes < max(1, policy.flap_threshold // 2):
        entry["flapping"] = False  # hysteresis: settle clearly before leaving the flapping state
    if failing:
        entry["failures"] += 1
        entry["successes"] = 0
        entry["streak_since"] = entry["streak_since"] or result.checked_at
        entry["last_failure_status"] = result.status.name
        entry["last_failure_message"] = result.message
    else:
        entry["successes"] += 1
        entry["failures"] = 0
        entry["streak_since"] = None
        entry["last_good_value"] = result.value
        entry["last_good_at"] = result.checked_at
        entry["last_good_message"] = result.message


def _severity(entry: dict[str, Any]) -> Status:
    if entry["failing"]:
        return Status[entry["status"]]
    return Status[entry["last_failure_status"] or "WARNING"]


def _snapshot(name: str, entry: dict[str, Any], silenced: bool) -> dict[str, Any]:
    keys = (
        "status", "failing", "firing", "flapping", "value", "unit", "message", "checked_at", "firing_since",
        "streak_since", "last_good_value", "last_good_at", "last_good_message", "last_failure_message",
    )  # fmt: skip
    snapshot = {key: entry.get(key) for key in keys}
    snapshot.update(name=name, severity=_severity(entry).name, silenced=silenced)
    return snapshot


def evaluate(
    state: dict[str, Any],
    results: list[ProbeResult],
    now: float,
    policy: Policy,
    silences: list[Silence] | tuple[Silence, ...] = (),
    active_probes: set[str] | None = None,
) -> tuple[dict[str, Any], list[Notification]]:
    """Fold `results` into `state`; return the new state and the mails to send.

    `active_probes` are the probes still configured; a firing probe no longer among them
    resolves (nobody would ever check it again).
    """
    state = copy.deepcopy(state)
    probes: dict[str, dict[str, Any]] = state["probes"]
    newly_firing: list[str] = []
    resolved: list[str] = []

    for result in results:
        entry = probes.setdefault(result.name, _new_probe())
        _record(entry, result, policy)
        silent = is_silenced(silences, result.name, now)
        if not entry["firing"]:
            recent_failure = entry["failing"] or any(entry["history"][-policy.failures_to_alert :])
            flapping_now = entry["flapping"] and recent_failure
            if (entry["failures"] >= policy.failures_to_alert or flapping_now) and not silent:
                entry["firing"] = True
                entry["firing_since"] = entry["streak_since"] or now
                newly_firing.append(result.name)
        elif entry["successes"] >= policy.successes_to_resolve and not entry["flapping"]:
            entry["firing"] = False
            resolved.append(result.name)

    if active_probes is not None:
        for name, entry in probes.items():
            if entry["firing"] and name not in active_probes:
                entry["firing"] = False
                entry["message"] = f"{entry['message']} (probe no longer configured)".strip()
                resolved.append(name)

    notifications: list[Notification] = []
    incident = state["open"]

    def mail(kind: str, joined: list[str] | None = None) -> None:
        names = incident["probes"]
        snapshots = [_snapshot(name, probes[name], is_silenced(silences, name, now)) for name in names]
        severity = Status[incident["severity"]]
        notifications.append(
            Notification(
                kind=kind,
                instance=state["instance"],
                incident=incident["name"],
                seq=incident["seq"],
                opened_at=incident["opened_at"],
                severity=severity,
                mail_number=incident["mail_count"],
                now=now,
                probes=snapshots,
                joined=joined or [],
            )
        )
        incident["mail_count"] += 1
        incident["last_mail_at"] = now
        incident["mailed_severity"] = severity.name

    def current_severity(include_silenced: bool) -> Status:
        ranked = [
            _severity(probes[name])
            for name in incident["firing"]
            if include_silenced or not is_silenced(silences, name, now)
        ]
        return max(ranked, key=lambda status: status.rank, default=Status[incident["severity"]])

    if newly_firing:
        if incident is None:
            seq = state["next_seq"]
            state["next_seq"] = seq + 1
            incident = state["open"] = {
                "seq": seq,
                "name": f"{state['instance']}#{seq}",
                "opened_at": now,
                "probes": list(newly_firing),
                "firing": list(newly_firing),
                "severity": "OK",
                "mailed_severity": None,
                "mail_count": 0,
                "last_mail_at": None,
            }
            incident["severity"] = current_severity(include_silenced=True).name
            mail("trigger", joined=list(newly_firing))
        else:
            joined = [name for name in newly_firing if name not in incident["firing"]]
            incident["firing"] += joined
            incident["probes"] += [name for name in joined if name not in incident["probes"]]
            mailed = Status[incident["mailed_severity"] or "OK"]
            incident["severity"] = current_severity(include_silenced=True).name
            escalated = current_severity(include_silenced=False).rank > mailed.rank
            late = now - incident["opened_at"] > policy.group_window_s
            if joined and (escalated or late):
                mail("update", joined=joined)

    if incident is not None:
        for name in resolved:
            if name in incident["firing"]:
                incident["firing"].remove(name)
        if not incident["firing"]:
            mail("resolve")
            incident["closed_at"] = now
            state["closed"] = (state["closed"] + [incident])[-CLOSED_KEPT:]
            state["open"] = None
        else:
            if resolved:
                incident["severity"] = current_severity(include_silenced=True).name
            else:
                severity = current_severity(include_silenced=True)
                escalated = current_severity(include_silenced=False).rank > Status[
                    incident["mailed_severity"] or "OK"
                ].rank
                incident["severity"] = severity.name
                if escalated and not (notifications and notifications[-1].seq == incident["seq"]):
                    mail("update")
            due = incident["last_mail_at"] is None or now - incident["last_mail_at"] >= policy.reminder_interval_s
            audible = any(not is_silenced(silences, name, now) for name in incident["firing"])
            if due and audible and not (notifications and notifications[-1].seq == incident["seq"]):
                mail("reminder")
    return state, notifications


def open_incident(state: dict[str, Any]) -> dict[str, Any] | None:
    return state.get("open")
