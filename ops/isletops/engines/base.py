"""The `Engine` protocol: what deploy, rollback, status, restart and the probes ask of an orchestrator.

Engine-neutral data only lives here (`ServiceState`, `ServiceStep`, `ServicePlan`, `HealthCheck`);
no Docker, compose, Swarm or Kubernetes code. An engine is bound to one instance of the site when
it is made (`isletops.engines.engine_for`), so its methods name services, never projects or files.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from isletops import release


class Strategy(enum.StrEnum):
    """How a service moves to a new version."""

    START_FIRST = "start-first"  # new instance beside the old, wait healthy, drain and stop the old
    RECREATE = "recreate"  # stop the old (with its drain timeout), start the new


@dataclass(frozen=True)
class HealthCheck:
    """One health probe result as the engine recorded it."""

    started_at: datetime | None
    exit_code: int
    output: str

    @property
    def failed(self) -> bool:
        return self.exit_code != 0


@dataclass(frozen=True)
class ServiceState:
    """One running unit of a service (a container, a task, a pod), or `missing` when it has none."""

    service: str
    name: str
    state: str  # running | restarting | exited | created | paused | dead | missing
    health: str | None  # healthy | unhealthy | starting | None (no healthcheck)
    restart_count: int
    started_at: datetime | None
    image: str
    exit_code: int | None
    last_health_output: str  # last healthcheck output ("" if none)
    start_period_s: float = 0.0  # health failures before this are not counted (Docker's start_period)
    checks: tuple[HealthCheck, ...] = field(default=(), compare=False)  # recent probes, oldest first

    @property
    def is_ready(self) -> bool:
        """Running, and healthy where a healthcheck exists."""
        return self.state == "running" and self.health in (None, "healthy")

    def describe(self) -> str:
        """One phrase for messages: `backend (running, unhealthy)`."""
        parts = [self.state]
        if self.health:
            parts.append(self.health)
        if self.state in ("exited", "dead") and self.exit_code is not None:
            parts.append(f"exit code {self.exit_code}")
        return f"{self.service} ({', '.join(parts)})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "name": self.name,
            "state": self.state,
            "health": self.health,
            "restart_count": self.restart_count,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "image": self.image,
            "exit_code": self.exit_code,
            "last_health_output": self.last_health_output,
        }


@dataclass(frozen=True)
class ServiceStep:
    """One service of a plan and how it is rolled over."""

    service: str
    strategy: Strategy

    def describe(self, drain_s: int) -> str:
        if self.strategy is Strategy.START_FIRST:
            return f"{self.service}: start the new version beside the old, wait healthy, drain and stop the old"
        return f"{self.service}: recreate (stop with {drain_s} s drain), wait healthy"


@dataclass(frozen=True)
class ServicePlan:
    """Which services a release has, how each moves, and in which dependency levels."""

    steps: tuple[ServiceStep, ...]
    levels: tuple[tuple[str, ...], ...]

    def step(self, service: str) -> ServiceStep:
        return next(step for step in self.steps if step.service == service)


@dataclass(frozen=True)
class HealthPolicy:
    """When the one health wait gives up (see `isletops.engines.health.wait_healthy`)."""

    timeout_s: float
    failed_checks: int = 3  # consecutive failed checks after the start period that end the wait
    poll_s: float = 1.0
    # A new instance's failed checks count from `grace_s` after its start when that comes before
    # its own start period (Docker's `start_period` only forgives failures until the first success,
    # so it is long; the deploy may judge a new instance sooner from its check log).
    grace_s: float | None = None


def running_tags(states: Iterable[ServiceState], services: Sequence[str]) -> dict[str, list[str]]:
    """The release tag(s) the running instances of each service carry (`Engine.running_release`)."""
    found: dict[str, list[str]] = {service: [] for service in services}
    for state in states:
        if state.state == "running" and state.service in found:
            tag = release.tag_of_image(state.image) or state.image or "?"
            if tag not in found[state.service]:
                found[state.service].append(tag)
    return found


class Engine(Protocol):
    """An orchestrator running one instance. Errors are `IsletOpsError` subclasses with a sentence."""

    name: str

    # -- the deploy lock beyond this host -----------------------------------------------------
    def take_cluster_lock(self, holder: str, by_hand: bool = False) -> Callable[[], None]:
        """Take the lock every operator of this instance sees (a Swarm config, a Kubernetes Lease)
        besides the instance's file lock; `LockError` names the holder. Returns its release. One
        host (compose): the file lock is all there is, and this does nothing. `by_hand`: a hold
        by `isletops lock acquire`, which lasts until `release_cluster_lock` (no lease expiry)."""

    def cluster_lock_holder(self) -> str:
        """Who holds that lock now, as its holder wrote it ("" when free, or on one host)."""

    def release_cluster_lock(self, holder: str) -> bool:
        """Give the lock back if `holder` holds it (True when it did); anyone else's hold stays."""

    # -- host and images --------------------------------------------------------------------
    def data_root(self) -> Path | None:
        """Where images are unpacked on this host (None: unknown or remote)."""

    def image_present(self, ref: str) -> bool: ...

    def pull(self, ref: str) -> None: ...

    def push(self, ref: str) -> None: ...

    def tag(self, source: str, target: str) -> None: ...

    def prune_releases(self, registry: str, keep: int) -> list[str]:
        """Remove release images older than the newest `keep`; returns notes (what failed)."""

    # -- a release --------------------------------------------------------------------------
    def plan(self, tag: str, registry: str) -> ServicePlan:
        """The services of release `tag` and how each is rolled over (renders in memory, writes nothing)."""

    def verify(self, tag: str, registry: str) -> None:
        """The checks a real run makes before it changes anything, beyond what `plan` read (Swarm:
        every node can pull from the registry, through a one-shot service removed afterwards).
        A dry run does not make them. Raises `ConfigError` with a sentence."""

    def prepare(self, tag: str, registry: str) -> None:
        """Make the instance ready to run `tag` (render and write its configuration)."""

    def runs_image(self, service: str, ref: str) -> bool:
        """True when `service` has exactly one ready instance and it runs the very image `ref` names."""

    def running_release(self, services: Sequence[str]) -> dict[str, list[str]]:
        """The release tag(s) each service's running instances carry (image tag or label)."""

    # -- rolling over -----------------------------------------------------------------------
    def start_beside(self, service: str) -> list[str]:
        """Start one instance of the prepared version beside the running ones; returns the old names."""

    def replace(self, services: Sequence[str], drain_s: int) -> None:
        """Stop the old instances (`drain_s` to finish) and start the prepared version, in place."""

    def wait_healthy(self, services: Sequence[str], policy: HealthPolicy, only: Sequence[str] = ()) -> None:
        """Wait until every instance of `services` (or only the named instances) is ready; raise
        `HealthFailed` with the failing instance's own health output and logs otherwise."""

    def drain(self, instance_name: str) -> None:
        """Take one old instance out of name resolution, so no new request is sent to it."""

    def stop(self, instance_name: str, drain_s: int) -> None:
        """Stop (`drain_s` to finish in-flight work) and remove one instance; gone is fine."""

    # -- reading ----------------------------------------------------------------------------
    def service_states(self, services: Sequence[str] = ()) -> list[ServiceState]:
        """Every instance of the instance's services, plus a `missing` entry per named service without one."""

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        """The last `tail` log lines of a service (of one of its instances when named)."""

    def show_logs(self, services: Sequence[str], tail: int, follow: bool = False) -> str:
        """What `isletops logs` prints: the last `tail` lines of each of `services`, every line
        marked with where it came from; with `follow`, streamed to this process's stdout until
        interrupted, and "" returned."""

    def restart(self, services: Sequence[str], policy: HealthPolicy) -> list[ServiceState]:
        """Restart services in place and wait until they are healthy again."""
