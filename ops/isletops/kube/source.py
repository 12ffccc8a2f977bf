"""What the Kubernetes rendering takes from the compose rendering and the Dockerfiles, so that the
chart runs the same images with the same environment, ports and health checks as compose.

The compose template (compose/docker-compose.yml) is the one source: each service's `image`,
`environment`, `healthcheck` and `stop_grace_period` are read from its rendering for the instance
and translated here. Container ports are the `EXPOSE` lines of services/<component>/Dockerfile.
Pure functions over text; no cluster, no Docker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from isletops.config import GENERATED_SECRETS, InstanceConfig
from isletops.errors import ConfigError
from isletops.render import PROJECT_ROOT
from isletops.stack import render_compose_files

# The edge holds a host port on compose; on Kubernetes the Ingress takes its place (and its nginx
# resolves through Docker's DNS, which a cluster does not have), so it is not rendered.
KUBERNETES_COMPONENTS: tuple[str, ...] = ("storage", "queue", "backend", "shepherd", "pruner", "frontend")
STATEFUL_COMPONENTS: frozenset[str] = frozenset({"storage", "queue"})
CONFIGMAP_NAME = "isletnet-config"
SECRET_NAME = "isletnet-secrets"  # noqa: S105 - the Secret object's name, not a secret  # nosec B105
# Queued plus running jobs: what the shepherd's autoscaling divides by targetPerWorker.
QUEUE_DEPTH_QUERY = "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"

_DEFAULTED = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-(?P<default>[^}]*)\}$")
_REQUIRED = re.compile(r"\$\{(?P<name>[A-Z0-9_]+):\?[^}]*\}")
_IMAGE = re.compile(r"^\$\{REPOSITORY-\}(?P<name>[a-z0-9._-]+):\$\{TAG:\?[^}]*\}$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class EnvVar:
    """One environment variable of a compose service and where it comes from on Kubernetes.

    kind `config`: a key of the ConfigMap (default: compose's default or literal); `secret`: a key
    of the Secret, either a generated secret itself or a value built from them (`pattern`)."""

    name: str
    kind: str  # config | secret
    default: str = ""
    pattern: str = ""


@dataclass(frozen=True)
class Probe:
    """A compose healthcheck as a Kubernetes probe handler and its timing."""

    handler: dict[str, Any]
    period_s: int
    timeout_s: int
    retries: int
    start_period_s: int

    def probes(self) -> dict[str, dict[str, Any]]:
        """startup (covers start_period), readiness and liveness, all on the same check."""
        common = {**self.handler, "periodSeconds": self.period_s, "timeoutSeconds": self.timeout_s}
        return {
            "startupProbe": {**common, "failureThreshold": math.ceil(self.start_period_s / self.period_s)
                             + self.retries},
            "readinessProbe": {**common, "failureThreshold": self.retries},
            "livenessProbe": {**common, "failureThreshold": self.retries},
        }


@dataclass(frozen=True)
class Service:
    """One compose service, as the chart needs it."""

    component: str
    image_name: str  # isletnet-<component>, before the tag
    env: tuple[EnvVar, ...]
    probe: Probe | None
    ports: tuple[int, ...]
    stop_grace_s: int


def compose_services(instance: InstanceConfig, gpu: bool) -> dict[str, dict[str, Any]]:
    """The `services` of docker-compose.yml as rendered for `instance`."""
    text = render_compose_files(instance, gpu)["docker-compose.yml"]
    return dict(yaml.safe_load(text)["services"])


def duration_seconds(text: str | int | float) -> float:
    """A compose duration (`1m30s`, `500ms`, or a number of seconds) in seconds."""
    if isinstance(text, int | float):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ConfigError(f"'{text}' is not a compose duration.", "Write durations like 5s, 1m30s or 500ms.")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_env(environment: dict[str, Any]) -> tuple[EnvVar, ...]:
    """Classify compose `environment` values: `${X:-d}` and literals are settings (ConfigMap),
    anything naming a generated secret (`${DB_PASSWORD:?...}`) comes from the Secret."""
    result = []
    for name, raw in environment.items():
        value = "" if raw is None else str(raw)
        required = _REQUIRED.findall(value)
        unknown = [var for var in required if var not in GENERATED_SECRETS]
        if unknown:
            raise ConfigError(f"Compose variable {name} needs {', '.join(unknown)}, which the chart cannot supply.",
                              f"Only the generated secrets ({', '.join(GENERATED_SECRETS)}) may be required.")
        if required:
            whole = _REQUIRED.fullmatch(value)
            result.append(EnvVar(name, "secret", pattern="" if whole and whole["name"] == name else value))
            continue
        defaulted = _DEFAULTED.match(value)
        if defaulted and defaulted["name"] != name:
            raise ConfigError(f"Compose variable {name} reads ${{{defaulted['name']}}}; the chart needs the same name.")
        if "${" in value and not defaulted:
            raise ConfigError(f"Compose variable {name}='{value}' is an interpolation the chart does not know.")
        result.append(EnvVar(name, "config", default=defaulted["default"] if defaulted else value))
    return tuple(result)


def secret_value(pattern: str, secrets: dict[str, str]) -> str:
    """A derived secret (e.g. DATABASE_URL) with the generated secrets filled in."""
    return _REQUIRED.sub(lambda match: secrets[match["name"]], pattern)


def secret_format(pattern: str) -> tuple[str, list[str]]:
    """A derived secret as a printf format and the secrets it takes, in order (for Helm)."""
    names = [match["name"] for match in _REQUIRED.finditer(pattern)]
    literal_parts = _REQUIRED.split(pattern)[::2]
    return "%s".join(part.replace("%", "%%") for part in literal_parts), names


def parse_probe(healthcheck: dict[str, Any] | None) -> Probe | None:
    """`curl -fsS ... http://127.0.0.1:PORT/PATH` becomes an httpGet probe; any other command an exec probe."""
    if not healthcheck or healthcheck.get("disable"):
        return None
    test = list(healthcheck["test"])
    if test[0] not in ("CMD", "CMD-SHELL"):
        raise ConfigError(f"Healthcheck {test} does not start with CMD.")
    command = test[1:] if test[0] == "CMD" else ["sh", "-c", test[1]]
    url = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/\S*)", command[-1]) if command[0] == "curl" else None
    handler: dict[str, Any] = (
        {"httpGet": {"path": url[2], "port": int(url[1])}} if url else {"exec": {"command": command}}
    )
    return Probe(
        handler=handler,
        period_s=max(1, round(duration_seconds(healthcheck.get("interval", "30s")))),
        timeout_s=max(1, round(duration_seconds(healthcheck.get("timeout", "30s")))),
        retries=int(healthcheck.get("retries", 3)),
        start_period_s=round(duration_seconds(healthcheck.get("start_period", "0s"))),
    )


@dataclass(frozen=True)
class ImageConfig:
    """What an image's Dockerfile says that the chart needs: its EXPOSEd ports and its USER."""

    ports: tuple[int, ...]
    user: str


def _stages(text: str) -> dict[str, tuple[str, list[list[str]]]]:
    """Stage name -> (the stage it is built FROM, its instructions as word lists); unnamed stages
    get their index. Continuation lines are joined."""
    stages: dict[str, tuple[str, list[list[str]]]] = {}
    current: list[list[str]] = []
    for line in re.sub(r"\\\n", " ", text).splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].upper() == "FROM":
            name = words[3] if len(words) >= 4 and words[2].upper() == "AS" else str(len(stages))
            current = []
            stages[name] = (words[1], current)
        elif stages:
            current.append(words)
    return stages


def image_config(component: str, root: Path = PROJECT_ROOT) -> ImageConfig:
    """The ports and user of a component's image: services/<component>/Dockerfile (its last stage),
    or the `<component>` stage of services/python.Dockerfile, following the stages it is built FROM."""
    own = root / "services" / component / "Dockerfile"
    if own.exists():
        stages, target = _stages(own.read_text()), None
    else:
        shared = root / "services" / "python.Dockerfile"
        if not shared.exists():
            raise ConfigError(f"No Dockerfile builds the {component} image.", f"Expected {own} or {shared}.")
        stages, target = _stages(shared.read_text()), component
    name = target or list(stages)[-1]
    if name not in stages:
        raise ConfigError(f"No stage '{name}' builds the {component} image.")
    chain = []
    while name in stages:
        chain.append(stages[name][1])
        name = stages[name][0]
    ports: list[int] = []
    user = ""
    for instructions in reversed(chain):  # the base stage first, so the target's USER wins
        for words in instructions:
            if words[0].upper() == "EXPOSE":
                ports += [int(word.split("/")[0]) for word in words[1:]]
            elif words[0].upper() == "USER" and len(words) > 1:
                user = words[1]
    return ImageConfig(tuple(ports), user)


def dockerfile_ports(component: str, root: Path = PROJECT_ROOT) -> tuple[int, ...]:
    """The ports a component's image EXPOSEs."""
    return image_config(component, root).ports


def services(instance: InstanceConfig, gpu: bool) -> dict[str, Service]:
    """Every component the chart runs, read from the compose rendering and the Dockerfiles."""
    compose = compose_services(instance, gpu)
    result = {}
    for component in KUBERNETES_COMPONENTS:
        service = compose[component]
        image = _IMAGE.match(str(service["image"]))
        if not image:
            raise ConfigError(f"Compose image '{service['image']}' is not ${{REPOSITORY-}}NAME:${{TAG}}.")
        result[component] = Service(
            component=component,
            image_name=image["name"],
            env=parse_env(service.get("environment") or {}),
            probe=parse_probe(service.get("healthcheck")),
            ports=dockerfile_ports(component),
            stop_grace_s=round(duration_seconds(service.get("stop_grace_period", "10s"))),
        )
    return result


def config_defaults(all_services: dict[str, Service]) -> dict[str, str]:
    """Every ConfigMap key and its compose default, in order of first use."""
    defaults: dict[str, str] = {}
    for service in all_services.values():
        for var in service.env:
            if var.kind == "config":
                defaults.setdefault(var.name, var.default)
    return defaults


def derived_secrets(all_services: dict[str, Service]) -> dict[str, str]:
    """Secret keys built from the generated secrets (name -> compose pattern), e.g. DATABASE_URL."""
    return {var.name: var.pattern for service in all_services.values() for var in service.env if var.pattern}
