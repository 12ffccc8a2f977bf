"""Doctor area `tls`: the public URL's certificate (expiry, trust) and the public URL itself,
read by the `tls` and `http` probes; only where the instance has a public https URL."""

from __future__ import annotations

from monitors import probes
from monitors.doctor import DoctorContext, Finding, Severity
from monitors.result import ProbeContext, Status

_SEVERITY = {Status.CRITICAL: Severity.CRITICAL, Status.WARNING: Severity.WARNING, Status.UNKNOWN: Severity.WARNING}
COMMANDS = {
    "tls": "sudo systemctl status certbot.timer\nsudo certbot renew && sudo systemctl reload nginx",
    "http": "isletops ps\nisletops logs backend --tail 200\nsudo systemctl status nginx",
}


def diagnose(context: DoctorContext) -> list[Finding]:
    findings = []
    for name in ("tls", "http"):
        options = probes.options(name, context.config.monitoring)
        probe_context = ProbeContext(context.config, context.instance, options, now=context.now,
                                     engine=context.host_docker)
        module = probes.module(name)
        check = getattr(module, "enabled", None)
        if options["enabled"] is False or (options["enabled"] is None and check and not check(probe_context)):
            continue
        if name == "http" and not context.instance.public_url:
            continue  # without a public URL the containers area already says what is down
        result = module.run(probe_context)
        if result.status is Status.OK:
            continue
        findings.append(Finding(_SEVERITY[result.status], "tls", f"{name}: {result.message}",
                                [f"{name} probe: {result.message}"], COMMANDS[name], f"alert-{name}"))  # fmt: skip
    return findings
