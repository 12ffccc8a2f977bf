"""Doctor area `disk`: how full the data directory and Docker's data root are, and *what* fills
them — uploads per day (from the queue), training images (the pruner's record), the data
folders, container logs, dangling images and volumes — so the finding names the runbook's
cause: a burst of uploads, a failing pruner, too many training images, Docker logs. Thresholds
are the disk probe's (`monitoring.probes.disk`), so the doctor and the alerts agree."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from isletops.errors import IsletOpsError
from monitors.doctor import DoctorContext, Finding, Fix, Severity
from monitors.probes import disk as disk_probe
from monitors.probes import pruner as pruner_probe

DANGLING_WARNING_BYTES = 1 * 2**30


def human(size: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


def folder_size(path: Path) -> int:
    """Bytes under `path` (files only, no symlinks followed); 0 when it does not exist."""
    total = 0
    for root, _dirs, files in os.walk(path, onerror=lambda _: None):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def breakdown(directory: Path) -> list[tuple[str, int]]:
    """Sizes of the folders directly under `directory`, biggest first."""
    try:
        children = [child for child in directory.iterdir() if child.is_dir() and not child.is_symlink()]
    except OSError:
        return []
    return sorted(((child.name, folder_size(child)) for child in children), key=lambda item: -item[1])


def _options(context: DoctorContext) -> dict[str, Any]:
    from monitors import probes

    return probes.options("disk", context.config.monitoring)


def _docker_facts(context: DoctorContext, root: Path) -> dict[str, Any]:
    """Container logs and dangling images; {} when Docker cannot be asked."""
    try:
        dangling = context.docker().client.images.list(filters={"dangling": True})
        images_root = Path(context.docker().data_root() or root)
    except Exception:  # Docker down or refusing: the filesystem facts still count
        return {}
    return {
        "logs": disk_probe.container_logs(root, context.instance.project_name),
        "dangling": [(image.short_id, int(image.attrs.get("Size") or 0)) for image in dangling],
        "images_device": disk_probe._existing(images_root).stat().st_dev,  # noqa: SLF001
    }


def volume_sizes(root: Path) -> list[tuple[str, int]]:
    """Docker volumes by size (`<data-root>/volumes/<name>/_data`), biggest first; read from disk,
    since `docker system df` takes a minute on a host with many images."""
    sizes = [(folder.parent.name, folder_size(folder)) for folder in sorted((root / "volumes").glob("*/_data"))]
    return sorted(sizes, key=lambda item: -item[1])


def _training(context: DoctorContext) -> dict[str, Any]:
    try:
        states = context.containers()
    except IsletOpsError:
        return {}
    pruner = next((s for s in states if s.service == "pruner"), None)
    return pruner_probe.parse_record(pruner.last_health_output) or {} if pruner else {}


def _uploads_per_day(context: DoctorContext) -> list[tuple[str, int, int]]:
    from monitors.doctor import queue

    try:
        return queue.uploads_per_day(context)
    except IsletOpsError:
        return []


def diagnose(context: DoctorContext) -> list[Finding]:
    options = _options(context)
    root = disk_probe.docker_root(options, _Probe(context))  # type: ignore[arg-type]
    data_dir = context.instance.local_data_dir
    findings: list[Finding] = []
    facts = _docker_facts(context, root)
    training = _training(context)
    seen: set[int] = set()
    for label, path in (("data dir", data_dir), ("docker root", root)):
        real = disk_probe._existing(path)  # noqa: SLF001 - the probe's own "nearest existing parent"
        device = real.stat().st_dev
        if device in seen:
            continue
        seen.add(device)
        measured = disk_probe.usage(real)
        if measured["percent"] < float(options["warning_percent"]):
            continue
        critical = measured["percent"] >= float(options["critical_percent"])
        severity = Severity.CRITICAL if critical else Severity.WARNING
        evidence = [f"{label} {real}: {measured['percent']:.0f}% used, {human(measured['available'])} free "
                    f"of {human(measured['total'])}"]  # fmt: skip
        parts = breakdown(data_dir) if data_dir.exists() and data_dir.stat().st_dev == device else []
        evidence += [f"{name}/: {human(size)}" for name, size in parts[:5]]
        uploads = _uploads_per_day(context)
        evidence += [f"uploads {day}: {jobs} jobs, {images} images" for day, jobs, images in uploads[:5]]
        # Docker's logs and images only fill the filesystem Docker's data root is on.
        on_docker = disk_probe._existing(root).stat().st_dev == device  # noqa: SLF001
        here = dict(facts) if on_docker else {}
        if facts.get("images_device") != device:  # the images live on another filesystem
            here.pop("dangling", None)
        if on_docker:
            logs = sum(entry["bytes"] for entry in here.get("logs", []))
            evidence.append(f"container logs of this instance: {human(logs)}")
            if "dangling" in here:
                evidence.append(f"dangling images: {human(sum(size for _, size in here['dangling']))}")
            evidence += [f"volume {name}: {human(size)}" for name, size in volume_sizes(root)[:3] if size > 0]
        cause = _cause(parts, uploads, training, here)
        evidence.append(f"likely cause: {cause}")
        findings.append(Finding(severity, "disk", f"{label} is {measured['percent']:.0f}% full ({cause})", evidence,
                                context.cmd(_FIXES[cause]), "disk-full-free-space-now"))  # fmt: skip
    findings += _logs_findings(context, facts, float(options["log_warning_mb"]) * 2**20)
    findings += _dangling_findings(context, facts)
    training_bytes = training.get("training_bytes")
    if isinstance(training_bytes, int | float) and training_bytes > float(options["training_warning_gb"]) * 2**30:
        findings.append(Finding(
            Severity.WARNING, "disk", f"training images take {human(training_bytes)}",
            [f"{training.get('training_images', '?')} training images, {human(training_bytes)} (pruner record)"],
            context.cmd("isletops training export --output training-$(date +%F).zip"), "training-export",
        ))  # fmt: skip
    return findings


class _Probe:
    """Just enough of a ProbeContext for `disk_probe.docker_root` to ask Docker."""

    def __init__(self, context: DoctorContext) -> None:
        self.context = context

    def docker(self) -> Any:
        return self.context.docker()


_FIXES = {
    "a burst of uploads": "isletops probe --only disk --json     # how fast it fills; the pruner frees old jobs\n"
    "isletops restart pruner                # prune now instead of at the next interval",
    "the pruner is failing": "isletops logs pruner --tail 200\nisletops restart pruner",
    "too many training images": "isletops training export --output training-$(date +%F).zip",
    "Docker logs": "isletops up --force-recreate           # applies log rotation from /etc/docker/daemon.json",
    "dangling images": "docker image prune -f",
    "unknown": "isletops probe --only disk --json\nsudo du -xh --max-depth=2 <path> | sort -h | tail",
}


def _cause(parts: list[tuple[str, int]], uploads: list[tuple[str, int, int]], training: dict[str, Any],
           facts: dict[str, Any]) -> str:  # fmt: skip
    """The runbook's cause that the numbers point at."""
    if training.get("last_error") or training.get("ok") is False:
        return "the pruner is failing"
    logs = sum(entry["bytes"] for entry in facts.get("logs", []))
    dangling = sum(size for _, size in facts.get("dangling", []))
    storage = next((size for name, size in parts if name == "storage"), 0)
    training_bytes = training.get("training_bytes") or 0
    if training_bytes and training_bytes >= max(storage, 1) / 2:
        return "too many training images"
    if len(uploads) >= 2 and uploads[0][1] >= 3 * max(1, sum(u[1] for u in uploads[1:]) / (len(uploads) - 1)):
        return "a burst of uploads"
    if logs > max(storage, dangling):
        return "Docker logs"
    if dangling > storage:
        return "dangling images"
    return "a burst of uploads" if storage else "unknown"


def _logs_findings(context: DoctorContext, facts: dict[str, Any], limit: float) -> list[Finding]:
    """Container logs over the disk probe's `log_warning_mb`: rotation is off."""
    big = [entry for entry in facts.get("logs", []) if entry["bytes"] > limit]
    return [
        Finding(Severity.WARNING, "disk", f"container log of {entry['name']} is {human(entry['bytes'])}",
                [f"{entry['name']}: {human(entry['bytes'])} of json log (rotation off?)"],
                context.cmd("isletops up --force-recreate           # recreate with log rotation"),
                "disk-full-free-space-now", Fix("rotate_log", entry["name"], f"rotate the log of {entry['name']}"))
        for entry in big
    ]  # fmt: skip


def _dangling_findings(context: DoctorContext, facts: dict[str, Any]) -> list[Finding]:
    dangling = facts.get("dangling", [])
    total = sum(size for _, size in dangling)
    if not dangling:
        return []
    severity = Severity.WARNING if total > DANGLING_WARNING_BYTES else Severity.INFO
    evidence = [f"{len(dangling)} dangling image(s), {human(total)}"]
    fix = Fix("prune_dangling", "", f"remove {len(dangling)} dangling image(s), {human(total)}")
    title = f"{len(dangling)} dangling image(s) take {human(total)}"
    return [Finding(severity, "disk", title, evidence, "docker image prune -f", "dangling-images-and-volumes", fix)]
