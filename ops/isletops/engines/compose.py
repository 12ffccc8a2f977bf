"""`ComposeEngine`: the `Engine` protocol on one host with Docker Compose (today's behaviour).

It renders the instance's compose files (`isletops.stack`), builds every command line with the
pure `ComposeCommand` and runs it through the Docker SDK wrapper `DockerEngine`. Services roll
over start-first when compose lets two containers of them run side by side (no fixed name, no
host port, no state of their own); the others are recreated. Dependency levels come from
`depends_on`.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from isletops import image_prune, release, stack
from isletops.config import InstanceConfig, SiteConfig, read_env_file
from isletops.docker_engine import DockerEngine
from isletops.engines.base import HealthPolicy, ServicePlan, ServiceState, ServiceStep, Strategy, running_tags
from isletops.engines.compose_command import ComposeCommand
from isletops.engines.health import HealthFailed, wait_healthy
from isletops.errors import DeployError, IsletOpsError

# Services that keep state or hold a GPU are recreated (stop old, start new); the rest may run
# twice for a moment, so they start-first when compose lets them (no fixed name or host port).
STATEFUL_SERVICES = frozenset({"storage", "queue", "shepherd", "pruner"})
LOG_TAIL_LINES = 20

log = logging.getLogger(__name__)


def service_strategies(spec: dict[str, Any], services: Sequence[str] = release.COMPONENTS) -> list[ServiceStep]:
    """How each service is rolled over, from the rendered compose `services:` mapping."""
    steps = []
    for service in services:
        config = spec.get(service) or {}
        start_first = service not in STATEFUL_SERVICES and not config.get("container_name") and not config.get("ports")
        steps.append(ServiceStep(service, Strategy.START_FIRST if start_first else Strategy.RECREATE))
    return steps


def dependency_levels(spec: dict[str, Any], services: Sequence[str] = release.COMPONENTS) -> list[list[str]]:
    """Group services so each group depends only on earlier groups (compose `depends_on`).

    Without `depends_on` the order of `services` is kept, one per level. A cycle is an error.
    """
    if not any((spec.get(s) or {}).get("depends_on") for s in services):
        return [[s] for s in services]
    depends = {}
    for service in services:
        raw = (spec.get(service) or {}).get("depends_on") or []
        depends[service] = [d for d in (raw if isinstance(raw, list) else list(raw)) if d in services]
    level: dict[str, int] = {}

    def level_of(service: str, seen: tuple[str, ...] = ()) -> int:
        if service in seen:
            raise DeployError(f"The compose files have a dependency cycle: {' -> '.join((*seen, service))}.")
        if service not in level:
            level[service] = 1 + max((level_of(d, (*seen, service)) for d in depends[service]), default=-1)
        return level[service]

    for service in services:
        level_of(service)
    return [[s for s in services if level[s] == n] for n in range(max(level.values()) + 1)]


def merged_services(texts: Sequence[str]) -> dict[str, Any]:
    """The merged `services:` mapping of compose documents (later ones override keys)."""
    merged: dict[str, Any] = {}
    for text in texts:
        document = yaml.safe_load(text) or {}
        for name, spec in (document.get("services") or {}).items():
            merged.setdefault(name, {}).update(spec or {})
    return merged


def plan_from_spec(spec: dict[str, Any]) -> ServicePlan:
    """The service plan of a rendered compose spec (pure)."""
    return ServicePlan(
        steps=tuple(service_strategies(spec)), levels=tuple(tuple(level) for level in dependency_levels(spec))
    )


class ComposeEngine:
    """One instance run by Docker Compose on this host."""

    name = "compose"

    def __init__(self, site: SiteConfig, instance: InstanceConfig, docker: DockerEngine | None = None) -> None:
        self.site = site
        self.instance = instance
        self.docker = docker or DockerEngine()

    @property
    def project(self) -> str:
        return self.instance.project_name

    def command(self) -> ComposeCommand:
        return self.docker.compose_cli().for_project(self.project, stack.compose_files(self.instance))

    def _run(self, argv: list[str], what: str, capture: bool = True) -> subprocess.CompletedProcess:
        """Run one built compose command line (its own session: a Ctrl-C reaches only us); the
        instance's env file is passed so a stray shell variable never wins."""
        return self.docker.run_compose(argv, self.project, self.instance.directory,
                                       read_env_file(self.instance.env_file), capture=capture, what=what)

    def take_cluster_lock(self, holder: str, by_hand: bool = False) -> Callable[[], None]:
        """One host: the instance's file lock is the whole lock."""
        return lambda: None

    def cluster_lock_holder(self) -> str:
        return ""

    def release_cluster_lock(self, holder: str) -> bool:
        return False

    # -- host and images --------------------------------------------------------------------

    def data_root(self) -> Path | None:
        return self.docker.data_root()

    def image_present(self, ref: str) -> bool:
        return self.docker.image_exists(ref)

    def pull(self, ref: str) -> None:
        self.docker.pull_image(ref)

    def push(self, ref: str) -> None:
        self.docker.push_image(ref)

    def tag(self, source: str, target: str) -> None:
        self.docker.tag_image(source, target)

    def prune_releases(self, registry: str, keep: int) -> list[str]:
        pruned = image_prune.prune_images(self.site, registry, keep, self.docker)
        notes = [f"could not remove {ref}: {why}" for ref, why in pruned.failed.items()]
        if pruned.removed:
            notes.insert(0, f"removed {len(pruned.removed)} image(s) of releases older than the newest {keep}")
        return notes

    # -- a release --------------------------------------------------------------------------

    def plan(self, tag: str, registry: str) -> ServicePlan:
        rendered = stack.render_compose_files(
            self.instance, stack.gpu_enabled(self.instance), stack.extra_labels_from_env()
        )
        return plan_from_spec(merged_services(list(rendered.values())))

    def verify(self, tag: str, registry: str) -> None:
        """Nothing beyond what `plan` read: this host pulls the images itself (`pull`)."""

    def prepare(self, tag: str, registry: str) -> None:
        stack.prepare_instance(self.site, self.instance, tag, registry=registry, engine=self.docker)

    def runs_image(self, service: str, ref: str) -> bool:
        running = [s for s in self.service_states([service]) if s.service == service and s.state != "missing"]
        if len(running) != 1 or not running[0].is_ready or not running[0].image:
            log.debug("%s will be rolled over: %s", service, [s.describe() for s in running] or "no container")
            return False
        try:
            same = self.docker.image_id(running[0].image) == self.docker.image_id(ref)
        except IsletOpsError as error:  # unknown means changed
            log.debug("%s will be rolled over: %s", service, error)
            return False
        log.debug("%s runs %s, the image of %s: %s", service, running[0].image, ref, "same" if same else "different")
        return same

    def running_release(self, services: Sequence[str]) -> dict[str, list[str]]:
        return running_tags(self.service_states(services), services)

    # -- rolling over -----------------------------------------------------------------------

    def start_beside(self, service: str) -> list[str]:
        old = [s.name for s in self.service_states([service]) if s.service == service and s.state == "running"]
        # One new container whatever the count of old ones (leftovers of a crash).
        self._run(self.command().start_beside(service, len(old)), "compose up --scale")
        return old

    def replace(self, services: Sequence[str], drain_s: int) -> None:
        self._run(self.command().replace(services, drain_s), "compose up")

    def wait_healthy(self, services: Sequence[str], policy: HealthPolicy, only: Sequence[str] = ()) -> None:
        try:
            wait_healthy(lambda: self.service_states(services), services, policy, only)
        except HealthFailed as failure:
            failure.details = self._failure_details(failure)
            raise

    def _failure_details(self, failure: HealthFailed) -> str:
        """The failing containers' own health output and log tails (never the old container's)."""
        parts = []
        for name in failure.instance_names:
            states = [s for s in self.service_states([failure.service]) if s.name == name]
            if states and states[0].checks:
                outputs = "\n  ".join(c.output.replace("\n", " ")[:300] for c in states[0].checks[-3:])
                parts.append(f"Last health checks of {name}:\n  {outputs}")
            with contextlib.suppress(IsletOpsError):
                tail = self.logs(failure.service, LOG_TAIL_LINES, instance_name=name).rstrip()
                if tail:
                    parts.append(f"Last {LOG_TAIL_LINES} log lines of {name}:\n  " + "\n  ".join(tail.splitlines()))
        return "\n".join(parts)

    def drain(self, instance_name: str) -> None:
        """Compose: the old container stays resolvable until it stops; its server closes its
        listener on SIGTERM (new connections are refused and the proxies retry the new one), and
        the proxies' 500 ms `proxy_connect_timeout` bounds a connect to its address once it is
        gone. (A network disconnect would take it out of DNS first, but cuts its in-flight requests.)"""

    def stop(self, instance_name: str, drain_s: int) -> None:
        self.docker.remove_container(instance_name, stop_timeout_s=drain_s)

    # -- reading ----------------------------------------------------------------------------

    def service_states(self, services: Sequence[str] = ()) -> list[ServiceState]:
        states = self.docker.project_containers(self.project, services)
        return [s for s in states if not services or s.service in services]

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        return self.docker.container_logs(self.project, service, tail=tail, container=instance_name)

    def show_logs(self, services: Sequence[str], tail: int, follow: bool = False) -> str:
        stack.require_prepared(self.instance)
        result = self._run(self.command().logs(services, tail=tail, follow=follow), "compose logs", capture=not follow)
        return "" if follow else result.stdout

    def restart(self, services: Sequence[str], policy: HealthPolicy) -> list[ServiceState]:
        stack.require_prepared(self.instance)
        self._run(self.command().restart(services), "compose restart")
        chosen = list(services or release.COMPONENTS)
        return wait_healthy(lambda: self.service_states(chosen), chosen, policy)
