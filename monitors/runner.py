"""One monitoring pass: run the probes, keep their results, update alerts, send mail, ping the
dead-man's switch. `isletops probe` (cron) calls `monitor_pass`; the daemon calls the parts.

Files left behind (readable by people and other commands): `state/probes/<probe>.json` and
`state/probes/last_run.json` (latest results), `state/alerts.json` (alert state),
`state/outbox/` (mails not yet accepted by SMTP).
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from isletops.config import InstanceConfig, SiteConfig
from isletops.errors import IsletOpsError
from monitors import alerts, notify, probes, self_heal, silences, status_page
from monitors.result import ProbeContext, ProbeEngine, ProbeResult, Status, worst
from monitors.state import locked, read_json, write_json_atomic

log = logging.getLogger(__name__)


@dataclass
class PassReport:
    """What one pass did; `status` is the worst probe status (the exit code)."""

    results: list[ProbeResult]
    notifications: list[alerts.Notification]
    delivery: notify.FlushReport | None
    heartbeat: str  # "sent", "off", or why it was not sent

    @property
    def status(self) -> Status:
        return worst([result.status for result in self.results])


def alerts_path(instance: InstanceConfig) -> Path:
    return instance.state_dir / "alerts.json"


def base_context(
    config: SiteConfig,
    instance: InstanceConfig,
    options: dict[str, Any] | None = None,
    engine: ProbeEngine | None = None,
) -> ProbeContext:
    return ProbeContext(config=config, instance=instance, options=options or {}, engine=engine)


def default_probes(config: SiteConfig, instance: InstanceConfig) -> list[str]:
    """Probes a plain pass runs: `enabled: true/false` in the config decides, else the probe does."""
    chosen = []
    for name in probes.NAMES:
        options = probes.options(name, config.monitoring)
        if options["enabled"] is None:
            check = getattr(probes.module(name), "enabled", None)
            wanted = check(base_context(config, instance, options=options)) if check else True
        else:
            wanted = bool(options["enabled"])
        if wanted:
            chosen.append(name)
    return chosen


def parse_only(text: str | None) -> list[str] | None:
    """'a,b' -> ['a', 'b'] (validated); None/'' -> None."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    for name in names:
        probes.module(name)  # raises ConfigError naming the probes
    return names


def run_probe(name: str, context: ProbeContext) -> ProbeResult:
    """Run one probe; a probe that cannot run at all is UNKNOWN with the reason, never a traceback."""
    # The context is shared by the probes of a pass (one Docker client), so set options in place.
    context.options = probes.options(name, context.config.monitoring)
    started = time.monotonic()
    try:
        result = probes.module(name).run(context)
    except IsletOpsError as exc:
        result = ProbeResult(name, Status.UNKNOWN, None, f"probe could not run: {exc}")
    except Exception as exc:  # a bug in a probe must not stop the others
        log.debug("probe %s crashed:\n%s", name, traceback.format_exc())
        result = ProbeResult(name, Status.UNKNOWN, None, f"probe crashed: {type(exc).__name__}: {exc}")
    result.checked_at = result.checked_at or context.now
    result.duration_s = time.monotonic() - started
    return result


def run_probes(
    config: SiteConfig,
    instance: InstanceConfig,
    names: list[str],
    now: float | None = None,
    engine: ProbeEngine | None = None,
) -> list[ProbeResult]:
    """Run `names` in order, sharing one Docker engine / NVML handle between them.
    `now` fixes the clock (tests); `engine` replaces the Docker engine."""
    context = base_context(config, instance, engine=engine)
    results = []
    for name in names:
        context.now = time.time() if now is None else now
        results.append(run_probe(name, context))
    return results


def save_results(instance: InstanceConfig, results: list[ProbeResult]) -> None:
    directory = instance.state_dir / "probes"
    last_run = directory / "last_run.json"
    with locked(last_run):
        latest = read_json(last_run, {})
        for result in results:
            write_json_atomic(directory / f"{result.name}.json", result.to_dict())
            latest[result.name] = result.to_dict()
        write_json_atomic(last_run, latest)
    status_page.record(instance, results, time.time())  # since-when and the e2e series for the page


def latest_results(instance: InstanceConfig) -> dict[str, ProbeResult]:
    raw = read_json(instance.state_dir / "probes" / "last_run.json", {})
    return {name: ProbeResult.from_dict(data) for name, data in raw.items()}


def update_alerts(
    config: SiteConfig, instance: InstanceConfig, results: list[ProbeResult], active: set[str], now: float
) -> list[alerts.Notification]:
    """Fold results into the persisted alert state (under its lock); return the mails to send."""
    path = alerts_path(instance)
    with locked(path):
        state = alerts.load_state(path, instance.name)
        state, notifications = alerts.evaluate(
            state,
            results,
            now,
            alerts.Policy.from_config(config.monitoring),
            silences.list_silences(instance.state_dir, now=now),
            active_probes=active,
        )
        alerts.save_state(path, state)
    return notifications


def ping_heartbeat(url: str, timeout_s: float = 10.0) -> str:
    """Ping the dead-man's switch; returns 'sent' or why not (a failed ping never fails the pass)."""
    if not url:
        return "off"
    try:
        response = requests.get(url, timeout=timeout_s)
    except requests.RequestException as exc:
        return f"failed: {type(exc).__name__}"
    return "sent" if response.status_code < 400 else f"failed: HTTP {response.status_code}"


def monitor_pass(
    config: SiteConfig,
    instance: InstanceConfig,
    only: list[str] | None = None,
    send_alerts: bool = True,
    now: float | None = None,
    engine: ProbeEngine | None = None,
) -> PassReport:
    """Run probes (all default ones, or `only`), save results, alert, mail, heartbeat."""
    probes.validate(config.monitoring)
    enabled = default_probes(config, instance)
    names = only or enabled
    results = run_probes(config, instance, names, now=now, engine=engine)
    save_results(instance, results)
    if not send_alerts:
        return PassReport(results, [], None, "off")
    now = time.time() if now is None else now
    self_heal.heal(config, instance, results, now)  # its mails go out below
    notifications = update_alerts(config, instance, results, set(enabled) | set(names), now)
    delivery = notify.deliver(notifications, instance, config.monitoring, config.mail)
    # The heartbeat says "the monitor works and every alert got out"; mail stuck in the outbox
    # withholds it, so the outside watcher notices what our own mail cannot tell.
    if delivery.pending:
        heartbeat = f"withheld: {delivery.pending} mail(s) wait in the outbox"
    else:
        heartbeat = ping_heartbeat(config.monitoring.heartbeat_url)
    return PassReport(results, notifications, delivery, heartbeat)
