"""What `isletops probe` prints for Nagios and Icinga: the plugin output of one pass.

The first line is what the core shows and alerts on: `ISLETNET <STATE> - <summary> | <perfdata>`,
with the overall (worst) state, which is also the exit code. The per-probe lines follow as the
plugin's long output. Perfdata follows the plugin guidelines (see `monitors.metrics`).
"""

from __future__ import annotations

from monitors.metrics import perfdata
from monitors.result import ProbeResult, Status, worst

SERVICE = "ISLETNET"


def _text(text: str) -> str:
    """Plugin text on one line, without the `|` that starts perfdata."""
    return " ".join(text.replace("|", "/").split())


def summary(results: list[ProbeResult]) -> str:
    """One probe: its message. Several: how many are OK, or the ones that are not, worst first."""
    if not results:
        return "no probe ran"
    if len(results) == 1:
        return f"{results[0].name}: {_text(results[0].message)}"
    problems = sorted((r for r in results if r.status is not Status.OK), key=lambda r: -r.status.rank)
    if not problems:
        return f"{len(results)} probes OK"
    listed = "; ".join(f"{r.name} {r.status.name}: {_text(r.message)}" for r in problems)
    return f"{len(problems)} of {len(results)} probes not OK: {listed}"


def status_line(results: list[ProbeResult]) -> str:
    """`ISLETNET <STATE> - <summary> | <perfdata>` (no `|` part when nothing was measured)."""
    status = worst([result.status for result in results])
    measured = perfdata(m for result in results for m in result.measurements)
    line = f"{SERVICE} {status.name} - {summary(results)}"
    return f"{line} | {measured}" if measured else line


def probe_line(result: ProbeResult) -> str:
    """One probe's line of the long output (no `|` either: there it would start perfdata too)."""
    return f"{result.status.name:<8} {result.name:<10} {_text(result.message)} ({result.duration_s:.1f} s)"


def unknown_line(reason: str) -> str:
    """The first line for a pass that could not run (bad arguments or configuration)."""
    return f"{SERVICE} {Status.UNKNOWN.name} - {_text(reason)}"
