"""The Docker Swarm stack file of an instance: rendered from the same compose templates as the
compose engine, with every `${VARIABLE}` resolved and checked here (pure: nothing is written).

Why isletops renders it instead of handing the compose files to `docker stack deploy`: the 20.10
stack loader wants a `version:` key, rejects `depends_on` conditions and
`reservations.devices`, ignores `restart:`, and does not fail on `${TAG:?...}` with TAG unset
(it deployed the image `tiny:env`). So the compose files are rendered, merged and interpolated
here, then turned into a compose 3.8 stack:

- every service: `update_config` (`order: start-first`, `failure_action: pause`: isletops decides
  the rollback, for the whole stack; `monitor` covers a task turning unhealthy after its start; a
  `delay` of two health-check intervals between slots, so a task that exits 0 at once pauses
  the update before a second old task is stopped),
  `restart_policy`, the healthcheck, `endpoint_mode: dnsrr` (no IPVS needed);
- queue and storage: pinned to the node labelled `isletnet.storage == true` with named volumes,
  `order: stop-first` (two PostgreSQL servers must never share a data folder); or left out when
  the instance uses an external database / S3;
- shepherd: on nodes labelled `isletnet.gpu == true`, one `NVIDIA-GPU` generic resource per task
  when configured;
- edge: one task per node labelled `isletnet.edge == true` (global), its port published in host
  mode (no ingress routing mesh), `stop-first` (the port is held by one task per node);
- secrets (S3 keys, DB password, database URL, the probe token) as external Swarm secrets whose names carry a hash
  of their value (a secret is immutable: a new value is a new secret), read by the services from
  `*_FILE` variables.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from isletops.config import InstanceConfig, read_env_file
from isletops.errors import ConfigError

STACK_VERSION = "3.8"
GPU_LABEL = "node.labels.isletnet.gpu == true"
STORAGE_LABEL = "node.labels.isletnet.storage == true"
EDGE_LABEL = "node.labels.isletnet.edge == true"
GPU_RESOURCE_KIND = "NVIDIA-GPU"
# Environment values that become Swarm secrets (service reads NAME_FILE=/run/secrets/<name>).
SECRET_VARIABLES: tuple[str, ...] = (
    "S3_ACCESS_KEY", "S3_SECRET_KEY", "DB_PASSWORD", "DATABASE_URL", "ISLETNET_PROBE_TOKEN",
)
DATA_VOLUMES: dict[str, str] = {"queue": "queue-data", "storage": "storage-data"}
STATEFUL = ("queue", "storage")
# Keys of a compose service that a stack does not take (handled or meaningless in Swarm).
DROPPED_KEYS = ("depends_on", "restart", "container_name")
MIN_SLOT_DELAY_S = 5  # between two slots of an update, at least (see _update_config)

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True)
class StackSecret:
    """One Swarm secret of a stack: its name in the swarm and its value (never printed)."""

    variable: str
    name: str
    value: str = ""


@dataclass(frozen=True)
class RenderedStack:
    """The stack document, the secrets it needs created, and the services' dependency levels."""

    document: dict[str, Any]
    secrets: tuple[StackSecret, ...]
    levels: tuple[tuple[str, ...], ...]

    def text(self) -> str:
        header = "# Rendered by isletops (isletops render stack); deploy it with isletops deploy.\n"
        return header + yaml.safe_dump(self.document, sort_keys=False, default_flow_style=False)


# -- interpolation --------------------------------------------------------------------------------


def interpolate(value: str, env: Mapping[str, str], where: str) -> str:
    """Compose's `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:?err}`, `${NAME?err}`,
    `$$` -- except that a missing required variable, or any unset one without a default, is an
    error naming it (compose warns and uses ""; the 20.10 stack loader did not even fail on `:?`)."""

    def substitute(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg")
        value = env.get(name)
        empty = value is None or (value == "" and op is not None and op.startswith(":"))
        if op in (":-", "-"):
            return arg if (value is None if op == "-" else empty) else str(value)
        if value is None or (op == ":?" and value == ""):
            raise ConfigError(
                f"{where} needs the variable {name}, which is not set in the instance's .env.",
                f"Set {name} in the instance's .env (isletops deploy writes the ones it manages).",
            )
        return str(value)

    return _VARIABLE.sub(substitute, value)


def interpolate_tree(node: Any, env: Mapping[str, str], where: str = "stack") -> Any:
    """Every string of a parsed YAML tree interpolated (keys too, as compose does)."""
    if isinstance(node, dict):
        return {interpolate(str(k), env, where): interpolate_tree(v, env, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(item, env, f"{where}[{i}]") for i, item in enumerate(node)]
    if isinstance(node, str):
        return interpolate(node, env, where)
    return node


def merge(base: Any, override: Any) -> Any:
    """Compose's file merge for our templates: mappings merged key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge(base[key], value) if key in base else value
        return merged
    return override


def dependency_levels(services: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, ...], ...]:
    """Services grouped by `depends_on` depth: each level only depends on earlier ones."""
    remaining = {name: set(spec.get("depends_on") or ()) & set(services) for name, spec in services.items()}
    levels: list[tuple[str, ...]] = []
    done: set[str] = set()
    while remaining:
        ready = sorted(name for name, needs in remaining.items() if needs <= done)
        if not ready:
            raise ConfigError(f"The services {', '.join(sorted(remaining))} depend on each other in a circle.")
        levels.append(tuple(ready))
        done.update(ready)
        for name in ready:
            del remaining[name]
    return tuple(levels)


# -- the stack ------------------------------------------------------------------------------------


def secret_name(instance: str, variable: str, value: str) -> str:
    """`<instance>_<variable>_<8 hex of the value's sha256>`: immutable secrets get new names."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{instance}_{variable.lower()}_{digest}"


def _duration_s(text: Any) -> float:
    """A compose duration ("30s", "1m30s", "500ms") in seconds."""
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|us|h|m|s)", str(text or "")):
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}[unit]
    return total


def _update_config(service: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """One task at a time, the new one started first (stateless services), paused at the first
    failure (moby #37972: rollbacks misbehave without `monitor`).

    `monitor`: how long a task that reached `running` is still watched. Swarm's updater counts a
    task's failure before `running` whatever the time, and a task with a health check is
    `running` only after its first healthy check; so the start period is covered already, and
    `monitor` must cover a task that turns unhealthy afterwards: `retries` failed checks, one
    `interval` apart, plus one interval. `delay`: the updater waits this long before the next slot.

    Why a delay: Docker's executor reports a task `running` once its first health check passes
    -- or once its container exits 0, even before any check. With `start-first`, Swarm then stops
    that slot's old task; the new one turns `complete` a moment later. With no delay the updater
    had already started on the next slot, so a release whose backend exits 0 at once replaced
    both old backends before the update paused (seen: 0/2 backends until the rollback). Two
    health-check intervals between slots let that failure pause the update first, while the
    other slots still run the old release."""
    health = spec.get("healthcheck") or {}
    interval_s = max(_duration_s(health.get("interval")), 1)
    monitor_s = int((int(health.get("retries") or 3) + 1) * interval_s)
    delay_s = int(max(2 * interval_s, MIN_SLOT_DELAY_S))
    order = "stop-first" if service in (*STATEFUL, "edge") else "start-first"
    return {"parallelism": 1, "delay": f"{delay_s}s", "order": order, "failure_action": "pause",
            "monitor": f"{max(monitor_s, 10)}s", "max_failure_ratio": 0}


def _env_to_secrets(environment: dict[str, Any], needed: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """Secret variables replaced by `NAME_FILE=/run/secrets/<NAME>`; returns the new environment
    and the variables the service needs as secrets."""
    out: dict[str, Any] = {}
    used: list[str] = []
    for key, value in environment.items():
        if key in needed:
            out[f"{key}_FILE"] = f"/run/secrets/{key}"
            used.append(key)
        else:
            out[key] = value
    return out, used


def stack_services(instance: InstanceConfig, compose_texts: Mapping[str, str]) -> dict[str, Any]:
    """The merged compose `services:` an instance runs on Swarm (external queue/storage left out)."""
    merged: dict[str, Any] = {}
    for text in compose_texts.values():
        merged = merge(merged, yaml.safe_load(text) or {})
    services: dict[str, Any] = dict(merged.get("services") or {})
    if instance.swarm.external_database:
        services.pop("queue", None)
    if instance.swarm.external_s3:
        services.pop("storage", None)
    for spec in services.values():  # nothing depends on a left-out service
        if isinstance(spec.get("depends_on"), dict):
            spec["depends_on"] = {k: v for k, v in spec["depends_on"].items() if k in services}
    return services


def stack_levels(instance: InstanceConfig) -> tuple[tuple[str, ...], ...]:
    """The dependency levels of the instance's stack; reads no .env (a plan writes nothing)."""
    from isletops import stack  # the compose templates' renderer

    return dependency_levels(stack_services(instance, stack.render_compose_files(instance, gpu=False)))


def render_stack(
    instance: InstanceConfig,
    compose_texts: Mapping[str, str],
    env: Mapping[str, str],
    gpu_nodes: bool = True,
) -> RenderedStack:
    """Turn the instance's rendered compose files (`{file name: text}`, in merge order) and its
    `.env` values into a Swarm stack. `gpu_nodes` False leaves the GPU placement out (a CPU site)."""
    settings = instance.swarm
    merged: dict[str, Any] = {}
    for text in compose_texts.values():
        merged = merge(merged, yaml.safe_load(text) or {})
    services_in = stack_services(instance, compose_texts)
    levels = dependency_levels(services_in)
    if settings.external_s3 and not env.get("S3_ENDPOINT_URL"):
        raise ConfigError(
            f"Instance '{instance.name}' uses an external S3 (swarm.external_s3) but S3_ENDPOINT_URL is not set.",
            "Set S3_ENDPOINT_URL, S3_ACCESS_KEY and S3_SECRET_KEY in the instance's .env.",
        )

    database_url_env = dict(env)
    if not settings.external_database:
        database_url_env.setdefault(
            "DATABASE_URL", f"postgresql://isletnet:{env.get('DB_PASSWORD', '')}@queue:5432/isletnet")
    secret_values: dict[str, str] = {}
    for variable in SECRET_VARIABLES:
        value = database_url_env.get(variable)
        if value:
            secret_values[variable] = value

    services: dict[str, Any] = {}
    used_secrets: set[str] = set()
    for service, raw_spec in services_in.items():
        spec = {k: v for k, v in raw_spec.items() if k not in DROPPED_KEYS and not k.startswith("x-")}
        spec.pop("deploy", None)  # compose's device reservations: Swarm has generic resources instead
        environment = dict(spec.get("environment") or {})
        if "DATABASE_URL" in environment:
            environment["DATABASE_URL"] = "${DATABASE_URL}"  # the secret's value, built above
        environment, used = _env_to_secrets(environment, secret_values)
        used_secrets.update(used)
        if environment:
            spec["environment"] = environment
        spec = interpolate_tree(spec, database_url_env, f"services.{service}")
        if used:
            # Swarm mounts secrets owned by root; the services run as their own users.
            spec["secrets"] = [{"source": variable, "target": variable, "mode": 0o444} for variable in used]
        spec["deploy"] = _deploy(service, spec, settings, gpu_nodes)
        # compose's per-service limits; a stack file forbids them at the top and wants them here.
        limits = {key: str(value) for key, value in (("memory", spec.pop("mem_limit", None)),
                                                     ("cpus", spec.pop("cpus", None))) if value is not None}
        if limits:
            spec["deploy"].setdefault("resources", {})["limits"] = limits
        if service in DATA_VOLUMES:
            spec["volumes"] = [f"{DATA_VOLUMES[service]}:/data"]
        if service == "edge":
            spec["ports"] = [{"target": 8080, "published": instance.http_port, "protocol": "tcp", "mode": "host"}]
        elif service == "backend" and instance.publish_api_port:
            spec["ports"] = [{"target": 8000, "published": instance.api_port, "protocol": "tcp", "mode": "host"}]
        else:
            spec.pop("ports", None)
        services[service] = spec

    network = interpolate_tree((merged.get("networks") or {}).get("default") or {}, env, "networks.default")
    network = {"driver": "overlay", "attachable": True, **{k: v for k, v in network.items() if k == "labels"}}
    if settings.encrypted_overlay:
        network["driver_opts"] = {"encrypted": ""}
    stack_secrets = tuple(
        StackSecret(variable, secret_name(instance.name, variable, secret_values[variable]), secret_values[variable])
        for variable in SECRET_VARIABLES if variable in used_secrets
    )
    document: dict[str, Any] = {"version": STACK_VERSION, "services": services, "networks": {"default": network}}
    volumes = {DATA_VOLUMES[s]: {"labels": dict(network.get("labels") or {})} for s in DATA_VOLUMES if s in services}
    if volumes:
        document["volumes"] = volumes
    if stack_secrets:
        document["secrets"] = {s.variable: {"name": s.name, "external": True} for s in stack_secrets}
    # The docker CLI interpolates the file once more: a `$` from a value must reach it as `$$`.
    return RenderedStack(document=_escape_dollars(document), secrets=stack_secrets, levels=levels)


def _escape_dollars(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _escape_dollars(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_escape_dollars(item) for item in node]
    if isinstance(node, str):
        return node.replace("$", "$$")
    return node


def _deploy(service: str, spec: Mapping[str, Any], settings: Any, gpu_nodes: bool) -> dict[str, Any]:
    deploy: dict[str, Any] = {
        "mode": "replicated",
        "replicas": 1,
        "endpoint_mode": "dnsrr",
        "update_config": _update_config(service, spec),
        "rollback_config": {key: value for key, value in _update_config(service, spec).items()
                            if key in ("parallelism", "delay", "order", "monitor")} | {"failure_action": "pause"},
        "restart_policy": {"condition": "any", "delay": "5s", "window": "60s"},
        "labels": dict(spec.get("labels") or {}),
    }
    constraints: list[str] = []
    replicas_by_service: dict[str, Callable[[], int]] = {
        "backend": lambda: settings.backend_replicas,
        "frontend": lambda: settings.frontend_replicas,
        "shepherd": lambda: settings.shepherd_replicas,
    }
    if service in replicas_by_service:
        deploy["replicas"] = replicas_by_service[service]()
    if service in STATEFUL:
        constraints.append(STORAGE_LABEL)
    if service == "shepherd" and gpu_nodes:
        constraints.append(GPU_LABEL)
        if settings.gpu_generic_resources:
            deploy["resources"] = {"reservations": {"generic_resources": [
                {"discrete_resource_spec": {"kind": GPU_RESOURCE_KIND, "value": 1}}]}}
    if service == "edge":
        deploy["mode"] = "global"
        del deploy["replicas"]
        constraints.append(EDGE_LABEL)
    if constraints:
        deploy["placement"] = {"constraints": constraints}
    return deploy


def stack_for_instance(
    instance: InstanceConfig,
    tag: str | None = None,
    registry: str | None = None,
    gpu_nodes: bool = True,
    extra_labels: Mapping[str, str] | None = None,
) -> RenderedStack:
    """The stack of `instance` for release `tag` (default: the tag its .env names), from its .env.

    Nothing is written; the .env must exist (its generated secrets become Swarm secrets)."""
    from isletops import stack  # the compose templates' renderer; imported late (it imports docker)

    env = read_env_file(instance.env_file)
    if not env:
        raise ConfigError(
            f"Instance '{instance.name}' has no .env at {instance.env_file} yet.",
            "Run isletops deploy TAG once (it writes the .env), or create it with the instance's secrets.",
        )
    tag = tag or env.get("TAG") or ""
    if not tag:
        raise ConfigError(f"Instance '{instance.name}' names no release tag.", "Pass --tag YYYY-MM-DD_NN.")
    managed = stack.managed_env(instance, tag, registry if registry is not None else env.get("REPOSITORY", ""))
    if registry is None:
        managed["REPOSITORY"] = env.get("REPOSITORY", "")
    labels = {**stack.extra_labels_from_env(), **dict(extra_labels or {})}
    texts = stack.render_compose_files(instance, gpu=False, extra_labels=labels)
    return render_stack(instance, texts, {**env, **managed}, gpu_nodes=gpu_nodes)
