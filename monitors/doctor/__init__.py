"""`isletops doctor`: diagnoses one instance from evidence and says how to fix each problem.

Each area module (`containers`, `disk`, `queue`, `pruner`, `tls`, `gpu`, `drift`) has
`diagnose(context) -> list[Finding]`. A finding carries its severity, evidence (numbers, log
lines), the exact command that fixes it, the runbook section, and optionally a *safe fix* the
doctor may apply itself with `--fix` (restart a service, remove dangling images, rotate an
oversized container log). Findings are ranked worst first; the exit code is 0 (nothing wrong),
1 (warnings) or 2 (something critical). An area that cannot look (Docker down, database
unreachable) is a finding itself, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any

from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import DockerEngine
from isletops.engines import Engine, ServiceState
from isletops.errors import IsletOpsError

log = logging.getLogger(__name__)
AREAS: tuple[str, ...] = ("containers", "disk", "queue", "pruner", "tls", "gpu", "drift")
RUNBOOK = "docs/runbook.md"


class Severity(IntEnum):
    """How bad a finding is; CRITICAL and WARNING set the exit code, INFO is context."""

    INFO = 0
    WARNING = 1
    CRITICAL = 2


@dataclass(frozen=True)
class Fix:
    """A safe fix the doctor can apply itself: `kind` is restart | prune_dangling | rotate_log."""

    kind: str
    target: str  # a service, "" for dangling images, a container name for logs
    description: str


@dataclass
class Finding:
    severity: Severity
    area: str
    title: str
    evidence: list[str] = field(default_factory=list)
    command: str = ""  # the exact command(s) a person runs to fix it
    runbook: str = ""  # anchor in docs/runbook.md
    fix: Fix | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.name
        data["runbook"] = runbook_link(self.runbook) if self.runbook else ""
        return data


def runbook_link(anchor: str) -> str:
    return f"{RUNBOOK}#{anchor}"


@dataclass
class DoctorContext:
    """What the areas read: config, instance, and injectable engine / host Docker / NVML / database URL.

    `engine` runs the instance (compose, swarm or kubernetes: its services, logs, restarts);
    `host_docker` is this host's Docker (images, disk, log files), whatever the engine."""

    config: SiteConfig
    instance: InstanceConfig
    engine: Engine | None = None
    host_docker: DockerEngine | None = None
    nvml: Any = None
    database_url: str = ""
    now: float = field(default_factory=time.time)
    cache: dict[str, Any] = field(default_factory=dict)

    def ops(self) -> Engine:
        if self.engine is None:
            from monitors import ops_adapter

            self.engine = ops_adapter.instance_engine(self.config, self.instance)
        return self.engine

    def docker(self) -> DockerEngine:
        if self.host_docker is None:
            from monitors import ops_adapter

            self.host_docker = ops_adapter.docker_engine()
        return self.host_docker

    def cmd(self, text: str) -> str:
        """A command aimed at this instance: `isletops restart x` -> `isletops -i prod restart x`."""
        return text.replace("isletops ", f"isletops -i {self.instance.name} ")

    def containers(self) -> list[ServiceState]:
        """The instance's services' states, a container, task or pod each (read once per run)."""
        if "containers" not in self.cache:
            from monitors import ops_adapter

            self.cache["containers"] = ops_adapter.service_states(self.ops())
        return list(self.cache["containers"])


def rank(findings: list[Finding]) -> list[Finding]:
    """Worst first; within a severity, in area order (containers first: most fixes start there)."""
    order = {area: index for index, area in enumerate((*AREAS, "config"))}
    return sorted(findings, key=lambda f: (-f.severity, order.get(f.area, len(order)), f.title))


def exit_code(findings: list[Finding]) -> int:
    return int(max((f.severity for f in findings), default=Severity.INFO))


def diagnose(context: DoctorContext, areas: tuple[str, ...] = AREAS) -> list[Finding]:
    """Run every area; an area that fails to look becomes a WARNING finding saying so."""
    findings: list[Finding] = []
    for area in areas:
        module = importlib.import_module(f"monitors.doctor.{area}")
        try:
            findings += module.diagnose(context)
        except IsletOpsError as exc:
            findings.append(Finding(Severity.WARNING, area, f"could not check {area}: {exc.message}",
                                    [exc.hint] if exc.hint else [], runbook="first-look"))  # fmt: skip
        except Exception as exc:  # a bug in one area must not hide the others
            log.debug("doctor area %s crashed:\n%s", area, traceback.format_exc())
            findings.append(Finding(Severity.WARNING, area, f"could not check {area}: {type(exc).__name__}: {exc}",
                                    runbook="first-look"))  # fmt: skip
    return rank(findings)


# -- output ---------------------------------------------------------------------------------------


def format_text(findings: list[Finding], instance: str) -> str:
    """What a person reads at 3 a.m.: a summary line, then each finding with evidence, fix, runbook."""
    counts = {s: sum(1 for f in findings if f.severity is s) for s in Severity}
    if not counts[Severity.CRITICAL] and not counts[Severity.WARNING]:
        head = f"isletops doctor: instance '{instance}' looks healthy"
    else:
        head = (f"isletops doctor: instance '{instance}': {counts[Severity.CRITICAL]} critical, "
                f"{counts[Severity.WARNING]} warning(s)")  # fmt: skip
    lines = [head + (f", {counts[Severity.INFO]} note(s)" if counts[Severity.INFO] else "") + "."]
    for number, finding in enumerate(findings, start=1):
        lines += ["", f"{number}. {finding.severity.name} [{finding.area}] {finding.title}"]
        lines += [f"   evidence: {item}" for item in finding.evidence]
        if finding.command:
            first, *rest = finding.command.splitlines()
            lines.append(f"   fix:      {first}")
            lines += [f"             {line}" for line in rest]
        if finding.fix:
            lines.append(f"   --fix:    {finding.fix.description}")
        if finding.runbook:
            lines.append(f"   runbook:  {runbook_link(finding.runbook)}")
    return "\n".join(lines)


def to_json(findings: list[Finding], instance: str) -> dict[str, Any]:
    return {
        "instance": instance,
        "status": ["OK", "WARNING", "CRITICAL"][exit_code(findings)],
        "exit_code": exit_code(findings),
        "findings": [finding.to_dict() for finding in findings],
    }


# -- safe fixes -----------------------------------------------------------------------------------


@dataclass
class Applied:
    finding: Finding
    done: bool
    outcome: str


def apply_fixes(
    context: DoctorContext, findings: list[Finding], confirm: Callable[[Finding], bool]
) -> list[Applied]:
    """Apply each finding's safe fix that `confirm` agrees to; every applied fix is audited."""
    from monitors import ops_adapter
    from monitors.doctor import fixes

    applied = []
    for finding in findings:
        if finding.fix is None or not confirm(finding):
            continue
        try:
            outcome = fixes.apply(context, finding.fix)
            done = True
        except IsletOpsError as exc:
            outcome, done = f"failed: {exc.message}", False
        ops_adapter.audit(context.instance, f"doctor --fix: {finding.fix.description}: {outcome}")
        applied.append(Applied(finding, done, outcome))
    return applied
