"""Docker Swarm command lines and the readings of their JSON, built and parsed, never run: the one
place that knows the swarm CLI's argument grammar and its objects (nodes, services, tasks,
UpdateStatus). Pure, so every line and every verdict is unit-tested as data; the swarm engine
runs them.

The cluster-wide deploy lock is a Swarm config object named `isletops-lock-<stack>`: `docker
config create` is atomic in the managers' Raft store and fails when the name exists, so two
operators on two managers cannot both hold it; it disappears with `docker config rm`. A file
lock on one manager would not be seen by the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from isletops.errors import ConfigError

LOCK_PREFIX = "isletops-lock-"
PULL_CHECK_PREFIX = "isletops-pull-check-"
# UpdateStatus.State values (moby api/types/swarm): what a finished, a running and a failed update say.
UPDATE_DONE = frozenset({"completed"})
UPDATE_RUNNING = frozenset({"updating", "rollback_started"})
UPDATE_FAILED = frozenset({"paused", "rollback_paused", "rollback_completed"})


@dataclass(frozen=True)
class SwarmCommand:
    """The docker CLI (`binary`) talking to a manager, for one stack (the instance's name)."""

    stack: str
    binary: tuple[str, ...] = ("docker",)

    def args(self, *args: str) -> list[str]:
        return [*self.binary, *args]

    def info(self) -> list[str]:
        return self.args("info", "--format", "{{json .Swarm}}")

    def nodes(self) -> list[str]:
        return self.args("node", "ls", "--format", "{{.ID}}")

    def inspect_nodes(self, ids: Sequence[str]) -> list[str]:
        return self.args("node", "inspect", *ids)

    def deploy(self) -> list[str]:
        """Create or update the services a stack file (on stdin) names, and its networks and secrets,
        without waiting (isletops waits). No `--prune`: services the file does not name stay."""
        return self.args("stack", "deploy", "--with-registry-auth", "--compose-file", "-", self.stack)

    def service_name(self, service: str) -> str:
        return f"{self.stack}_{service}"

    def update_image(self, service: str, image: str) -> list[str]:
        """Move one service to `image` with its own update_config (start-first where set)."""
        return self.args("service", "update", "--detach", "--with-registry-auth", "--image", image,
                         self.service_name(service))

    def scale(self, service: str, replicas: int) -> list[str]:
        return self.args("service", "scale", "--detach", f"{self.service_name(service)}={replicas}")

    def inspect_services(self, services: Sequence[str]) -> list[str]:
        return self.args("service", "inspect", *(self.service_name(s) for s in services))

    def tasks(self, service: str) -> list[str]:
        """Task ids of a service, every desired state (the JSON comes from `inspect_tasks`)."""
        return self.args("service", "ps", "--quiet", "--no-trunc", self.service_name(service))

    def inspect_tasks(self, ids: Sequence[str]) -> list[str]:
        return self.args("inspect", "--type", "task", *ids)

    def logs(self, service: str, tail: int = 100) -> list[str]:
        return self.args("service", "logs", "--no-task-ids", "--raw", "--tail", str(tail), self.service_name(service))

    def restart(self, service: str) -> list[str]:
        """New tasks for the same spec (Swarm's update order and delay apply)."""
        return self.args("service", "update", "--detach", "--force", self.service_name(service))

    def show_logs(self, service: str, tail: int, follow: bool = False) -> list[str]:
        """For people: each line prefixed by its task and node (`prod_backend.1.x@node-2 | ...`)."""
        return self.args("service", "logs", "--tail", str(tail), *(["--follow"] if follow else []),
                         self.service_name(service))

    def secret_exists(self, name: str) -> list[str]:
        return self.args("secret", "inspect", "--format", "{{.ID}}", name)

    def secret_create(self, name: str) -> list[str]:
        """The value comes on stdin, never on the command line."""
        return self.args("secret", "create", "--label", f"com.docker.stack.namespace={self.stack}", name, "-")

    def lock_name(self) -> str:
        return f"{LOCK_PREFIX}{self.stack}"

    def lock_take(self) -> list[str]:
        """Atomic: fails when another operator holds the lock (its holder text is on stdin)."""
        return self.args("config", "create", "--label", "org.isletnet.lock=1", self.lock_name(), "-")

    def lock_read(self) -> list[str]:
        return self.args("config", "inspect", self.lock_name())

    def lock_release(self) -> list[str]:
        return self.args("config", "rm", self.lock_name())

    def pull_check_name(self) -> str:
        return f"{PULL_CHECK_PREFIX}{self.stack}"

    def pull_check(self, image: str) -> list[str]:
        """A one-shot global service: every node pulls `image` and runs `true` once (nothing restarts)."""
        return self.args("service", "create", "--detach", "--quiet", "--mode", "global", "--restart-condition",
                         "none", "--with-registry-auth", "--label", "org.isletnet.pull-check=1", "--entrypoint",
                         "true", "--name", self.pull_check_name(), image)

    def pull_check_remove(self) -> list[str]:
        return self.args("service", "rm", self.pull_check_name())

    def pull_check_tasks(self) -> list[str]:
        return self.args("service", "ps", "--quiet", "--no-trunc", self.pull_check_name())

    def drain_node(self, node: str) -> list[str]:
        return self.args("node", "update", "--availability", "drain", node)

    def node_tasks(self, node: str) -> list[str]:
        """`STATE SERVICE` of the tasks Swarm still wants running on `node`."""
        return self.args("node", "ps", "--filter", "desired-state=running", "--format",
                         "{{.CurrentState}}|{{.Name}}", node)


# -- readings -------------------------------------------------------------------------------------


def is_manager(swarm_info: Mapping[str, Any]) -> bool:
    """`docker info`'s Swarm section says this engine is an active manager."""
    return swarm_info.get("LocalNodeState") == "active" and bool(swarm_info.get("ControlAvailable"))


def require_manager(swarm_info: Mapping[str, Any], instance: str) -> None:
    if not is_manager(swarm_info):
        state = swarm_info.get("LocalNodeState") or "unknown"
        role = "a worker" if state == "active" else f"in swarm state '{state}'"
        raise ConfigError(
            f"This host is not a swarm manager ({role}); run isletops provision --inventory INVENTORY to build "
            f"the swarm, then run isletops on a manager (instance '{instance}' has engine: swarm).",
            "Or point ISLETOPS_SWARM_DOCKER at a manager's docker CLI (e.g. 'ssh admin@node-1 docker').",
        )


@dataclass(frozen=True)
class Node:
    """What placement needs of a node."""

    name: str
    labels: Mapping[str, str]
    ready: bool
    available: bool  # availability active (not drain/pause)
    generic: Mapping[str, int]  # generic resources it advertises (NVIDIA-GPU -> count)
    state: str = "ready"  # Status.State: ready | down | unknown | disconnected
    message: str = ""  # Status.Message, e.g. "heartbeat failure"
    role: str = "worker"
    node_id: str = ""


def parse_nodes(inspected: Iterable[Mapping[str, Any]]) -> list[Node]:
    nodes = []
    for raw in inspected:
        spec, description = raw.get("Spec") or {}, raw.get("Description") or {}
        generic: dict[str, int] = {}
        for resource in (description.get("Resources") or {}).get("GenericResources") or []:
            discrete = resource.get("DiscreteResourceSpec")
            named = resource.get("NamedResourceSpec")
            if discrete:
                generic[discrete["Kind"]] = generic.get(discrete["Kind"], 0) + int(discrete.get("Value", 0))
            elif named:
                generic[named["Kind"]] = generic.get(named["Kind"], 0) + 1
        nodes.append(Node(
            name=description.get("Hostname") or raw.get("ID", ""),
            labels=dict(spec.get("Labels") or {}),
            ready=(raw.get("Status") or {}).get("State") == "ready",
            available=spec.get("Availability", "active") == "active",
            generic=generic,
            state=(raw.get("Status") or {}).get("State", ""),
            message=(raw.get("Status") or {}).get("Message", ""),
            role=spec.get("Role", "worker"),
            node_id=raw.get("ID", ""),
        ))
    return nodes


def node_problems(nodes: Sequence[Node]) -> list[str]:
    """A phrase per node that is not ready (Swarm marks a node `down` once its heartbeats stop)."""
    return [f"node {node.name} ({node.role}) is {node.state or 'unknown'}"
            + (f": {node.message}" if node.message else "")
            for node in nodes if not node.ready]


def _constraint_matches(constraint: str, node: Node) -> bool:
    """`node.labels.KEY == VALUE` / `!=`; other constraints are left to Swarm (taken as met)."""
    for operator in ("==", "!="):
        if operator in constraint:
            left, right = (part.strip() for part in constraint.split(operator, 1))
            if not left.startswith("node.labels."):
                return True
            value = node.labels.get(left.removeprefix("node.labels."))
            return (value == right) if operator == "==" else (value != right)
    return True


def placement_problems(services: Mapping[str, Mapping[str, Any]], nodes: Sequence[Node]) -> list[str]:
    """A sentence per service of a stack document that no ready, active node can take (its
    label constraints, its generic resources), naming the label and the service. Empty: all placeable."""
    usable = [node for node in nodes if node.ready and node.available]
    problems = []
    for service, spec in services.items():
        deploy = spec.get("deploy") or {}
        if deploy.get("mode") != "global" and deploy.get("replicas", 1) == 0:
            continue
        constraints = list((deploy.get("placement") or {}).get("constraints") or [])
        fitting = [node for node in usable if all(_constraint_matches(c, node) for c in constraints)]
        if not fitting:
            labels = ", ".join(c.replace("node.labels.", "") for c in constraints) or "(none)"
            problems.append(
                f"Service {service} cannot be placed: no ready node has the label {labels}; "
                f"add it with: docker node update --label-add {_label_hint(constraints)} NODE."
            )
            continue
        for resource in (deploy.get("resources") or {}).get("reservations", {}).get("generic_resources") or []:
            spec_ = resource.get("discrete_resource_spec") or {}
            kind, per_task = spec_.get("kind", ""), int(spec_.get("value", 1))
            capacity = sum(node.generic.get(kind, 0) // max(per_task, 1) for node in fitting)
            replicas = int(deploy.get("replicas", 1))
            if capacity < replicas:
                problems.append(
                    f"Service {service} needs {replicas} x {per_task} {kind} but its nodes advertise room for "
                    f"{capacity}; list the GPUs in node-generic-resources of each GPU node's daemon.json."
                )
    return problems


def _label_hint(constraints: Sequence[str]) -> str:
    for constraint in constraints:
        if "==" in constraint and constraint.strip().startswith("node.labels."):
            key, value = (part.strip() for part in constraint.split("==", 1))
            return f"{key.removeprefix('node.labels.')}={value}"
    return "KEY=VALUE"


def gpu_capacity(nodes: Sequence[Node], label: str = "isletnet.gpu", kind: str = "NVIDIA-GPU") -> int:
    """Shepherd tasks the GPU nodes can hold: their advertised GPUs, or one per labelled node
    when they advertise none (no generic resources configured)."""
    gpu_nodes = [n for n in nodes if n.ready and n.available and n.labels.get(label) == "true"]
    return sum(node.generic.get(kind, 0) or 1 for node in gpu_nodes)


@dataclass(frozen=True)
class TaskView:
    """One task as the health wait needs it."""

    id: str
    service: str
    slot: str
    node_id: str
    desired: str  # running | shutdown | ...
    state: str  # new | pending | assigned | ... | running | failed | rejected | shutdown | complete
    error: str
    image: str
    container_id: str
    timestamp: str
    digest: str = ""  # the manifest digest Swarm pinned the task's image to


def parse_tasks(inspected: Iterable[Mapping[str, Any]], service: str) -> list[TaskView]:
    tasks = []
    for raw in inspected:
        status = raw.get("Status") or {}
        spec = ((raw.get("Spec") or {}).get("ContainerSpec") or {})
        tasks.append(TaskView(
            id=raw.get("ID", ""),
            service=service,
            slot=str(raw.get("Slot") or raw.get("NodeID") or ""),
            node_id=raw.get("NodeID", ""),
            desired=raw.get("DesiredState", ""),
            state=status.get("State", ""),
            error=status.get("Err", "") or status.get("Message", ""),
            image=spec.get("Image", "").split("@", 1)[0],
            digest=spec.get("Image", "").partition("@")[2],
            container_id=(status.get("ContainerStatus") or {}).get("ContainerID", ""),
            timestamp=status.get("Timestamp", ""),
        ))
    return tasks


@dataclass(frozen=True)
class Convergence:
    """Where one service's update stands: `done`, still `waiting`, or `failed` with a reason."""

    done: bool
    failed: str = ""
    waiting: str = ""


def convergence(service_inspect: Mapping[str, Any], tasks: Sequence[TaskView], image: str) -> Convergence:
    """Judge a service from its UpdateStatus and its task list: done when the update is complete
    (or there was none) and every desired-running task runs on `image`, the count matching the
    replicas (global: one per eligible node is Swarm's business: all desired tasks running).
    A task with a healthcheck is `starting` until its first healthy check and only then
    `running`, and an unhealthy one is killed and `failed`: `running` means healthy here."""
    service = (tasks[0].service if tasks else (service_inspect.get("Spec") or {}).get("Name", "?"))
    update = service_inspect.get("UpdateStatus") or {}
    update_state = update.get("State", "")
    if update_state in UPDATE_FAILED:
        failing = [t for t in tasks if t.state in ("failed", "rejected") and t.image == image]
        reason = failing[0].error if failing else update.get("Message", "")
        return Convergence(done=False, failed=f"update {update_state}: {reason}".strip(": "))
    desired = [t for t in tasks if t.desired == "running"]
    rejected = [t for t in desired if t.state in ("rejected", "failed") and t.image == image]
    if rejected:
        return Convergence(done=False, failed=f"task {rejected[0].id[:12]} {rejected[0].state}: {rejected[0].error}")
    mode = (service_inspect.get("Spec") or {}).get("Mode") or {}
    replicas = (mode.get("Replicated") or {}).get("Replicas")
    running_new = [t for t in desired if t.state == "running" and t.image == image]
    if update_state in UPDATE_RUNNING:
        return Convergence(done=False,
                           waiting=f"{service}: update {update_state} ({len(running_new)} on the new image)")
    if replicas is not None and len(running_new) < int(replicas):
        pending = [t for t in desired if t.state != "running"]
        why = f" ({pending[0].state}: {pending[0].error})" if pending and pending[0].error else ""
        return Convergence(done=False, waiting=f"{service}: {len(running_new)}/{replicas} tasks running{why}")
    if any(t.image != image for t in desired) or not desired:
        return Convergence(done=False, waiting=f"{service}: tasks still on the old image")
    if any(t.state != "running" for t in desired):  # a global service: every node's task
        return Convergence(done=False, waiting=f"{service}: {len(running_new)}/{len(desired)} tasks running")
    return Convergence(done=True)


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """`docker ... inspect` prints one JSON array."""
    text = text.strip()
    if not text:
        return []
    loaded = json.loads(text)
    return loaded if isinstance(loaded, list) else [loaded]


@dataclass(frozen=True)
class ServiceReplicas:
    """A service as the containers probe reads it: tasks wanted and running, and why not."""

    service: str
    desired: int
    running: int
    problem: str = ""  # the newest failing task's state and error, or a paused update

    @property
    def ok(self) -> bool:
        return not self.problem and self.running >= self.desired


def service_replicas(service: str, service_inspect: Mapping[str, Any] | None,
                     tasks: Sequence[TaskView]) -> ServiceReplicas:
    """Desired vs running tasks of one service (a task with a health check is `running` only
    once healthy), with the newest task error when some are missing or an update is paused.
    A global service wants one task per node Swarm placed one on."""
    if service_inspect is None:
        return ServiceReplicas(service, 1, 0, "the service does not exist")
    desired_tasks = [t for t in tasks if t.desired == "running"]
    mode = (service_inspect.get("Spec") or {}).get("Mode") or {}
    replicas = (mode.get("Replicated") or {}).get("Replicas")
    desired = int(replicas) if replicas is not None else len(desired_tasks)
    running = sum(1 for t in desired_tasks if t.state == "running")
    update = service_inspect.get("UpdateStatus") or {}
    problem = ""
    if update.get("State") in ("paused", "rollback_paused"):
        problem = f"update {update['State']}: {update.get('Message', '')}".strip(": ")
    elif running < desired:
        failing = sorted((t for t in tasks if t.state != "running" and (t.error or t.desired == "running")),
                         key=lambda t: t.timestamp, reverse=True)
        problem = f"task {failing[0].state}: {failing[0].error or 'no error given'}" if failing else "tasks missing"
    return ServiceReplicas(service, desired, running, problem)


FINAL_TASK_STATES = frozenset({"complete", "failed", "rejected", "shutdown", "orphaned", "remove"})


def pull_check_verdict(tasks: Sequence[TaskView], node_names: Mapping[str, str]) -> tuple[bool, list[str]]:
    """(finished, problems) of the pull check: finished once every node's task is final; a
    problem per node whose task was rejected or failed (`No such image`: it could not pull)."""
    finished = bool(tasks) and all(t.state in FINAL_TASK_STATES for t in tasks)
    problems = [f"node {node_names.get(t.node_id, t.node_id[:12])}: {t.error or t.state}"
                for t in tasks if t.state in ("rejected", "failed")]
    return finished, problems
