"""The doctor's safe fixes: restart one service (the `isletops restart` path), remove dangling
images, rotate one oversized container log (its tail is kept under `state/doctor/`). Nothing
here deletes data, images in use, or volumes."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

from isletops.errors import DockerError, IsletOpsError
from monitors import ops_adapter
from monitors.doctor import DoctorContext, Fix
from monitors.doctor.disk import human
from monitors.probes import disk as disk_probe

KEEP_TAIL_BYTES = 10 * 2**20


def apply(context: DoctorContext, fix: Fix) -> str:
    """Apply one fix; returns what happened in a phrase (raises IsletOpsError when it failed)."""
    if fix.kind == "restart":
        ops_adapter.restart_service(context.config, context.instance, fix.target, engine=context.ops())
        return f"{fix.target} restarted and healthy"
    if fix.kind == "prune_dangling":
        try:
            report = context.docker().client.images.prune(filters={"dangling": True})
        except Exception as exc:  # docker.errors.APIError, connection errors
            raise DockerError(f"Docker refused to prune dangling images: {exc}.") from None
        deleted = len(report.get("ImagesDeleted") or [])
        return f"{deleted} image layer(s) removed, {human(report.get('SpaceReclaimed') or 0)} reclaimed"
    if fix.kind == "rotate_log":
        return rotate_log(context, fix.target)
    raise IsletOpsError(f"Unknown fix '{fix.kind}'.")


def _log_path(context: DoctorContext, name: str) -> Path:
    from monitors import probes

    root = disk_probe.docker_root(probes.options("disk", context.config.monitoring))
    for config in (root / "containers").glob("*/config.v2.json"):
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if str(data.get("Name", "")).lstrip("/") == name and data.get("LogPath"):
            return Path(data["LogPath"])
    raise IsletOpsError(f"No json log found for container {name}.")


def rotate_log(context: DoctorContext, name: str) -> str:
    """Keep the last 10 MiB (gzipped, under state/doctor/), then truncate the live log in place
    (Docker keeps writing to the same file)."""
    path = _log_path(context, name)
    size = path.stat().st_size
    keep = context.instance.state_dir / "doctor" / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}.log.gz"
    keep.parent.mkdir(parents=True, exist_ok=True)
    with path.open("rb") as source, gzip.open(keep, "wb") as target:
        source.seek(max(0, size - KEEP_TAIL_BYTES))
        target.write(source.read())
    with path.open("r+b") as live:
        live.truncate(0)
    return f"log of {name} rotated: {human(size)} freed, its last {human(min(size, KEEP_TAIL_BYTES))} kept in {keep}"
