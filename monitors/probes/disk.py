"""Probe `disk`: free space on the data directory and the Docker data root, when they fill up,
and what takes the space (container logs, training images).

Usage thresholds give WARNING/CRITICAL; a least-squares line through the samples of the last
`forecast_window_s` (kept in `state/probes/disk-samples.json`) forecasts the time to full, so
"full in 6 h" warns while usage is still below the threshold.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from isletops.errors import IsletOpsError
from monitors.metrics import Measurement
from monitors.probes import pruner
from monitors.result import ProbeContext, ProbeResult, Status, worst
from monitors.state import read_json, write_json_atomic

NAME = "disk"
INTERVAL_S = 300
DEFAULTS: dict[str, Any] = {
    "paths": [],  # default: the instance data dir and the Docker data root
    "docker_root": "",  # default: data-root from /etc/docker/daemon.json, else /var/lib/docker
    "daemon_json": "/etc/docker/daemon.json",
    "warning_percent": 80.0,
    "critical_percent": 90.0,
    "forecast_window_s": 6 * 3600,
    "forecast_min_span_s": 900,  # need samples spanning this long before forecasting
    "forecast_min_samples": 3,
    "forecast_warning_s": 24 * 3600,  # full sooner than this: WARNING
    "forecast_critical_s": 2 * 3600,  # full sooner than this: CRITICAL
    "log_warning_mb": 1024.0,  # one container's json log bigger than this: WARNING (no rotation?)
    "training_warning_gb": 50.0,  # training images bigger than this: WARNING (export them)
}
MAX_SAMPLES = 2000


def docker_root(options: dict[str, Any], context: ProbeContext | None = None) -> Path:
    """The Docker data root: the option, else what Docker says, else daemon.json's data-root."""
    if options["docker_root"]:
        return Path(options["docker_root"])
    if context is not None:
        try:
            answer = context.docker().data_root()
        except (IsletOpsError, AttributeError):  # Docker down: the file still knows
            answer = None
        if answer:
            return Path(answer)
    try:
        configured = json.loads(Path(options["daemon_json"]).read_text()).get("data-root")
    except (OSError, ValueError, AttributeError):
        configured = None
    return Path(configured or "/var/lib/docker")


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (a data dir not created yet still has a disk)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def usage(path: Path) -> dict[str, Any]:
    """Like df: used and available bytes (available excludes root's reserve) and percent used."""
    stat = os.statvfs(path)
    total = stat.f_blocks * stat.f_frsize
    used = (stat.f_blocks - stat.f_bfree) * stat.f_frsize
    available = stat.f_bavail * stat.f_frsize
    percent = 100.0 * used / (used + available) if used + available else 0.0
    return {"total": total, "used": used, "available": available, "percent": round(percent, 2)}


def seconds_to_full(samples: list[list[float]], available_now: float) -> float | None:
    """Least-squares slope of used bytes over time -> seconds until `available_now` is gone.

    None when the disk is not filling (slope <= 0) or there are too few samples.
    """
    if len(samples) < 2:
        return None
    times = [sample[0] for sample in samples]
    used = [sample[1] for sample in samples]
    mean_t = sum(times) / len(times)
    mean_u = sum(used) / len(used)
    spread = sum((t - mean_t) ** 2 for t in times)
    if spread <= 0:
        return None
    slope = sum((t - mean_t) * (u - mean_u) for t, u in zip(times, used, strict=True)) / spread
    if slope <= 0:
        return None
    return available_now / slope


def _human(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 72 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def _gib(size: float) -> str:
    return f"{size / 2**30:.1f} GiB" if size >= 2**30 else f"{size / 2**20:.0f} MiB"


def container_logs(root: Path, project: str) -> list[dict[str, Any]]:
    """Sizes of this project's container json logs under the Docker data root (readable as root)."""
    found = []
    for config in sorted((root / "containers").glob("*/config.v2.json")):
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        labels = (data.get("Config") or {}).get("Labels") or {}
        if labels.get("com.docker.compose.project") != project:
            continue
        size = sum(log.stat().st_size for log in config.parent.glob("*-json.log*") if log.is_file())
        found.append({"name": str(data.get("Name", "")).lstrip("/"), "bytes": size})
    return sorted(found, key=lambda entry: -entry["bytes"])


def _check_path(label: str, path: Path, context: ProbeContext, history: dict[str, Any]) -> dict[str, Any]:
    options = context.options
    real = _existing(path)
    measured = usage(real)
    key = str(real)
    samples = [s for s in history.get(key, []) if context.now - s[0] <= float(options["forecast_window_s"])]
    samples = [s for s in samples if s[0] < context.now] + [[context.now, measured["used"], measured["available"]]]
    history[key] = samples[-MAX_SAMPLES:]
    outcome: dict[str, Any] = {"label": label, "path": key, **measured, "status": Status.OK, "full_in_s": None}
    percent = measured["percent"]
    if percent >= float(options["critical_percent"]):
        outcome.update(status=Status.CRITICAL, phrase=f"{label} {key} {percent:.0f}% full")
    elif percent >= float(options["warning_percent"]):
        outcome.update(status=Status.WARNING, phrase=f"{label} {key} {percent:.0f}% full")
    span = samples[-1][0] - samples[0][0]
    if len(samples) >= int(options["forecast_min_samples"]) and span >= float(options["forecast_min_span_s"]):
        full_in = seconds_to_full(samples, measured["available"])
        outcome["full_in_s"] = None if full_in is None else round(full_in)
        if full_in is not None and full_in < float(options["forecast_warning_s"]):
            status = Status.CRITICAL if full_in < float(options["forecast_critical_s"]) else Status.WARNING
            if status.rank > outcome["status"].rank:
                outcome.update(status=status, phrase=f"{label} {key} {percent:.0f}% full, full in {_human(full_in)}")
            else:
                outcome["phrase"] += f", full in {_human(full_in)}"
    return outcome


def run(context: ProbeContext) -> ProbeResult:
    options = context.options
    root = docker_root(options, context)
    targets = [("path", Path(p)) for p in options["paths"]] or [
        ("data dir", context.instance.local_data_dir),
        ("docker root", root),
    ]
    store = context.samples_dir / "disk-samples.json"
    history = read_json(store, {})
    outcomes: list[dict[str, Any]] = []
    seen: set[int] = set()
    for label, path in targets:
        real = _existing(path)
        device = real.stat().st_dev
        if device in seen:  # same filesystem as an earlier target: one sample, one verdict
            continue
        seen.add(device)
        outcomes.append(_check_path(label, path, context, history))
    write_json_atomic(store, history)

    extra: list[tuple[Status, str]] = []
    logs = container_logs(root, context.instance.project_name)
    big_logs = [entry for entry in logs if entry["bytes"] > float(options["log_warning_mb"]) * 2**20]
    if big_logs:
        listed = ", ".join(f"{entry['name']} {_gib(entry['bytes'])}" for entry in big_logs[:3])
        extra.append((Status.WARNING, f"container logs too big: {listed} (log rotation off?)"))
    record = pruner.last_record(context) or {}
    training_bytes = record.get("training_bytes")
    if isinstance(training_bytes, int | float) and training_bytes > float(options["training_warning_gb"]) * 2**30:
        images = record.get("training_images", "?")
        extra.append((Status.WARNING, f"training images take {_gib(training_bytes)} ({images} images): export them"))

    status = worst([outcome["status"] for outcome in outcomes] + [status for status, _ in extra])
    fullest = max(outcomes, key=lambda outcome: outcome["percent"])
    problems = [outcome["phrase"] for outcome in outcomes if outcome["status"] is not Status.OK]
    problems += [phrase for _, phrase in extra]
    if problems:
        message = "; ".join(problems)
    else:
        # A trend of months is noise on a busy filesystem, not news.
        forecasts = [o["full_in_s"] for o in outcomes if o["full_in_s"] and o["full_in_s"] < 90 * 86400]
        trend = f", full in {_human(min(forecasts))} at this rate" if forecasts else ", not filling"
        message = f"fullest {fullest['label']} {fullest['path']} at {fullest['percent']:.0f}%{trend}"
    details = {
        "unit": "%",
        "filesystems": [{**o, "status": o["status"].name} for o in outcomes],
        "container_logs": logs[:10],
        "training": {k: v for k, v in (record or {}).items() if k.startswith("training")},
    }
    measurements = [m for outcome in outcomes for m in _measurements(outcome, options)]
    if isinstance(training_bytes, int | float):
        measurements.append(
            Measurement("training_images", float(training_bytes), warn=float(options["training_warning_gb"]) * 2**30)
        )
    return ProbeResult(NAME, status, fullest["percent"], message, details, measurements=measurements)


def _measurements(outcome: dict[str, Any], options: dict[str, Any]) -> list[Measurement]:
    """Used ratio, free bytes and (when known) the forecast of one file system."""
    where = {"path": outcome["path"]}
    found = [
        Measurement("disk_used", outcome["percent"] / 100, where, warn=float(options["warning_percent"]) / 100,
                    crit=float(options["critical_percent"]) / 100),
        Measurement("disk_free", float(outcome["available"]), where, minimum=0.0, maximum=float(outcome["total"])),
    ]  # fmt: skip
    if outcome["full_in_s"] is not None:
        warn, crit = float(options["forecast_warning_s"]), float(options["forecast_critical_s"])
        found.append(Measurement("disk_full_in", float(outcome["full_in_s"]), where, warn=warn, crit=crit))
    return found
