"""Probe `containers`: every service of the instance runs and is healthy, none is in a restart loop.

Reads Docker state through `isletops.docker_engine`. A rising restart count is detected by
comparing with the counts stored at the previous run (`state/probes/containers-restarts.json`).
"""

from __future__ import annotations

from typing import Any

from isletops.errors import IsletOpsError
from isletops.release import COMPONENTS
from monitors.metrics import Measurement
from monitors.result import ProbeContext, ProbeResult, Status, worst
from monitors.state import read_json, write_json_atomic

NAME = "containers"
INTERVAL_S = 60
DEFAULTS: dict[str, Any] = {
    "services": list(COMPONENTS),  # services that must run
    "restart_loop_threshold": 3,  # restarts since the previous run that make a loop CRITICAL
}

_BAD_STATES = {"exited": Status.CRITICAL, "dead": Status.CRITICAL, "missing": Status.CRITICAL,
               "restarting": Status.CRITICAL, "created": Status.CRITICAL, "paused": Status.WARNING}  # fmt: skip


def _verdict(container: Any, previous: dict[str, Any], threshold: int) -> tuple[Status, str]:
    """Status and phrase for one container."""
    if container.state in _BAD_STATES:
        phrase = container.describe()
        if container.state == "restarting" or container.restart_count:
            phrase += f", {container.restart_count} restarts"
        return _BAD_STATES[container.state], phrase
    if container.health == "unhealthy":
        output = (container.last_health_output or "").splitlines()
        detail = f": {output[-1][:120]}" if output else ""
        return Status.CRITICAL, f"{container.service} (unhealthy{detail})"
    before = previous.get(container.name, {}).get("restart_count")
    if before is not None and container.restart_count > before:
        new = container.restart_count - before
        status = Status.CRITICAL if new >= threshold else Status.WARNING
        loop = "restart loop: " if status is Status.CRITICAL else ""
        return status, f"{container.service} ({loop}restarted {new}× since the last check)"
    if container.health == "starting":
        return Status.WARNING, f"{container.service} (health check starting)"
    return Status.OK, ""


def run(context: ProbeContext) -> ProbeResult:
    project = context.instance.project_name
    services = list(context.options["services"])
    try:
        containers = context.docker().project_containers(project, expected=services)
    except IsletOpsError as exc:
        return ProbeResult(NAME, Status.CRITICAL, None, f"cannot read container state: {exc}")
    store = context.samples_dir / "containers-restarts.json"
    previous = read_json(store, {})
    verdicts = [
        (container, *_verdict(container, previous, int(context.options["restart_loop_threshold"])))
        for container in containers
        if container.service in services
    ]
    write_json_atomic(
        store, {c.name: {"restart_count": c.restart_count, "service": c.service} for c in containers if c.name}
    )
    ready = sum(1 for _, status, _ in verdicts if status is Status.OK)
    problems = [phrase for _, status, phrase in verdicts if status is not Status.OK]
    status = worst([status for _, status, _ in verdicts])
    details = {"unit": "services ok", "containers": [c.as_dict() for c in containers], "expected": services}
    if status is Status.OK:
        message = f"{ready}/{len(services)} services running and healthy"
    else:
        message = f"{len(problems)} of {len(services)} services not ok: " + "; ".join(problems)
    measurements = [
        Measurement("services_ready", float(ready), minimum=0.0, maximum=float(len(services))),
        Measurement("services_expected", float(len(services))),
    ] + [
        Measurement("service_restarts", float(container.restart_count), {"service": container.service})
        for container, _status, _phrase in verdicts
        if container.state != "missing"
    ]
    return ProbeResult(NAME, status, float(ready), message, details, measurements=measurements)
