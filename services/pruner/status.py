"""The pruner's settings and its local status file: everything the healthcheck needs, and
nothing heavy (no S3 or database client), so `python -m services.pruner.healthcheck` starts fast
even on a loaded host."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.settings import ConfigError, read_number

# Only when ISLETNET_STATE_DIR is unset (tests on a host); images set it. The container's /tmp is its own.
DEFAULT_STATUS_FILE = Path("/tmp/isletnet-pruner/last_run.json")  # nosec B108
DEFAULT_RETENTION_S = 30 * 86400.0
DEFAULT_INTERVAL_S = 3600.0
# Files under jobs/<id>/ with no job row are an upload in progress (inputs are stored before the
# row) or the leftover of a submit whose clean-up failed. A day is far longer than any upload.
DEFAULT_ORPHAN_GRACE_S = 86400.0


# The name the pruner's callers know; the same class every service raises for a bad setting.
PrunerConfigError = ConfigError


@dataclass(frozen=True)
class PrunerSettings:
    """What the pruner reads from its environment (see docs/architecture.md)."""

    retention_s: float = DEFAULT_RETENTION_S
    interval_s: float = DEFAULT_INTERVAL_S
    retry_attempts: int = 3
    retry_delay_s: float = 10.0
    status_file: Path = DEFAULT_STATUS_FILE
    orphan_grace_s: float = DEFAULT_ORPHAN_GRACE_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PrunerSettings:
        env = os.environ if env is None else env
        return cls(
            retention_s=read_number(env, "RETENTION_SECONDS", DEFAULT_RETENTION_S, 0, unit="seconds"),
            interval_s=read_number(env, "PRUNE_INTERVAL_SECONDS", DEFAULT_INTERVAL_S, 1, unit="seconds"),
            retry_attempts=int(read_number(env, "PRUNE_RETRY_ATTEMPTS", 3, 1)),
            retry_delay_s=read_number(env, "PRUNE_RETRY_DELAY_SECONDS", 10.0, 0, unit="seconds"),
            status_file=_status_file(env),
            orphan_grace_s=read_number(env, "ORPHAN_GRACE_SECONDS", DEFAULT_ORPHAN_GRACE_S, 0, unit="seconds"),
        )


def _status_file(env: Mapping[str, str]) -> Path:
    """PRUNER_STATUS_FILE, else `last_run.json` in the image's state folder, else under /tmp."""
    if env.get("PRUNER_STATUS_FILE"):
        return Path(env["PRUNER_STATUS_FILE"])
    if env.get("ISLETNET_STATE_DIR"):
        return Path(env["ISLETNET_STATE_DIR"]) / "pruner" / "last_run.json"
    return DEFAULT_STATUS_FILE


def write_status_file(path: Path, record: Mapping[str, Any]) -> None:
    """Write the record atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(temporary, path)


def read_status_file(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
