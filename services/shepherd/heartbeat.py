"""The heartbeat file: a worker writes it while its loop is healthy; `healthcheck` reads it.
The content is a small JSON status (for people), the freshness is the signal (for Docker)."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def write_heartbeat(path: str, status: dict[str, Any]) -> None:
    """Replace the file atomically, so the healthcheck never reads half a file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    document = json.dumps({**status, "time": time.time()}, sort_keys=True)
    handle, temporary = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(document)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def heartbeat_age(path: str) -> float | None:
    """Seconds since the heartbeat was written, or None when there is none."""
    try:
        return max(0.0, time.time() - Path(path).stat().st_mtime)
    except FileNotFoundError:
        return None


def read_heartbeat(path: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, ValueError):
        return {}
