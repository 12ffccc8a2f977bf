"""Probe `pruner`: the pruner ran successfully recently enough.

Contract with the pruner (docs/architecture.md, "Monitoring"): its container healthcheck fails
when the last successful run is too old, and prints one JSON line, e.g.
`{"last_success_at": "2026-11-25T08:00:00Z", "last_error": null, "interval_s": 3600,
"deleted_jobs": 12, "training_images": 40, "training_bytes": 123456789}`. The probe reads it
from the container's last health output through `isletops.docker_engine` (no S3 access, no
service imports); the disk probe reuses the training figures.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from isletops.errors import IsletOpsError
from monitors.metrics import Measurement
from monitors.result import ProbeContext, ProbeResult, Status

NAME = "pruner"
INTERVAL_S = 900
DEFAULTS: dict[str, Any] = {
    "service": "pruner",
    "warning_age_s": 6 * 3600,  # no successful run for this long: WARNING
    "critical_age_s": 48 * 3600,  # ... for this long: CRITICAL (the disk fills meanwhile)
}


def parse_record(output: str) -> dict[str, Any] | None:
    """The last line of `output` that is a JSON object, or None."""
    for line in reversed((output or "").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                return record
    return None


def _timestamp(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


def _container(context: ProbeContext) -> Any:
    service = context.options.get("service", DEFAULTS["service"])
    states = context.docker().project_containers(context.instance.project_name, expected=[service])
    return next(state for state in states if state.service == service)


def last_record(context: ProbeContext) -> dict[str, Any] | None:
    """The pruner's last status record, or None when it cannot be read (used by the disk probe)."""
    try:
        return parse_record(_container(context).last_health_output)
    except (IsletOpsError, StopIteration, AttributeError):
        return None


def _age(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def run(context: ProbeContext) -> ProbeResult:
    options = context.options
    try:
        container = _container(context)
    except IsletOpsError as exc:
        return ProbeResult(NAME, Status.CRITICAL, None, f"cannot read the pruner's state: {exc}")
    if container.state != "running":
        return ProbeResult(NAME, Status.CRITICAL, None, f"pruner is not running: {container.describe()}")
    record = parse_record(container.last_health_output) or {}
    details: dict[str, Any] = {"unit": "h since last success", "record": record, "health": container.health}
    success_at = _timestamp(record.get("last_success_at"))
    if success_at is None:
        if container.health == "unhealthy":
            lines = (container.last_health_output or "no output").strip().splitlines() or ["no output"]
            output = str(record.get("last_error") or lines[-1])[:160]
            return ProbeResult(NAME, Status.CRITICAL, None, f"pruner unhealthy: {output}", details)
        if container.health == "healthy":
            return ProbeResult(NAME, Status.OK, None, "pruner healthy (its healthcheck checks its last run)", details)
        return ProbeResult(NAME, Status.UNKNOWN, None, "pruner has published no last-run record yet", details)
    age = max(0.0, context.now - success_at)
    value = round(age / 3600, 2)
    measurements = [
        Measurement("pruner_last_success", success_at),
        Measurement("pruner_last_success_age", round(age, 1), warn=float(options["warning_age_s"]),
                    crit=float(options["critical_age_s"]), minimum=0.0),
    ]  # fmt: skip
    error = record.get("last_error")
    suffix = f"; last error: {str(error)[:160]}" if error else ""
    if age > float(options["critical_age_s"]):
        message = f"no successful prune for {_age(age)}{suffix}"
        return ProbeResult(NAME, Status.CRITICAL, value, message, details, measurements=measurements)
    if age > float(options["warning_age_s"]) or container.health == "unhealthy":
        message = f"last successful prune {_age(age)} ago{suffix}"
        return ProbeResult(NAME, Status.WARNING, value, message, details, measurements=measurements)
    deleted = record.get("deleted_jobs")
    tail = f", deleted {deleted} jobs" if deleted is not None else ""
    if record.get("ok") is False and error:  # one failed pass after a recent success: say so, no alarm
        tail += f"; the latest pass failed: {str(error)[:160]}"
    message = f"last successful prune {_age(age)} ago{tail}"
    return ProbeResult(NAME, Status.OK, value, message, details, measurements=measurements)
