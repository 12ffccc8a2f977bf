"""The deploy side of `isletops status`: the release each service runs (read from the running
containers through the engine, not from `.env` or the history), the last attempt, the lock.

A mixed release (services on different tags) is CRITICAL: it names which service runs what.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from isletops.config import InstanceConfig
from isletops.deploy.run import current_deployment
from isletops.engines.base import Engine
from isletops.history import History, HistoryEntry
from isletops.lock import InstanceLock, LockStatus
from isletops.release import COMPONENTS


@dataclass(frozen=True)
class DeploymentStatus:
    """What runs (per service), what the history says, the last attempt and the lock."""

    running: dict[str, list[str]]  # service -> the tag(s) its running instances carry
    deployed: str  # the history's current release
    previous: str
    last_attempt: HistoryEntry | None
    notes: tuple[str, ...]
    lock: LockStatus

    @property
    def tags(self) -> list[str]:
        """Every tag that runs, in service order, without repeats."""
        return list(dict.fromkeys(tag for tags in self.running.values() for tag in tags))

    @property
    def release(self) -> str:
        """The one release every running service carries ("" when none runs or it is mixed)."""
        return self.tags[0] if len(self.tags) == 1 else ""

    @property
    def mixed(self) -> bool:
        return len(self.tags) > 1

    def mixed_sentence(self) -> str:
        """`MIXED release: backend runs T3; storage, queue, ... run T2`."""
        by_tag: dict[str, list[str]] = {}
        for service, tags in self.running.items():
            for tag in tags:
                by_tag.setdefault(tag, []).append(service)
        parts = [f"{', '.join(services)} run{'s' if len(services) == 1 else ''} {tag}"
                 for tag, services in sorted(by_tag.items(), key=lambda item: len(item[1]))]
        return "MIXED release: " + "; ".join(parts)

    def lines(self) -> list[str]:
        out = []
        if self.mixed:
            out.append(self.mixed_sentence())
        previous = self.previous or "none"
        out.append(f"history: {self.deployed or 'nothing recorded'} deployed (previous good: {previous})")
        if self.release and self.deployed and self.release != self.deployed:
            out.append(f"note: the containers run {self.release}, the history says {self.deployed}")
        if self.last_attempt:
            last = self.last_attempt
            out.append(
                f"last {last.command}: {last.from_tag or 'nothing'} -> {last.to_tag} {last.result} "
                f"at {last.time} by {last.user} ({last.duration_s:.0f} s)"
            )
        if self.lock.held:
            holder = self.lock.details.describe() if self.lock.details else self.lock.problem
            out.append(f"{'STALE lock' if self.lock.stale else 'locked'}: {holder}")
        out += [f"note: {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "mixed": self.mixed,
            "running": self.running,
            "deployed": self.deployed,
            "previous": self.previous,
            "last_attempt": json.loads(self.last_attempt.to_json()) if self.last_attempt else None,
            "notes": list(self.notes),
            "lock": {
                "held": self.lock.held,
                "stale": self.lock.stale,
                "details": self.lock.details.__dict__ if self.lock.details else None,
            },
        }


def deployment_status(instance: InstanceConfig, engine: Engine) -> DeploymentStatus:
    """Read the running release from the engine, and the history and lock of `instance`."""
    deployed, notes = current_deployment(instance)
    entries = History(instance.state_dir, instance.name).read().entries
    return DeploymentStatus(
        running=engine.running_release(COMPONENTS),
        deployed=deployed.current,
        previous=deployed.previous,
        last_attempt=entries[-1] if entries else None,
        notes=tuple(notes),
        lock=InstanceLock(instance.state_dir, instance.name).status(),
    )
