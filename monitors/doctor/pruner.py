"""Doctor area `pruner`: the pruner's own record (published by its health check): when it last
succeeded, its last error, and whether it runs at all. A stale record means old job images pile
up and the disk fills."""

from __future__ import annotations

from monitors.doctor import DoctorContext, Finding, Fix, Severity
from monitors.probes import pruner as pruner_probe

WARNING_AGE_S = 6 * 3600
CRITICAL_AGE_S = 48 * 3600


def diagnose(context: DoctorContext) -> list[Finding]:
    state = next((s for s in context.containers() if s.service == "pruner"), None)
    if state is None or state.state == "missing":
        return []  # the containers area reports a missing service
    record = pruner_probe.parse_record(state.last_health_output) or {}
    restart = context.cmd("isletops logs pruner --tail 200\nisletops restart pruner")
    fix = Fix("restart", "pruner", "restart pruner (isletops restart pruner)")
    if not record:
        if state.state == "running" and state.health == "unhealthy":
            output = " ".join((state.last_health_output or "no output").split())[:200]
            return [Finding(Severity.WARNING, "pruner", "the pruner is unhealthy and publishes no record",
                            [f"health check said: {output}"], restart, "alert-pruner", fix)]  # fmt: skip
        return []
    success = pruner_probe._timestamp(record.get("last_success_at"))  # the probe's own reading
    error = record.get("last_error")
    evidence = [f"record: last success {record.get('last_success_at') or 'never'}, "
                f"last error {error or 'none'}, deleted {record.get('deleted_jobs', '?')} jobs"]  # fmt: skip
    age = context.now - success if success else None
    if age is None or age > WARNING_AGE_S:
        severity = Severity.CRITICAL if age is None or age > CRITICAL_AGE_S else Severity.WARNING
        since = "has never succeeded" if age is None else f"last succeeded {age / 3600:.1f} h ago"
        if error:
            evidence.append(f"last error: {str(error)[:200]}")
        return [Finding(severity, "pruner", f"the pruner's record is stale: it {since}", evidence, restart,
                        "alert-pruner-has-not-succeeded-for-n-hours--pruner-unhealthy", fix)]  # fmt: skip
    if record.get("ok") is False and error:
        return [Finding(Severity.INFO, "pruner", "the pruner's latest pass failed (an earlier one succeeded)",
                        [*evidence, f"last error: {str(error)[:200]}"], restart, "pruner-record")]  # fmt: skip
    return []
