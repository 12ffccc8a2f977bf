"""Probe `containers`: every service of the instance runs and is healthy, none is in a restart loop.

Compose: reads Docker state through `isletops.docker_engine`. A rising restart count is detected
by comparing with the counts stored at the previous run (`state/probes/containers-restarts.json`).

Swarm (`engine: swarm`): reads the services and their tasks through the swarm engine -- desired
vs running tasks (running means healthy), the newest task error of a service that is short, a
paused update -- and every node: a node that is not ready (down: its heartbeats stopped) is
CRITICAL even while Swarm has moved its tasks elsewhere.
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
    if context.instance.engine == "swarm":
        return run_swarm(context)
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


def swarm_verdict(replicas: list[Any], node_problems: list[str], expected: int) -> ProbeResult:
    """The probe's result from the swarm's readings (pure: `ServiceReplicas` and node phrases)."""
    short = [r for r in replicas if not r.ok]
    ready = len(replicas) - len(short)
    problems = [f"{r.service} {r.running}/{r.desired} running" + (f" ({r.problem})" if r.problem else "")
                for r in short] + node_problems
    status = Status.CRITICAL if problems else Status.OK
    if status is Status.OK:
        message = f"{ready}/{expected} services running all their tasks healthy; every node ready"
    else:
        message = f"{len(problems)} problem(s) on the swarm: " + "; ".join(problems)
    details = {"unit": "services ok", "expected": expected, "nodes_not_ready": node_problems,
               "services": [{"service": r.service, "desired": r.desired, "running": r.running,
                             "problem": r.problem} for r in replicas]}
    measurements = [
        Measurement("services_ready", float(ready), minimum=0.0, maximum=float(expected)),
        Measurement("services_expected", float(expected)),
        Measurement("swarm_nodes_not_ready", float(len(node_problems))),
    ] + [Measurement("service_tasks_running", float(r.running), {"service": r.service}) for r in replicas]
    return ProbeResult(NAME, status, float(ready), message, details, measurements=measurements)


def run_swarm(context: ProbeContext) -> ProbeResult:
    from isletops.engines.swarm import SwarmEngine
    from isletops.swarm_command import node_problems

    services = list(context.options["services"])
    engine = SwarmEngine(context.config, context.instance)
    try:
        nodes = engine.nodes()
        replicas = engine.replicas_report(services)
    except IsletOpsError as exc:
        return ProbeResult(NAME, Status.CRITICAL, None, f"cannot read the swarm's services: {exc}")
    return swarm_verdict(replicas, node_problems(nodes), len(services))
