"""Doctor area `containers`: each service's state, restart count and logs, matched against the
runbook's causes of a failed container: the shepherd lost the GPU, an exception in
postprocessing, backend network trouble, a crash-looping image, a deploy in progress.

The states and logs come through the instance's engine, so the same judgement holds for a
compose container, a Swarm task or a pod. On Swarm the area also reads what only a cluster
has: nodes that are down and services short of tasks, with Swarm's own reason (the newest
task error: `no suitable node`, a failed pull)."""

from __future__ import annotations

import re

from isletops import release
from isletops.engines import ServiceState
from isletops.engines.swarm import SwarmEngine
from isletops.errors import IsletOpsError
from isletops.swarm_command import node_problems
from monitors import ops_adapter
from monitors.doctor import DoctorContext, Finding, Fix, Severity

LOG_LINES = 200
EVIDENCE_LINES = 4
CRASH_LOOP_RESTARTS = 3
RECENT_START_S = 600  # restarted this recently after several restarts: still looping
# Log patterns -> (cause, runbook anchor). First match wins; evidence quotes the matching lines.
CAUSES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"CUDA|NVML|nvidia|GPU is lost|Xid|cudaError|no CUDA-capable", re.I),
     "the shepherd lost the GPU", "gpu-fell-off-the-bus-xid-79"),
    (re.compile(r"postprocess", re.I), "an exception in postprocessing", "alert-containers"),
    (re.compile(r"Connection refused|could not connect|Name or service not known|Temporary failure in name "
                r"resolution|timed out|EndpointConnectionError|OperationalError|ConnectionError", re.I),
     "network trouble reaching storage or the queue", "alert-containers"),
)  # fmt: skip
_ERRORISH = re.compile(r"error|exception|traceback|fatal|killed|panic", re.I)


def interesting_lines(text: str, pattern: re.Pattern[str] | None = None, limit: int = EVIDENCE_LINES) -> list[str]:
    """The last `limit` log lines matching `pattern` (default: error-looking lines), trimmed."""
    wanted = pattern or _ERRORISH
    lines = [" ".join(line.split())[:200] for line in text.splitlines() if wanted.search(line)]
    return lines[-limit:]


def cause_of(text: str) -> tuple[str, str, list[str]]:
    """(cause, runbook anchor, evidence lines) from a service's logs; unknown cause: ('', '', [])."""
    for pattern, cause, anchor in CAUSES:
        lines = interesting_lines(text, pattern)
        if lines:
            return cause, anchor, lines
    return "", "", []


def _logs(context: DoctorContext, service: str) -> str:
    try:
        return ops_adapter.service_logs(context.ops(), service, LOG_LINES)
    except IsletOpsError:
        return ""


def _state_phrase(state: ServiceState) -> str:
    if state.state != "running":  # Docker keeps the last health status of a stopped container: noise
        code = f", exit code {state.exit_code}" if state.exit_code is not None else ""
        return f"{state.service} ({state.state}{code})"
    phrase = state.describe()
    if state.last_health_output and state.health == "unhealthy":
        phrase += f"; health check said: {' '.join(state.last_health_output.split())[:160]}"
    return phrase


def judge(context: DoctorContext, state: ServiceState, logs: str, lock_holder: str) -> Finding | None:
    """One finding for one container, or None when it is fine."""
    service = state.service
    crash_loop = is_crash_looping(state, context.now)
    if state.is_ready and not crash_loop:
        return None
    cause, anchor, lines = cause_of(logs)
    evidence = [_state_phrase(state), f"restarted {state.restart_count} times by Docker"]
    evidence += [f"log: {line}" for line in (lines or interesting_lines(logs))]
    if lock_holder:
        evidence.append(f"a deploy holds the lock: {lock_holder}")
    if crash_loop:
        title = f"{service} is crash-looping" + (f": {cause}" if cause else "")
        command = context.cmd(f"isletops logs {service} --tail 200\nisletops history\nisletops rollback"
                              "                  # when the current release crashes on start")  # fmt: skip
        return Finding(Severity.CRITICAL, "containers", title, evidence, command, "a-service-is-crash-looping")
    title = f"{service} is " + ("unhealthy" if state.state == "running" else state.state)
    title += f": {cause}" if cause else ""
    command = context.cmd(f"isletops restart {service}")
    if anchor == "gpu-fell-off-the-bus-xid-79":
        command += "\nnvidia-smi                         # is the GPU still listed? if not: sudo reboot"
    fix = None if lock_holder else Fix("restart", service, f"restart {service} (isletops restart {service})")
    return Finding(Severity.CRITICAL, "containers", title, evidence, command, anchor or "alert-containers", fix)


def is_crash_looping(state: ServiceState, now: float) -> bool:
    """Docker restarts it right now, or it restarted several times and the last start is recent."""
    if state.state == "restarting":
        return True
    if state.restart_count < CRASH_LOOP_RESTARTS:
        return False
    started = state.started_at.timestamp() if state.started_at else None
    return not state.is_ready or (started is not None and now - started < RECENT_START_S)


def diagnose(context: DoctorContext) -> list[Finding]:
    found = ops_adapter.lock_status(context.instance)
    holder = ""
    if found.held:
        holder = found.details.describe() if found.details else found.problem
    findings = []
    if found.held:
        severity = Severity.WARNING if found.stale else Severity.INFO
        title = "a stale deploy lock is left behind" if found.stale else "a deploy or a person holds the lock"
        command = context.cmd("isletops history\nisletops lock release") if found.stale else ""
        findings.append(Finding(severity, "containers", title, [holder], command, "when-something-went-wrong"))
    states = context.containers()
    engine = context.ops()
    short: set[str] = set()  # Swarm services short of tasks: judged by Swarm's reason, not per task
    if isinstance(engine, SwarmEngine):
        swarm, short = swarm_findings(context, engine)
        findings += swarm
    missing = [state.service for state in states if state.state == "missing" and state.service not in short]
    if missing:
        findings.append(Finding(Severity.CRITICAL, "containers", f"{len(missing)} service(s) have no container",
                                [f"instance {context.instance.name} ({engine.name}) runs nothing for: "
                                 f"{', '.join(missing)}"],
                                context.cmd("isletops up"), "stack-start-stop-look-restart"))  # fmt: skip
    for state in states:
        if state.state == "missing" or state.service in short:
            continue
        logs = "" if state.is_ready and state.restart_count < CRASH_LOOP_RESTARTS else _logs(context, state.service)
        finding = judge(context, state, logs, holder)
        if finding:
            findings.append(finding)
    return findings


def swarm_findings(context: DoctorContext, engine: SwarmEngine) -> tuple[list[Finding], set[str]]:
    """Nodes that are not ready, and services running fewer tasks than they want (with the
    newest task's error, which is Swarm's reason); and the names of those services."""
    findings, short = [], set()
    for problem in node_problems(engine.nodes()):
        findings.append(Finding(Severity.CRITICAL, "containers", problem,
                                [problem, "Swarm reschedules its replicated tasks on nodes that match their placement"],
                                "docker node ls                     # on a manager: which nodes are Down\n"
                                "docker node ps NODE                # what it ran",
                                "swarm-a-node-is-down"))  # fmt: skip
    for replicas in engine.replicas_report(release.COMPONENTS):
        if replicas.ok:
            continue
        short.add(replicas.service)
        stack_service = engine.command.service_name(replicas.service)
        findings.append(Finding(Severity.CRITICAL, "containers",
                                f"{replicas.service} runs {replicas.running} of {replicas.desired} task(s)",
                                [f"{stack_service}: {replicas.problem or 'tasks missing'}"],
                                f"docker service ps --no-trunc {stack_service}   # Swarm's reason, per task\n"
                                + context.cmd(f"isletops restart {replicas.service}"),
                                "swarm-a-task-that-cannot-be-placed"))  # fmt: skip
    return findings, short
