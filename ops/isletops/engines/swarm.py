"""`SwarmEngine`: the `Engine` protocol on a Docker Swarm, driven from a manager with the docker CLI.

- `prepare(tag)` checks that this host is a manager and that every service of the stack can be
  placed (labels, GPU capacity) before anything changes, creates the stack's secrets (immutable,
  named by a hash of their value), and renders the stack file (`isletops.swarm_stack`).
- Every service "recreates" in the deploy's terms: `replace(services)` deploys a stack file that
  names only those services (no `--prune`: the others are left as they are), and Swarm moves
  them with their own `update_config` (start-first for the stateless ones, one task at a time).
  So the deploy logic's dependency levels are kept, and a restore moves back exactly the services
  a deploy changed.
- `wait_healthy` reads each service's UpdateStatus and task list until every task runs on the
  new image (a task with a healthcheck is `running` only once healthy); a paused update, a
  rejected or failed task is a failure at once, with the task's error, the health output where
  the container is on this host, and the service's last log lines.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import subprocess  # nosec B404 - the docker CLI, argument lists only
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from isletops import release, stack
from isletops.config import GENERATED_SECRETS, InstanceConfig, SiteConfig, ensure_env_file, read_env_file
from isletops.engines.base import HealthPolicy, ServicePlan, ServiceState, ServiceStep, Strategy
from isletops.engines.health import HealthFailed
from isletops.errors import ConfigError, DeployError, DockerError, IsletOpsError, LockError
from isletops.registry import RegistryAddress, RegistryClient, RegistryCredentials
from isletops.swarm_command import (
    Convergence,
    Node,
    ServiceReplicas,
    SwarmCommand,
    TaskView,
    convergence,
    gpu_capacity,
    parse_json_lines,
    parse_nodes,
    parse_tasks,
    placement_problems,
    pull_check_verdict,
    require_manager,
    service_replicas,
)
from isletops.swarm_stack import RenderedStack, render_stack, stack_for_instance, stack_levels

LOG_TAIL_LINES = 20
PULL_CHECK_TIMEOUT_S = 300  # every node pulls the edge image before a deploy changes anything
DOCKER_CLI_ENV = "ISLETOPS_SWARM_DOCKER"  # how to reach a manager's docker CLI (default: `docker` here)
Runner = Callable[[list[str], str | None], subprocess.CompletedProcess]


def run_cli(argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one docker CLI line; the caller reads returncode, stdout and stderr."""
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300, check=False)  # nosec B603


class SwarmEngine:
    """One instance as a stack on the swarm this host manages."""

    name = "swarm"

    def __init__(self, site: SiteConfig, instance: InstanceConfig, runner: Runner = run_cli,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 credentials: Mapping[str, RegistryCredentials] | None = None) -> None:
        self.site = site
        self.credentials = credentials
        self.instance = instance
        # The docker CLI of a manager: `docker` here, or e.g. `ssh admin@manager-1 docker`.
        self.command = SwarmCommand(instance.name, tuple(shlex.split(os.environ.get(DOCKER_CLI_ENV, "docker"))))
        self.runner = runner
        self.clock = clock
        self.sleep = sleep
        self.prepared: RenderedStack | None = None
        self.pull_checked: set[str] = set()  # images every node pulled in this run

    # -- running the CLI --------------------------------------------------------------------

    def _run(self, argv: list[str], what: str, stdin: str | None = None) -> str:
        result = self.runner(argv, stdin)
        if result.returncode != 0:
            detail = (result.stderr or result.stdout or "").strip().splitlines()
            raise DockerError(f"{what} failed: {detail[-1] if detail else 'exit ' + str(result.returncode)}.")
        return result.stdout

    def _json(self, argv: list[str], what: str) -> list[dict[str, Any]]:
        return parse_json_lines(self._run(argv, what))

    def _require_manager(self) -> None:
        info = json.loads(self._run(self.command.info(), "docker info") or "{}")
        require_manager(info or {}, self.instance.name)

    # -- the cluster-wide deploy lock (besides the instance's file lock) ---------------------

    def take_cluster_lock(self, holder: str, by_hand: bool = False) -> Callable[[], None]:
        """Create the Swarm config `isletops-lock-<instance>` (atomic in the managers' Raft store:
        it fails when the name exists, so two operators on two managers cannot both hold it);
        LockError names the holder. Returns its release. A host that is no manager is told so
        first, in the same sentence as the plan's refusal. A config never expires, so a hold by
        hand and a deploy's lock are the same object."""
        self._require_manager()
        result = self.runner(self.command.lock_take(), holder)
        if result.returncode != 0:
            if "exists" not in (result.stderr or "").lower():
                raise DockerError(f"Taking the swarm's deploy lock failed: {(result.stderr or '').strip()}.")
            raise LockError(
                f"Another operator holds the swarm's lock {self.command.lock_name()}: "
                f"{self.cluster_lock_holder() or 'unknown'}.",
                "Wait for that deploy, or for 'isletops lock release' on the manager that took it by hand; "
                f"if its deploy is dead: docker config rm {self.command.lock_name()}.",
            )
        return lambda: self._remove_lock()

    def cluster_lock_holder(self) -> str:
        """The holder text of the lock config ("" when there is none)."""
        found = parse_json_lines(self.runner(self.command.lock_read(), None).stdout or "")
        if not found:
            return ""
        data = (found[0].get("Spec") or {}).get("Data") or ""
        with contextlib.suppress(ValueError):
            return base64.b64decode(data).decode(errors="replace").strip() or "unknown"
        return "unknown"

    def release_cluster_lock(self, holder: str) -> bool:
        if self.cluster_lock_holder() != holder:
            return False
        self._remove_lock()
        return True

    def _remove_lock(self) -> None:
        self.runner(self.command.lock_release(), None)

    # -- host and images --------------------------------------------------------------------

    def data_root(self) -> Path | None:
        return None  # images live on every node

    def image_present(self, ref: str) -> bool:
        """The nodes pull from the registry themselves; the deploy's registry check covers it."""
        return True

    def pull(self, ref: str) -> None:
        """Nothing to pull on the manager: each node pulls when its task starts."""

    def push(self, ref: str) -> None:
        self._run(self.command.args("push", ref), f"docker push {ref}")

    def tag(self, source: str, target: str) -> None:
        self._run(self.command.args("tag", source, target), f"docker tag {source}")

    def prune_releases(self, registry: str, keep: int) -> list[str]:
        return ["swarm: old release images stay on the nodes; prune them on each node (isletops prune images)."]

    # -- a release --------------------------------------------------------------------------

    def _render(self, tag: str, registry: str) -> RenderedStack:
        return stack_for_instance(self.instance, tag=tag, registry=registry)

    def plan(self, tag: str, registry: str) -> ServicePlan:
        """The levels of the stack, after the read-only refusals that must come before any change
        (a deploy plans before it touches anything): not a manager, a service that cannot be
        placed. Reads only, so a dry run changes nothing; the nodes' pull check is `verify`'s."""
        self._preflight(tag, registry)
        levels = stack_levels(self.instance)
        services = [s for level in levels for s in level]
        return ServicePlan(steps=tuple(ServiceStep(s, Strategy.RECREATE) for s in services), levels=levels)

    def verify(self, tag: str, registry: str) -> None:
        """Before a real run changes anything: every node can pull the release from the registry."""
        document = self._preflight(tag, registry)
        self._check_nodes_pull(str(document["services"]["edge"]["image"]), registry)

    def prepare(self, tag: str, registry: str) -> None:
        """Refuse before touching anything (not a manager, a service that cannot be placed), then
        create the secrets the stack needs."""
        self._preflight(tag, registry)
        env = stack.managed_env(self.instance, tag, registry)
        ensure_env_file(self.instance, env)  # secrets generated once, kept afterwards
        stack.update_env_values(self.instance, env)
        rendered = self._render(tag, registry)
        for secret in rendered.secrets:
            if self.runner(self.command.secret_exists(secret.name), None).returncode != 0:
                self._run(self.command.secret_create(secret.name), f"docker secret create {secret.name}", secret.value)
        self.prepared = rendered

    def _preflight(self, tag: str, registry: str) -> dict[str, Any]:
        """Raise before any change when this host is no manager or a service cannot be placed;
        returns the stack document. Reads only: the .env where there is one (placement does not
        depend on the secrets' values), the nodes."""
        self._require_manager()
        placeholders = {name: "unset" for name in GENERATED_SECRETS}
        managed = stack.managed_env(self.instance, tag, registry)
        env = {**placeholders, **read_env_file(self.instance.env_file), **managed}
        texts = stack.render_compose_files(self.instance, gpu=False)
        document = render_stack(self.instance, texts, env).document
        ids = self._run(self.command.nodes(), "docker node ls").split()
        nodes = parse_nodes(self._json(self.command.inspect_nodes(ids), "docker node inspect"))
        problems = placement_problems(document["services"], nodes)
        if problems:
            raise ConfigError(" ".join(problems) + " Nothing was changed on the swarm.")
        return document

    def _check_nodes_pull(self, image: str, registry: str) -> None:
        """Every node pulls `image` (the edge's, the smallest) in a one-shot global service, removed
        afterwards; a node that cannot is refused in one sentence before the stack changes. The
        isletops host reaching the registry says nothing about the nodes (a registry on the
        host's 127.0.0.1, a firewall, a missing insecure-registries entry, missing credentials).
        One image proves the node's way to the registry; that every image of the release is
        there, the deploy's registry check has already said."""
        if image in self.pull_checked:
            return
        self.runner(self.command.pull_check_remove(), None)  # a check left by a killed run
        self._run(self.command.pull_check(image), "docker service create (pull check)")
        try:
            deadline = self.clock() + PULL_CHECK_TIMEOUT_S
            while True:
                ids = self._run(self.command.pull_check_tasks(), "docker service ps (pull check)").split()
                tasks = self._inspect_tasks(ids, "pull-check")
                finished, problems = pull_check_verdict(tasks, {n.node_id: n.name for n in self.nodes()})
                if finished or self.clock() >= deadline:
                    break
                self.sleep(1.0)
        finally:
            self.runner(self.command.pull_check_remove(), None)
        if problems:
            raise ConfigError(
                f"The swarm's nodes cannot pull {image} from the registry {registry} "
                f"({'; '.join(problems)}); nothing was changed on the swarm.",
                "Every node must reach the registry: a routable address (not 127.0.0.1), and the registry "
                "in insecure-registries of each node's daemon.json when it speaks plain HTTP.",
            )
        if not finished:
            raise ConfigError(f"The swarm's nodes did not finish pulling {image} within {PULL_CHECK_TIMEOUT_S} s; "
                              "nothing was changed on the swarm.",
                              "See docker service ps --no-trunc; a slow registry or a node that is down.")
        self.pull_checked.add(image)

    def _stack_for(self, services: Sequence[str]) -> dict[str, Any]:
        if self.prepared is None:
            raise DeployError("The swarm engine was asked to deploy before a release was prepared.")
        document = dict(self.prepared.document)
        document["services"] = {s: document["services"][s] for s in services if s in document["services"]}
        return document

    def _image_of(self, service: str) -> str:
        if self.prepared is None:
            raise DeployError("The swarm engine was asked about a release before one was prepared.")
        return str(self.prepared.document["services"][service]["image"])

    def runs_image(self, service: str, ref: str) -> bool:
        """Converged on `ref`, or every running task runs the very image `ref` names (same digest
        under another tag: the edge's image rarely changes, so a deploy leaves it running)."""
        inspected = self._inspect_service(service)
        if inspected is None:
            return False
        tasks = self._tasks(service)
        if convergence(inspected, tasks, ref).done:
            return True
        running = [t for t in tasks if t.desired == "running"]
        digests = {t.digest for t in running}
        if not running or len(digests) != 1 or not all(t.state == "running" for t in running):
            return False
        mode = (inspected.get("Spec") or {}).get("Mode") or {}
        replicas = (mode.get("Replicated") or {}).get("Replicas")
        if replicas is not None and len(running) != int(replicas):
            return False
        wanted = self._registry_digest(ref)
        # A paused update leaves old tasks running under a spec that names the new image: that
        # service is not on `ref`, whatever its tasks run (the stack-wide rollback must reset it).
        spec_image = (((inspected.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
            "Image") or ""
        spec_digest = spec_image.partition("@")[2]
        if spec_digest and wanted and spec_digest != wanted:
            return False
        return wanted == next(iter(digests))

    def _registry_digest(self, ref: str) -> str:
        """The digest the registry gives `ref` ("" when it cannot say)."""
        name, _, tag = ref.rpartition(":")
        host, _, repository = name.partition("/")
        registry = host  # the site's registry when it is that one (its scheme, http or https)
        with contextlib.suppress(IsletOpsError):
            if RegistryAddress.parse(self.site.registry).host == host:
                registry = self.site.registry
        with contextlib.suppress(IsletOpsError):
            client = RegistryClient(registry, credentials=(self.credentials or {}).get(host))
            return client.manifest_digest(repository, tag)
        return ""

    def running_release(self, services: Sequence[str]) -> dict[str, list[str]]:
        releases: dict[str, list[str]] = {}
        for service in services:
            tags = {t.image.rsplit(":", 1)[-1] for t in self._tasks(service) if t.desired == "running" and t.image}
            releases[service] = sorted(tags)
        return releases

    # -- rolling over -----------------------------------------------------------------------

    def start_beside(self, service: str) -> list[str]:
        raise DeployError(f"{service}: the swarm engine moves services with Swarm's own start-first update.")

    def replace(self, services: Sequence[str], drain_s: int) -> None:
        """Deploy a stack file naming only `services`: Swarm updates exactly those."""
        document = self._stack_for(services)
        self._run(self.command.deploy(), f"docker stack deploy ({', '.join(services)})",
                  yaml.safe_dump(document, sort_keys=False))

    def wait_healthy(self, services: Sequence[str], policy: HealthPolicy, only: Sequence[str] = ()) -> None:
        deadline = self.clock() + policy.timeout_s
        pending = list(services)
        while pending:
            verdicts = {s: self._convergence(s) for s in pending}
            failed = next(((s, v) for s, v in verdicts.items() if v.failed), None)
            if failed:
                raise self._failure(failed[0], failed[1].failed)
            pending = [s for s, v in verdicts.items() if not v.done]
            if pending and self.clock() >= deadline:
                raise self._failure(pending[0], f"not converged within {policy.timeout_s:.0f} s "
                                                f"({verdicts[pending[0]].waiting})")
            if pending:
                self.sleep(policy.poll_s)

    def _convergence(self, service: str) -> Convergence:
        inspected = self._inspect_service(service)
        if inspected is None:
            return Convergence(done=False, failed=f"service {self.command.service_name(service)} does not exist")
        return convergence(inspected, self._tasks(service), self._expected_image(service, inspected))

    def _expected_image(self, service: str, inspected: Mapping[str, Any]) -> str:
        """The prepared release's image, or (a restart: nothing prepared) the one the service runs."""
        if self.prepared is not None:
            return self._image_of(service)
        spec = ((inspected.get("Spec") or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
        return str(spec.get("Image", "")).split("@", 1)[0]

    def _failure(self, service: str, why: str) -> HealthFailed:
        message = f"{service} did not become healthy on the swarm ({why})"
        failure = HealthFailed(service, message)
        failure.details = self._failure_details(service)
        return failure

    def _failure_details(self, service: str) -> str:
        parts = []
        tasks = [t for t in self._tasks(service) if t.state in ("failed", "rejected", "starting", "running")]
        image = self._image_of(service) if self.prepared else ""
        failing = [t for t in tasks if t.image == image and t.state in ("failed", "rejected")] or tasks
        if failing:
            task = failing[0]
            parts.append(f"Task {task.id[:12]} on node {task.node_id[:12]}: {task.state}: {task.error or '-'}")
            health = self._health_output(task)
            if health:
                parts.append(f"Last health checks of its container:\n  {health}")
        with contextlib.suppress(IsletOpsError):
            tail = self.logs(service, LOG_TAIL_LINES).rstrip()
            if tail:
                parts.append(f"Last {LOG_TAIL_LINES} log lines of {service}:\n  " + "\n  ".join(tail.splitlines()))
        return "\n".join(parts)

    def _health_output(self, task: TaskView) -> str:
        """The container's health log when it is on this host (other nodes' containers are theirs)."""
        if not task.container_id:
            return ""
        result = self.runner(self.command.args("inspect", "--type", "container", "--format",
                                               "{{json .State.Health}}", task.container_id), None)
        if result.returncode != 0:
            return f"(on another node: docker inspect {task.container_id[:12]} there)"
        health = json.loads(result.stdout or "null") or {}
        return "\n  ".join(str(entry.get("Output", "")).strip()[:300] for entry in (health.get("Log") or [])[-3:])

    def drain(self, instance_name: str) -> None:
        """Swarm takes a stopping task out of the service's DNS itself."""

    def stop(self, instance_name: str, drain_s: int) -> None:
        """Tasks are stopped by Swarm (their stop_grace_period) when their service moves on."""

    # -- scaling (swarm only: `isletops scale`, `isletops autoscale`) -------------------------

    def replicas(self, service: str) -> int:
        inspected = self._inspect_service(service)
        if inspected is None:
            raise ConfigError(f"Service {self.command.service_name(service)} does not exist on this swarm.",
                              "Deploy the instance first (isletops deploy --tag TAG).")
        mode = (inspected.get("Spec") or {}).get("Mode") or {}
        return int((mode.get("Replicated") or {}).get("Replicas") or 0)

    def gpu_capacity(self) -> int:
        """Shepherd tasks the ready GPU nodes can hold."""
        return gpu_capacity(self.nodes())

    def scale(self, service: str, replicas: int, policy: HealthPolicy) -> None:
        """Set `service`'s replicas (the shepherd: at most what the GPU nodes hold) and wait until they run."""
        self._require_manager()
        if service == "shepherd":
            capacity = self.gpu_capacity()
            if replicas > capacity:
                raise ConfigError(f"The GPU nodes hold {capacity} shepherd task(s); {replicas} asked.",
                                  "Label more nodes isletnet.gpu=true, or ask for fewer.")
        self.replicas(service)  # exists
        self._run(self.command.scale(service, replicas), f"docker service scale {service}")
        deadline = self.clock() + policy.timeout_s
        while True:
            running = [t for t in self._tasks(service) if t.desired == "running" and t.state == "running"]
            if len(running) == replicas:
                return
            if self.clock() >= deadline:
                raise self._failure(service, f"{len(running)}/{replicas} tasks running after {policy.timeout_s:.0f} s")
            self.sleep(policy.poll_s)

    def drain_node(self, node: str, policy: HealthPolicy) -> list[str]:
        """Drain `node` and wait until none of its tasks runs there any more and every service of
        the stack runs its replicas elsewhere; returns the services that were on it."""
        self._require_manager()
        before = self._run(self.command.node_tasks(node), f"docker node ps {node}").split()
        moved = sorted({row.split("|", 1)[-1].split(".", 1)[0] for row in before if "|" in row})
        self._run(self.command.drain_node(node), f"docker node update --availability drain {node}")
        deadline = self.clock() + policy.timeout_s
        while True:
            left = [row for row in self._run(self.command.node_tasks(node), f"docker node ps {node}").splitlines()
                    if row.startswith("Running")]
            stack_prefix = f"{self.instance.name}_"
            services = [s.removeprefix(stack_prefix) for s in moved if s.startswith(stack_prefix)]
            pending = [s for s in services if not self._replicas_running(s)]
            if not left and not pending:
                return moved
            if self.clock() >= deadline:
                raise DeployError(
                    f"Node {node} still runs {len(left)} task(s) and {', '.join(pending) or 'no service'} "
                    f"lacks replicas after {policy.timeout_s:.0f} s.",
                    "See docker node ps and docker service ps --no-trunc; runbook: Swarm: draining a node.")
            self.sleep(policy.poll_s)

    def _replicas_running(self, service: str) -> bool:
        inspected = self._inspect_service(service)
        if inspected is None:
            return True
        wanted = ((inspected.get("Spec") or {}).get("Mode") or {}).get("Replicated", {}).get("Replicas")
        running = [t for t in self._tasks(service) if t.desired == "running" and t.state == "running"]
        return wanted is None or len(running) >= int(wanted)

    # -- reading ----------------------------------------------------------------------------

    def nodes(self) -> list[Node]:
        """Every node of the swarm, as its managers see it (ready, down, ...)."""
        ids = self._run(self.command.nodes(), "docker node ls").split()
        return parse_nodes(self._json(self.command.inspect_nodes(ids), "docker node inspect")) if ids else []

    def replicas_report(self, services: Sequence[str]) -> list[ServiceReplicas]:
        """Desired vs running tasks of each service, with the newest task error where short."""
        return [service_replicas(service, self._inspect_service(service), self._tasks(service))
                for service in services]

    def _inspect_service(self, service: str) -> dict[str, Any] | None:
        result = self.runner(self.command.inspect_services([service]), None)
        if result.returncode != 0:
            return None
        found = parse_json_lines(result.stdout)
        return found[0] if found else None

    def _tasks(self, service: str) -> list[TaskView]:
        result = self.runner(self.command.tasks(service), None)
        return self._inspect_tasks(result.stdout.split() if result.returncode == 0 else [], service)

    def _inspect_tasks(self, ids: Sequence[str], service: str) -> list[TaskView]:
        """The tasks `ids` that still exist: Swarm prunes old tasks (task history retention)
        between `service ps` and `inspect`, which then names them "No such task" and still
        prints the others; any other failure is an error."""
        if not ids:
            return []
        result = self.runner(self.command.inspect_tasks(ids), None)
        if result.returncode != 0:
            errors = [line for line in (result.stderr or "").strip().splitlines() if line.strip()]
            if not errors or not all("No such task" in line for line in errors):
                detail = errors[-1] if errors else f"exit {result.returncode}"
                raise DockerError(f"docker inspect (tasks) failed: {detail}.")
        return parse_tasks(parse_json_lines(result.stdout), service)

    def service_states(self, services: Sequence[str] = ()) -> list[ServiceState]:
        chosen = list(services or release.COMPONENTS)
        states: list[ServiceState] = []
        for service in chosen:
            tasks = [t for t in self._tasks(service) if t.desired == "running"]
            for task in tasks:
                states.append(_task_state(self.command.service_name(service), service, task))
            if not tasks and services:
                states.append(ServiceState(service=service, name="", state="missing", health=None, restart_count=0,
                                           started_at=None, image="", exit_code=None, last_health_output=""))
        return states

    def logs(self, service: str, tail: int = 100, instance_name: str = "") -> str:
        result = self.runner(self.command.logs(service, tail), None)
        if result.returncode != 0:
            raise DockerError(f"docker service logs {service} failed: {result.stderr.strip()}.")
        return result.stdout + result.stderr  # service logs interleave the tasks' stdout and stderr

    def show_logs(self, services: Sequence[str], tail: int, follow: bool = False) -> str:
        if not follow:
            return "".join(self._run(self.command.show_logs(service, tail), f"docker service logs {service}")
                           for service in services)
        # `docker service logs` follows one service: one each, all printing here until Ctrl-C.
        followers = [subprocess.Popen(self.command.show_logs(service, tail, follow=True))  # nosec B603
                     for service in services]
        try:
            for follower in followers:
                follower.wait()
        finally:
            for follower in followers:
                follower.terminate()
        return ""

    def restart(self, services: Sequence[str], policy: HealthPolicy) -> list[ServiceState]:
        """A forced update of each service (new tasks, Swarm's update order and delay), waited
        until none of the tasks that ran before is still wanted and every new one runs healthy."""
        chosen = list(services or release.COMPONENTS)
        deadline = self.clock() + policy.timeout_s
        for service in chosen:
            before = {t.id for t in self._tasks(service) if t.desired == "running"}
            self._run(self.command.restart(service), f"docker service update --force {service}")
            while any(t.id in before for t in self._tasks(service) if t.desired == "running"):
                if self.clock() >= deadline:
                    raise self._failure(service, f"its tasks were not replaced within {policy.timeout_s:.0f} s")
                self.sleep(policy.poll_s)
        self.wait_healthy(chosen, policy)
        return self.service_states(chosen)


def _task_state(stack_service: str, service: str, task: TaskView) -> ServiceState:
    mapping = {"running": ("running", "healthy"), "starting": ("running", "starting"),
               "failed": ("exited", None), "rejected": ("dead", None), "shutdown": ("exited", None),
               "complete": ("exited", None)}
    state, health = mapping.get(task.state, ("created", None))
    started = None
    with contextlib.suppress(ValueError):  # Docker's RFC 3339 with nanoseconds: keep microseconds
        started = datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", task.timestamp).replace("Z", "+00:00"))
    return ServiceState(service=service, name=f"{stack_service}.{task.slot}.{task.id[:12]}", state=state,
                        health=health, restart_count=0, started_at=started, image=task.image, exit_code=None,
                        last_health_output=task.error)
