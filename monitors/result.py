"""What a probe returns and what it is given: `Status`, `ProbeResult`, `ProbeContext`.

Probes only read; everything they need (config, the instance, their options, a place for the
samples they keep between runs, an injectable Docker engine / NVML module / clock) comes in the
context, so unit tests hand them fakes and integration tests real things.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from isletops.config import InstanceConfig, SiteConfig
from isletops.errors import IsletOpsError
from monitors.metrics import Measurement

if TYPE_CHECKING:
    from isletops.docker_engine import ContainerState


class ProbeEngine(Protocol):
    """What the probes read from the container engine (`isletops.docker_engine.DockerEngine` has it)."""

    def project_containers(self, project: str, expected: Iterable[str] = ()) -> list[ContainerState]: ...

    def data_root(self) -> Path | None: ...


class Status(IntEnum):
    """Nagios-compatible states; the value is the exit code of `isletops probe`."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def rank(self) -> int:
        """How bad: OK < UNKNOWN < WARNING < CRITICAL (the aggregation check_multi uses)."""
        return {Status.OK: 0, Status.UNKNOWN: 1, Status.WARNING: 2, Status.CRITICAL: 3}[self]


def worst(statuses: list[Status] | tuple[Status, ...]) -> Status:
    """The worst of several states (OK when there are none)."""
    return max(statuses, key=lambda status: status.rank, default=Status.OK)


@dataclass
class ProbeResult:
    """One probe's verdict. `message` is one line a human reads; `value` the measured number."""

    name: str
    status: Status
    value: float | None = None
    message: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    checked_at: float = 0.0
    duration_s: float = 0.0
    measurements: list[Measurement] = field(default_factory=list)  # perfdata and Prometheus samples

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.name,
            "value": self.value,
            "message": self.message,
            "details": self.details,
            "checked_at": self.checked_at,
            "duration_s": round(self.duration_s, 3),
            "measurements": [measurement.to_dict() for measurement in self.measurements],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProbeResult:
        return cls(
            name=data["name"],
            status=Status[data["status"]],
            value=data.get("value"),
            message=data.get("message", ""),
            details=data.get("details") or {},
            checked_at=float(data.get("checked_at") or 0.0),
            duration_s=float(data.get("duration_s") or 0.0),
            measurements=_measurements(data.get("measurements") or []),
        )


def _measurements(raw: list[dict[str, Any]]) -> list[Measurement]:
    """Stored measurements; one of a quantity no longer catalogued (older state) is left out."""
    kept = []
    for data in raw:
        with contextlib.suppress(IsletOpsError, TypeError):
            kept.append(Measurement.from_dict(data))
    return kept


@dataclass
class ProbeContext:
    """Everything a probe may use. `options` are this probe's settings merged over its defaults."""

    config: SiteConfig
    instance: InstanceConfig
    options: dict[str, Any] = field(default_factory=dict)
    now: float = field(default_factory=time.time)
    engine: ProbeEngine | None = None  # None: a DockerEngine on first use (unit tests pass a fake)
    nvml: Any = None  # the pynvml module (or a fake in unit tests)

    @property
    def samples_dir(self) -> Path:
        """Where probes keep what they compare against next time (restart counts, disk samples)."""
        return self.instance.state_dir / "probes"

    def docker(self) -> ProbeEngine:
        """The Docker engine wrapper, created on first use (probes that need no Docker never import it)."""
        if self.engine is None:
            from isletops.docker_engine import DockerEngine

            self.engine = DockerEngine()
        return self.engine
