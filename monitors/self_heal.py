"""Guarded self-healing, the acting half: after a monitoring pass (cron or daemon), restart the
services `monitors.healing` says to restart, through the path `isletops restart` takes, then
write every action to the audit log (`state/audit.log`) and mail it.

Each action is one mail of its own (kind `heal`, subject `HEALED ...` or `CRITICAL ... gave up`),
threaded under the open incident when there is one; the incident mails list the actions too
(`notify.render` reads `events_since`). The budget caps mails like it caps restarts.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from isletops.config import InstanceConfig, SiteConfig
from isletops.engines import Engine
from isletops.errors import IsletOpsError
from monitors import healing, notify, ops_adapter
from monitors.result import ProbeResult
from monitors.state import locked, read_json

log = logging.getLogger(__name__)
CONTAINERS_PROBE = "containers"


def state_path(instance: InstanceConfig) -> Path:
    return healing.state_path(instance.state_dir)


def clock(timestamp: float) -> str:
    """`03:12` (UTC), the way the mails name times."""
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%H:%M")


def _lock_holder(instance: InstanceConfig) -> str:
    found = ops_adapter.lock_status(instance)
    if not found.held:
        return ""
    return found.details.describe() if found.details else (found.problem or "unknown holder")


def heal(
    config: SiteConfig, instance: InstanceConfig, results: list[ProbeResult], now: float | None = None,
    engine: Engine | None = None,
) -> list[dict[str, Any]]:
    """Act on this pass's containers result; returns the events recorded (and mailed, audited)."""
    policy = config.monitoring.self_heal
    result = next((r for r in results if r.name == CONTAINERS_PROBE), None)
    if not policy.enabled or result is None or "containers" not in result.details:
        return []
    now = time.time() if now is None else now
    observations = [healing.observe(container) for container in result.details["containers"]]
    path = state_path(instance)
    with locked(path, blocking=False) as owned:
        if not owned:  # another pass is healing this instance right now
            return []
        state = healing.load_state(path)
        state, decisions = healing.decide(state, observations, now, policy, _lock_holder(instance))
        healing.save_state(path, state)  # the budget is spent before acting: a crash never gives a free retry
        events = [_act(config, instance, decision, engine, state) for decision in decisions]
        healing.save_state(path, state)
    for event in events:
        ops_adapter.audit(instance, f"self-heal: {event['text']}", user="isletops-monitor")
        notify.enqueue(instance, render_mail(event, instance, config))
    return events


def _act(
    config: SiteConfig, instance: InstanceConfig, decision: healing.Decision, engine: Engine | None,
    state: dict[str, Any],
) -> dict[str, Any]:
    service, started = decision.service, time.time()
    if decision.action == healing.GIVE_UP:
        return healing.add_event(state, started, service, "gave_up", f"{service}: {decision.reason}")
    if decision.action == healing.HOLD:
        return healing.add_event(state, started, service, "held", f"{service}: {decision.reason}")
    try:
        ops_adapter.restart_service(config, instance, service, engine=engine)
    except IsletOpsError as exc:
        text = f"restarted {service} at {clock(started)} ({decision.reason}); not healthy afterwards: {exc.message}"
        return healing.add_event(state, started, service, "restart_failed", text)
    healthy = time.time()
    text = f"restarted {service} at {clock(started)} ({decision.reason}), healthy again at {clock(healthy)}"
    return healing.add_event(state, started, service, "restarted", text)


def render_mail(event: dict[str, Any], instance: InstanceConfig, config: SiteConfig) -> EmailMessage:
    """One plain-text mail for one self-healing action."""
    mail = config.mail
    word = "HEALED" if event["kind"] == "restarted" else "CRITICAL" if event["kind"] != "held" else "WARNING"
    incident = (read_json(instance.state_dir / "alerts.json", {}) or {}).get("open") or {}
    message = EmailMessage()
    message["Subject"] = " ".join(f"{word} [isletnet {instance.name}] self-healing: {event['text']}".split())[:200]
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = formatdate(event["at"], usegmt=True)
    domain = mail.sender.rpartition("@")[2].strip("> ") if "@" in mail.sender else socket.getfqdn()
    message["Message-ID"] = make_msgid("isletops.heal", domain=domain)
    message["X-IsletOps-Kind"] = "heal"
    message["X-IsletOps-State"] = word
    if incident:
        message["X-IsletOps-Incident"] = str(incident.get("name", ""))
    budget = config.monitoring.self_heal
    lines = [
        f"IsletNet instance '{instance.name}': {event['text']}.",
        "",
        f"Self-healing restarts a service that stays exited or unhealthy for {budget.after_checks} checks, "
        f"at most {budget.max_restarts} times in {healing.minutes(budget.window_s)}.",
    ]
    if event["kind"] in ("gave_up", "restart_failed"):
        lines += [
            "It will not restart this service again until it has been seen working. Look at it now:",
            f"  isletops -i {instance.name} logs {event['service']} --tail 200",
            f"  isletops -i {instance.name} doctor",
            f"  isletops -i {instance.name} restart {event['service']}",
            "A crash-looping release needs a rollback, not a restart: isletops -i "
            f"{instance.name} rollback",
        ]
    lines += ["", f"Audit log: {instance.state_dir / 'audit.log'}",
              f"Sent by isletops on {socket.gethostname()} at {notify._when(event['at'])}."]  # noqa: SLF001
    message.set_content("\n".join(lines) + "\n")
    return message
