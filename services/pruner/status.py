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

from services.common.errors import ServiceError

DEFAULT_STATUS_FILE = Path("/tmp/isletnet-pruner/last_run.json")
DEFAULT_RETENTION_S = 30 * 86400.0
DEFAULT_INTERVAL_S = 3600.0


class PrunerConfigError(ServiceError):
    """A pruner setting in the environment is not usable."""


@dataclass(frozen=True)
class PrunerSettings:
    """What the pruner reads from its environment (see docs/architecture.md)."""

    retention_s: float = DEFAULT_RETENTION_S
    interval_s: float = DEFAULT_INTERVAL_S
    retry_attempts: int = 3
    retry_delay_s: float = 10.0
    status_file: Path = DEFAULT_STATUS_FILE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PrunerSettings:
        env = os.environ if env is None else env
        return cls(
            retention_s=_number(env, "RETENTION_SECONDS", DEFAULT_RETENTION_S, minimum=0),
            interval_s=_number(env, "PRUNE_INTERVAL_SECONDS", DEFAULT_INTERVAL_S, minimum=1),
            retry_attempts=int(_number(env, "PRUNE_RETRY_ATTEMPTS", 3, minimum=1)),
            retry_delay_s=_number(env, "PRUNE_RETRY_DELAY_SECONDS", 10.0, minimum=0),
            status_file=_status_file(env),
        )


def _status_file(env: Mapping[str, str]) -> Path:
    """PRUNER_STATUS_FILE, else `last_run.json` in the image's state folder, else under /tmp."""
    if env.get("PRUNER_STATUS_FILE"):
        return Path(env["PRUNER_STATUS_FILE"])
    if env.get("ISLETNET_STATE_DIR"):
        return Path(env["ISLETNET_STATE_DIR"]) / "pruner" / "last_run.json"
    return DEFAULT_STATUS_FILE


def _number(env: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return float(default)
    try:
        value = float(raw)
    except ValueError:
        raise PrunerConfigError(f"{name}={raw!r} is not a number of seconds; set it to e.g. {default:g}.") from None
    if value < minimum:
        raise PrunerConfigError(f"{name} must be at least {minimum:g}, got {raw}.")
    return value


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
