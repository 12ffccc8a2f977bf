"""`FakeEngine`: the `isletops.engines.Engine` protocol in memory, for unit tests of the deploy core.

Containers are `ServiceState`s whose image is the release image of a tag. A service named in
`broken[tag]` never becomes healthy on that tag (its health checks fail). `on_call(method, args)`
runs before every engine call, so a test can send itself a signal at any phase. The real thing is
`ComposeEngine`, proven by the integration tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from isletops.engines.base import HealthPolicy, ServicePlan, ServiceState, ServiceStep, Strategy
from isletops.engines.health import HealthFailed, not_healthy
from isletops.errors import LockError
from isletops.release import COMPONENTS, image_name, tag_of_image

LEVELS: tuple[tuple[str, ...], ...] = (
    ("storage", "queue"), ("backend", "shepherd", "pruner"), ("frontend",), ("edge",),
)
START_FIRST = frozenset({"backend", "frontend"})


class FakeEngine:
    name = "fake"

    def __init__(self, registry: str = "r.test:5000", broken: dict[str, set[str]] | None = None) -> None:
        self.registry = registry
        self.broken = broken or {}
        self.containers: list[ServiceState] = []
        self.present: set[str] = set()
        self.prepared: tuple[str, str] | None = None
        self.calls: list[tuple[str, tuple[object, ...]]] = []
        self.on_call: Callable[[str, tuple[object, ...]], None] | None = None
        self.root: Path | None = None
        self.same_image: dict[str, str] = {}  # image ref -> the ref whose image it is (same image id)
        self.cluster_holder = ""  # who holds the cluster lock ("" free)
        self._serial = 0

    # -- test helpers -----------------------------------------------------------------------

    def run_release(self, tag: str, services: Sequence[str] = COMPONENTS) -> None:
        """Make one healthy container per service run `tag` (as after a good deploy)."""
        self.containers = [c for c in self.containers if c.service not in services]
        for service in services:
            self.containers.append(self._container(service, tag, healthy=True))

    def tags(self) -> dict[str, list[str]]:
        return self.running_release(COMPONENTS)

    def calls_besides_the_lock(self) -> list[tuple[str, tuple[object, ...]]]:
        """Every call but taking and releasing the cluster lock (a refused deploy still takes it)."""
        return [call for call in self.calls if call[0] not in ("take_cluster_lock", "release_cluster_lock")]

    def method_calls(self, method: str) -> list[tuple[object, ...]]:
        return [args for name, args in self.calls if name == method]

    def _call(self, method: str, *args: object) -> None:
        self.calls.append((method, args))
        if self.on_call is not None:
            self.on_call(method, args)

    def _container(self, service: str, tag: str, healthy: bool | None = None) -> ServiceState:
        self._serial += 1
        ok = service not in self.broken.get(tag, set()) if healthy is None else healthy
        return ServiceState(
            service=service, name=f"p-{service}-{self._serial}", state="running",
            health="healthy" if ok else "unhealthy", restart_count=0, started_at=datetime.now(UTC),
            image=image_name(service, tag, self.registry), exit_code=None,
            last_health_output="" if ok else f"{service} on {tag} does not answer",
        )

    # -- Engine -----------------------------------------------------------------------------

    def data_root(self) -> Path | None:
        self._call("data_root")
        return self.root

    def image_present(self, ref: str) -> bool:
        return ref in self.present

    def pull(self, ref: str) -> None:
        self._call("pull", ref)
        self.present.add(ref)

    def push(self, ref: str) -> None:
        self._call("push", ref)

    def tag(self, source: str, target: str) -> None:
        self._call("tag", source, target)
        self.present.add(target)

    def prune_releases(self, registry: str, keep: int) -> list[str]:
        self._call("prune_releases", registry, keep)
        return []

    def plan(self, tag: str, registry: str) -> ServicePlan:
        steps = tuple(ServiceStep(s, Strategy.START_FIRST if s in START_FIRST else Strategy.RECREATE)
                      for s in COMPONENTS)
        return ServicePlan(steps, LEVELS)

    def take_cluster_lock(self, holder: str, by_hand: bool = False) -> Callable[[], None]:
        self._call("take_cluster_lock", holder)
        if self.cluster_holder and self.cluster_holder != holder:
            raise LockError(f"Another operator holds the cluster's lock: {self.cluster_holder}.", "Wait for it.")
        self.cluster_holder = holder

        def release() -> None:
            self.release_cluster_lock(holder)

        return release

    def cluster_lock_holder(self) -> str:
        return self.cluster_holder

    def release_cluster_lock(self, holder: str) -> bool:
        self._call("release_cluster_lock", holder)
        if self.cluster_holder != holder:
            return False
        self.cluster_holder = ""
        return True

    def verify(self, tag: str, registry: str) -> None:
        self._call("verify", tag, registry)

    def prepare(self, tag: str, registry: str) -> None:
        self._call("prepare", tag, registry)
        self.prepared = (tag, registry)

    def runs_image(self, service: str, ref: str) -> bool:
        running = [c for c in self.containers if c.service == service]
        same = self.same_image.get
        return len(running) == 1 and running[0].is_ready and same(running[0].image, running[0].image) == same(ref, ref)

    def running_release(self, services: Sequence[str]) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {service: [] for service in services}
        for container in self.containers:
            tag = tag_of_image(container.image) or container.image
            if container.service in found and tag not in found[container.service]:
                found[container.service].append(tag)
        return found

    def _prepared_tag(self) -> str:
        assert self.prepared is not None, "prepare() must come before a rollover"
        return self.prepared[0]

    def start_beside(self, service: str) -> list[str]:
        self._call("start_beside", service)
        old = [c.name for c in self.containers if c.service == service]
        self.containers.append(self._container(service, self._prepared_tag()))
        return old

    def replace(self, services: Sequence[str], drain_s: int) -> None:
        self._call("replace", tuple(services), drain_s)
        for service in services:
            self.containers = [c for c in self.containers if c.service != service]
            self.containers.append(self._container(service, self._prepared_tag()))

    def wait_healthy(self, services: Sequence[str], policy: HealthPolicy, only: Sequence[str] = ()) -> None:
        self._call("wait_healthy", tuple(services), tuple(only))
        for service in services:
            states = [c for c in self.containers if c.service == service and (not only or c.name in only)]
            bad = [c for c in states if not c.is_ready]
            if bad:
                failure = not_healthy(bad[0], "unhealthy", bad)
                failure.details = "\n".join(f"Last log lines of {c.name}:\n  {c.last_health_output}" for c in bad)
                raise failure

    def drain(self, instance_name: str) -> None:
        self._call("drain", instance_name)

    def stop(self, instance_name: str, drain_s: int) -> None:
        self._call("stop", instance_name, drain_s)
        self.containers = [c for c in self.containers if c.name != instance_name]

    def service_states(self, services: Sequence[str] = ()) -> list[ServiceState]:
        chosen = list(services or COMPONENTS)
        states = [c for c in self.containers if c.service in chosen]
        present = {c.service for c in states}
        states += [ServiceState(s, "", "missing", None, 0, None, "", None, "") for s in chosen if s not in present]
        return states

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        return f"log of {instance_name or service}\n"

    def show_logs(self, services: Sequence[str], tail: int, follow: bool = False) -> str:
        self._call("show_logs", tuple(services), tail, follow)
        return "".join(f"{service} | {self.logs(service, tail)}" for service in services)

    def restart(self, services: Sequence[str], policy: HealthPolicy) -> list[ServiceState]:
        self._call("restart", tuple(services))
        return self.service_states(services)


__all__ = ["FakeEngine", "HealthFailed"]
