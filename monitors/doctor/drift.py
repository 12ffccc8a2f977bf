"""Doctor area `drift`: the instance's compose files and managed `.env` settings against what
isletops would write now (`isletops up` rewrites them). A hand edit, a half-written or corrupted
file, or a site config changed since the last `up` shows here, with the differing lines."""

from __future__ import annotations

import difflib

from isletops.config import read_env_file
from monitors import ops_adapter
from monitors.doctor import DoctorContext, Finding, Severity

DIFF_LINES = 8


def diagnose(context: DoctorContext) -> list[Finding]:
    if context.instance.engine != "compose":  # the stack is rendered anew by each deploy, never kept on disk
        managed = ops_adapter.expected_env(context.instance)
        return _env_findings(context, managed) if managed is not None else []
    expected = ops_adapter.expected_files(context.instance)
    if expected is None:
        return [Finding(Severity.INFO, "drift", "the instance was never set up (no compose files)",
                        [f"{context.instance.directory}"], context.cmd("isletops up --tag TAG"),
                        "stack-start-stop-look-restart")]  # fmt: skip
    rendered, managed = expected
    findings = []
    for name, text in rendered.items():
        path = context.instance.directory / name
        try:
            current = path.read_text(errors="replace")
        except OSError as exc:
            current = f"<unreadable: {exc.strerror}>"
        if current == text:
            continue
        diff = [line.rstrip("\n") for line in difflib.unified_diff(
            text.splitlines(), current.splitlines(), "rendered now", str(path), n=0, lineterm="")]  # fmt: skip
        changed = [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        evidence = [f"{path} differs from what isletops renders now ({len(changed)} changed lines)"]
        evidence += [f"diff: {line[:160]}" for line in changed[:DIFF_LINES]]
        findings.append(Finding(Severity.WARNING, "drift", f"{name} was changed by hand or is damaged", evidence,
                                context.cmd("isletops up                     # re-renders and applies"),
                                "config-drift"))  # fmt: skip
    return findings + _env_findings(context, managed)


def _reapply(context: DoctorContext) -> str:
    if context.instance.engine == "compose":
        return "isletops up"
    return f"isletops deploy --tag {read_env_file(context.instance.env_file).get('TAG', 'TAG')}"


def _env_findings(context: DoctorContext, managed: dict[str, str]) -> list[Finding]:
    findings = []
    env = read_env_file(context.instance.env_file)
    differing = [f"{key}: .env has {env.get(key)!r}, the site config says {value!r}"
                 for key, value in managed.items() if env.get(key) != value]  # fmt: skip
    if differing:
        findings.append(Finding(Severity.WARNING, "drift", f"{len(differing)} managed .env setting(s) differ",
                                differing[:DIFF_LINES], context.cmd(_reapply(context)), "config-drift"))  # fmt: skip
    return findings
