"""Free disk space before a pull: the engine's data root and the instance folder (pure sums plus
one `statvfs` per file system)."""

from __future__ import annotations

import shutil
from pathlib import Path

from isletops.errors import DeployError

# Pulled layers take ~2.5x their compressed size once extracted.
EXTRACTION_FACTOR = 2.5


def existing_ancestor(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def disk_needs(pull_bytes: int, min_free_bytes: int, data_root: Path | None, instance_dir: Path) -> dict[Path, int]:
    """Bytes that must be free per file system path (pure). Paths on the same file system add up."""
    needs: dict[Path, int] = {}
    if data_root is not None:
        needs[data_root] = int(pull_bytes * EXTRACTION_FACTOR) + min_free_bytes
    needs[instance_dir] = needs.get(instance_dir, 0) + min_free_bytes
    return needs


def check_disk_space(needs: dict[Path, int]) -> None:
    """Raise `DeployError` naming the path, free and needed bytes, when a file system is short."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, need in needs.items():
        device = existing_ancestor(path).stat().st_dev
        known_path, known_need = by_device.get(device, (path, 0))
        by_device[device] = (known_path, known_need + need)
    for path, need in by_device.values():
        free = shutil.disk_usage(existing_ancestor(path)).free
        if free < need:
            raise DeployError(
                f"Not enough free disk space on {path} for this deploy: {format_bytes(free)} free, "
                f"{format_bytes(need)} needed.",
                "Nothing was changed; free space (old images, Docker logs, pruner) or lower --min-free-mb, then retry.",
            )
