"""Doctor area `gpu`: NVML (through the `gpu` probe) and the shepherd's log, mapped to the
runbook's actions: Xid 79 / "fallen off the bus" (reboot, then restart the shepherd), ECC errors
(reboot; replace the card when they repeat), a GPU that is not visible (driver, reboot)."""

from __future__ import annotations

import re

from isletops.errors import IsletOpsError
from monitors import ops_adapter, probes
from monitors.doctor import DoctorContext, Finding, Fix, Severity
from monitors.probes import gpu as gpu_probe
from monitors.result import ProbeContext, Status

RUNNER_LOG_LINES = 500
# (pattern in the probe's message, title, command, runbook anchor), most serious first.
RULES: tuple[tuple[re.Pattern[str], str, str, str], ...] = (
    (re.compile(r"fallen off the bus|GPU is lost|Xid 79\b"), "a GPU has fallen off the bus (Xid 79)",
     "sudo dmesg -T | grep -i xid\nsudo reboot                        # the only way back for a lost GPU\n"
     "isletops restart shepherd          # after the reboot, if it does not start by itself",
     "gpu-fell-off-the-bus-xid-79"),
    (re.compile(r"ECC|retired pages|row remapping|Xid (48|63|64|74|92|94|95|119|120)\b"),
     "GPU memory errors (ECC / retired pages / row remapping)",
     "nvidia-smi -q -d ECC,PAGE_RETIREMENT,ROW_REMAPPER\nsudo reboot                        # retires the pages\n"
     "# repeated uncorrected errors after a reboot: call the vendor, the card must be replaced",
     "gpu-memory-errors-ecc"),
    (re.compile(r"expected GPUs visible|a GPU is expected but|cannot count GPUs|sees no GPU|cannot be opened"),
     "an expected GPU is not visible",
     "nvidia-smi                         # is every GPU listed?\nsudo dmesg -T | grep -i -e nvrm -e xid\n"
     "sudo reboot                        # driver or bus trouble", "gpu-not-visible"),
    (re.compile(r"°C|Xid \d+"), "the GPU reports a problem", "nvidia-smi\nsudo dmesg -T | grep -i xid", "alert-gpu"),
)  # fmt: skip


def shepherd_log_findings(context: DoctorContext) -> list[Finding]:
    """GPU trouble the shepherd (the GPU runner) wrote to its log, even while it still runs (on CPU)."""
    from monitors.doctor import containers

    shepherd = next((s for s in context.containers() if s.service == "shepherd"), None)
    if shepherd is None or not shepherd.is_ready:
        return []  # a stopped or unhealthy shepherd: the containers area quotes its log
    try:
        logs = ops_adapter.service_logs(context.ops(), "shepherd", RUNNER_LOG_LINES)
    except IsletOpsError:
        return []
    lines = containers.interesting_lines(logs, containers.CAUSES[0][0])
    if not lines:
        return []
    fix = Fix("restart", "shepherd", "restart shepherd (isletops restart shepherd)")
    command = context.cmd("nvidia-smi\nisletops restart shepherd          # it takes the GPU again")
    evidence = [f"log: {line}" for line in lines]
    title = "the shepherd's log reports GPU errors"
    return [Finding(Severity.WARNING, "gpu", title, evidence, command, "gpu-fell-off-the-bus-xid-79", fix)]


def diagnose(context: DoctorContext) -> list[Finding]:
    return shepherd_log_findings(context) + nvml_findings(context)


def nvml_findings(context: DoctorContext) -> list[Finding]:
    options = probes.options("gpu", context.config.monitoring)
    probe_context = ProbeContext(context.config, context.instance, options, now=context.now, nvml=context.nvml)
    if context.nvml is None and not gpu_probe.enabled(probe_context):
        return []  # no GPU expected and no driver: the shepherd runs on CPU
    result = gpu_probe.run(probe_context)
    if result.status is Status.OK or (result.status is Status.UNKNOWN and not gpu_probe.expected(probe_context)):
        return []
    findings, rest = [], [part.strip() for part in result.message.split(";") if part.strip()]
    for pattern, title, command, anchor in RULES:
        matched = [part for part in rest if pattern.search(part)]
        if not matched:
            continue
        rest = [part for part in rest if part not in matched]
        severity = Severity.WARNING if anchor == "alert-gpu" and result.status is Status.WARNING else Severity.CRITICAL
        fix = Fix("restart", "shepherd", "restart shepherd (isletops restart shepherd)") if anchor != "alert-gpu" \
            else None
        findings.append(Finding(severity, "gpu", title, [f"NVML: {part}" for part in matched],
                                context.cmd(command), anchor, fix))  # fmt: skip
    if rest:
        findings.append(Finding(Severity.WARNING, "gpu", "the GPU probe reports a problem",
                                [f"NVML: {part}" for part in rest], "nvidia-smi", "alert-gpu"))  # fmt: skip
    return findings
