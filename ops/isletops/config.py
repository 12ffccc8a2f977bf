"""The one loader for site configuration: a YAML file plus each instance's env file.

An *instance* is one running copy of IsletNet (production, staging, ...). It lives in its own
folder `<instances_root>/<name>`; the folder name is the compose project name, so several
instances coexist on one host. The folder holds the env file (`.env`, mode 0600, generated
secrets), the rendered compose files, the deploy history and lock, and monitor state.

Validation happens here, once, with messages that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

from isletops.errors import ConfigError
from isletops.release import COMPONENTS

# Orchestrators an instance may run on (`engine:`); `isletops.engines.engine_for` makes them.
ENGINE_NAMES: tuple[str, ...] = ("compose", "kubernetes", "swarm")

DEFAULT_CONFIG_PATH = Path("isletops.yml")
CONFIG_ENV_VAR = "ISLETOPS_CONFIG"
INSTANCE_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# Secrets generated into an instance's env file on first use; never committed, never logged.
# ISLETNET_PROBE_TOKEN is the API token of the `probe` account (monitor e2e probe, deploy gate);
# the backend registers its hash at start.
GENERATED_SECRETS: tuple[str, ...] = ("S3_ACCESS_KEY", "S3_SECRET_KEY", "DB_PASSWORD", "ISLETNET_PROBE_TOKEN")


@dataclass(frozen=True)
class MailConfig:
    """Where alert mail goes and how it is sent. The SMTP password lives in the env file."""

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    security: str = "none"  # none | starttls | ssl
    username: str = ""
    password_env: str = "SMTP_PASSWORD"  # noqa: S105 - a variable name, not a secret; name of the env-file variable holding the password
    sender: str = "isletops@localhost"
    recipients: tuple[str, ...] = ()
    timeout_s: float = 10.0
    ca_file: str = ""  # PEM bundle to trust for STARTTLS/SSL (a hospital's private CA); empty: system CAs


@dataclass(frozen=True)
class SelfHealConfig:
    """Guarded self-healing (`monitoring.self_heal`): restart a service that stays exited or
    unhealthy for `after_checks` checks, at most `max_restarts` times per `window_s` seconds;
    `services` turns it off (false) for single services."""

    enabled: bool = True
    after_checks: int = 2
    max_restarts: int = 3
    window_s: int = 1800
    services: dict[str, bool] = field(default_factory=dict)

    def applies_to(self, service: str) -> bool:
        return self.enabled and self.services.get(service, True)


@dataclass(frozen=True)
class MonitoringConfig:
    """Alerting thresholds and per-probe settings (probe name -> its options)."""

    failures_to_alert: int = 3
    successes_to_resolve: int = 2
    reminder_interval_s: int = 4 * 3600
    heartbeat_url: str = ""
    status_port: int = 9110
    gpu_expected: bool = False
    runbook_url: str = "docs/runbook.md"
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_window_s: int = 900  # probes firing this soon after an incident opened join it without a mail
    alert_on_unknown: bool = True  # a probe that cannot tell (UNKNOWN) alerts like a failure
    flap_window: int = 10  # results looked at to detect flapping
    flap_threshold: int = 5  # pass/fail changes within the window that make a probe "flapping"
    cron_schedule: str = "*/5 * * * *"  # what `isletops monitor install-cron` writes
    self_heal: SelfHealConfig = field(default_factory=SelfHealConfig)


@dataclass(frozen=True)
class SwarmConfig:
    """How an instance runs on Docker Swarm (`instances.<name>.swarm`; see isletops.swarm_stack)."""

    backend_replicas: int = 2
    frontend_replicas: int = 2
    shepherd_replicas: int = 1  # the autoscaler moves it between its bounds
    # Ask for one `NVIDIA-GPU` generic resource per shepherd task: nodes advertise theirs in
    # daemon.json (`node-generic-resources`), so Swarm places at most one task per GPU.
    gpu_generic_resources: bool = False
    # IPsec between nodes on the overlay network. Needs ESP in every node's kernel: without it
    # tasks on different nodes cannot talk at all. Off: traffic between nodes is in clear, so the
    # nodes' network must be private (a VLAN, a WireGuard mesh).
    encrypted_overlay: bool = False
    # External services instead of the pinned queue/storage services (secrets stay in .env).
    external_database: bool = False  # DATABASE_URL in the instance's .env
    external_s3: bool = False  # S3_ENDPOINT_URL (and keys) in the instance's .env


@dataclass(frozen=True)
class ResourceLimits:
    """One service's memory and CPU limits (compose `mem_limit`/`cpus`, honoured by v1 and v2+)."""

    memory: str  # compose's byte value: a number with an optional b, k, m or g, e.g. 512m
    cpus: float | None = None  # None: no CPU limit; otherwise capped at the host's cores when rendered


# Defaults per service, from the peaks measured on a test stack (docs/architecture.md, "Limits").
# The backend still builds report.pdf and archive.zip in memory (645 MiB for a 12-image job of
# 1 Mpx images); once they stream, 1g is enough.
DEFAULT_LIMITS: dict[str, ResourceLimits] = {
    "storage": ResourceLimits("512m", 1.0),
    "queue": ResourceLimits("512m", 1.0),
    "backend": ResourceLimits("2g", 2.0),
    "shepherd": ResourceLimits("3g"),
    "pruner": ResourceLimits("256m", 0.5),
    "frontend": ResourceLimits("256m", 1.0),
    "edge": ResourceLimits("128m", 1.0),
}
_MEMORY_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)([bkmg]?)$", re.I)
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
MIN_MEMORY_BYTES = 6 << 20  # Docker refuses a memory limit below 6 MiB


def memory_bytes(value: str) -> int:
    """`512m` -> 536870912 (compose's units: b, k, m, g, powers of 1024)."""
    match = _MEMORY_PATTERN.match(value.strip())
    if not match:
        raise ValueError(value)
    return int(float(match.group(1)) * _MEMORY_UNITS[match.group(2).lower()])


@dataclass(frozen=True)
class InstanceConfig:
    """One instance of the stack: where it lives and how it is exposed."""

    name: str
    directory: Path
    http_port: int = 8080
    api_port: int = 8081
    # Publish the backend's port on the host too (for clients that must bypass nginx). Off, the
    # default, the backend can run twice side by side during a deploy (no port clash: zero
    # downtime) and clients reach it through the edge and the frontend's /api/ on http_port.
    publish_api_port: bool = False
    bind_address: str = "127.0.0.1"
    data_dir: Path | None = None
    gpu: str = "auto"  # auto | yes | no
    engine: str = "compose"  # the orchestrator that runs it (isletops.engines.ENGINE_NAMES)
    public_url: str = ""
    health_timeout_s: int = 180
    # Consecutive failed health checks, after a container's start period, that fail it at once.
    health_failed_checks: int = 3
    max_upload_mb: int = 200
    retention_days: float = 30.0
    # How long the edge and the frontend wait on a proxied upload or answer (PROXY_TIMEOUT_S);
    # keep it at the host nginx's nginx_proxy_timeout_s, which provisioning copies here.
    proxy_timeout_s: int = 600
    swarm: SwarmConfig = field(default_factory=SwarmConfig)
    # Sign-in: `password` (accounts of the instance) or `proxy` (trust `auth_proxy_header` from a
    # reverse proxy at `auth_proxy_addresses`, e.g. oauth2-proxy or the hospital's SSO).
    auth: str = "password"
    auth_proxy_addresses: tuple[str, ...] = ()
    auth_proxy_header: str = "X-Forwarded-User"
    # Memory and CPU limits per service: DEFAULT_LIMITS with the site config's `limits` over them.
    limits: dict[str, ResourceLimits] = field(default_factory=lambda: dict(DEFAULT_LIMITS))

    @property
    def project_name(self) -> str:
        """The compose project name: the instance folder's name."""
        return self.directory.name

    @property
    def env_file(self) -> Path:
        return self.directory / ".env"

    @property
    def local_data_dir(self) -> Path:
        return self.data_dir or self.directory / "data"

    @property
    def state_dir(self) -> Path:
        """Files other commands and people read: history, lock, monitor state."""
        return self.directory / "state"

    @property
    def connect_host(self) -> str:
        """The address to reach the instance's published ports on this host."""
        return _url_host(self.bind_address)

    @property
    def frontend_url(self) -> str:
        """The instance's public HTTP port (the edge, which proxies everything to the frontend); on
        Kubernetes the Ingress, `public_url`."""
        if self.engine == "kubernetes" and self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.connect_host}:{self.http_port}"

    @property
    def api_url(self) -> str:
        """Base URL that answers the API's `/api/...` paths: the backend's own port when it is
        published, otherwise the public port, whose frontend proxies `/api/` to the backend."""
        if self.publish_api_port:
            return f"http://{self.connect_host}:{self.api_port}"
        return self.frontend_url


@dataclass(frozen=True)
class SiteConfig:
    """The whole site: registry, where instances live, and shared monitoring/mail settings."""

    source: Path | None
    registry: str = ""
    registry_username: str = ""  # the password comes from $ISLETOPS_REGISTRY_PASSWORD only, never a file
    retain_releases: int = 5  # release images kept on the host after a deploy (0: never prune)
    base_image_max_age_days: int = 30  # `isletops build` warns when the base image is older (0: never)
    instances_root: Path = Path("instances")
    default_instance: str = "demo"
    instances: dict[str, InstanceConfig] = field(default_factory=dict)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    mail: MailConfig = field(default_factory=MailConfig)

    def instance(self, name: str | None = None) -> InstanceConfig:
        """The named instance (default: `default_instance`); unknown names get defaults."""
        name = name or self.default_instance
        validate_instance_name(name)
        if name in self.instances:
            return self.instances[name]
        return InstanceConfig(name=name, directory=(self.instances_root / name).resolve())


def _url_host(bind_address: str) -> str:
    return "127.0.0.1" if bind_address in ("", "0.0.0.0") else bind_address  # noqa: S104 - comparison only  # nosec B104


def validate_instance_name(name: str) -> str:
    """Instance names become compose project names, so they follow compose's rule."""
    if not INSTANCE_NAME_PATTERN.match(name or ""):
        raise ConfigError(
            f"'{name}' is not a valid instance name.",
            "Use lower-case letters, digits, '-' and '_', starting with a letter or digit (e.g. prod, staging).",
        )
    return name


def _build(cls: type, raw: Any, where: str, **extra: Any) -> Any:
    """Build dataclass `cls` from a mapping, naming unknown keys and wrong types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping of settings, not {type(raw).__name__}.")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(
            f"{where} has unknown setting(s): {', '.join(unknown)}.",
            f"Known settings: {', '.join(sorted(k for k in known if k not in extra))}.",
        )
    values: dict[str, Any] = dict(extra)
    for key, value in raw.items():
        expected = known[key].type
        values[key] = _coerce(value, str(expected), f"{where}.{key}")
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"{where} is incomplete: {exc}.") from None


def _coerce(value: Any, type_name: str, where: str) -> Any:
    if "Path" in type_name:
        return Path(os.path.expanduser(str(value))) if value is not None else None
    if type_name == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}.")
        return value
    if type_name == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if type_name == "str":
        if isinstance(value, dict | list):
            raise ConfigError(f"{where} must be text, got {type(value).__name__}.")
        return str(value)
    if type_name.startswith("tuple"):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        return tuple(str(item) for item in value)
    return value


def load_config(path: str | Path | None = None) -> SiteConfig:
    """Load the site config from `path`, `$ISLETOPS_CONFIG` or `./isletops.yml`.

    With no file at the default location, built-in defaults are used (a local `demo` instance
    under `./instances`). A file named explicitly must exist.
    """
    explicit = path or os.environ.get(CONFIG_ENV_VAR)
    config_path = Path(explicit) if explicit else DEFAULT_CONFIG_PATH
    if not config_path.exists():
        if explicit:
            raise ConfigError(
                f"Config file {config_path} does not exist.",
                "Pass --config with the path of your isletops.yml (see inventory/ for examples).",
            )
        return SiteConfig(source=None, instances_root=Path("instances").resolve())
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"Config file {config_path} is not valid YAML{where}.", "Fix the syntax and retry.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {config_path}: {exc.strerror}.") from None
    return parse_config(raw, config_path)


def parse_config(raw: Any, source: Path | None = None) -> SiteConfig:
    """Validate a parsed YAML document into a `SiteConfig`."""
    name = str(source) if source else "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{name} must be a mapping at the top level.")
    allowed = {"registry", "registry_username", "retain_releases", "base_image_max_age_days",
               "instances_root", "default_instance", "instances", "monitoring", "mail"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(
            f"{name} has unknown setting(s): {', '.join(unknown)}.", f"Known: {', '.join(sorted(allowed))}."
        )
    base_dir = source.parent.resolve() if source else Path.cwd()
    root = Path(os.path.expanduser(str(raw.get("instances_root", "instances"))))
    instances_root = root if root.is_absolute() else (base_dir / root).resolve()
    instances_raw = raw.get("instances") or {}
    if not isinstance(instances_raw, dict):
        raise ConfigError(f"{name}: 'instances' must map instance names to their settings.")
    instances = {}
    for instance_name, settings in instances_raw.items():
        validate_instance_name(str(instance_name))
        where = f"{name}: instances.{instance_name}"
        settings = dict(settings) if isinstance(settings, dict) else settings
        swarm = _build_swarm(settings.pop("swarm", None) if isinstance(settings, dict) else None, f"{where}.swarm")
        limits = parse_limits(settings.pop("limits", None) if isinstance(settings, dict) else None,
                              f"{where}.limits")
        instance = _build(
            InstanceConfig,
            settings,
            where,
            name=str(instance_name),
            directory=instances_root / str(instance_name),
            swarm=swarm,
            limits=limits,
        )
        if instance.gpu not in ("auto", "yes", "no"):
            raise ConfigError(f"{name}: instances.{instance_name}.gpu must be auto, yes or no.")
        _check_auth(instance, f"{name}: instances.{instance_name}")
        if instance.health_failed_checks < 1:
            raise ConfigError(f"{name}: instances.{instance_name}.health_failed_checks must be 1 or more.")
        if instance.engine not in ENGINE_NAMES:
            raise ConfigError(
                f"{name}: instances.{instance_name}.engine must be one of {', '.join(ENGINE_NAMES)}, "
                f"not '{instance.engine}'."
            )
        if instance.proxy_timeout_s < 1:
            raise ConfigError(f"{name}: instances.{instance_name}.proxy_timeout_s must be at least 1 second, "
                              f"got {instance.proxy_timeout_s}.")
        instances[str(instance_name)] = instance
    _check_port_clashes(instances, name)
    monitoring = _build_monitoring(raw.get("monitoring"), name)
    mail = _build(MailConfig, raw.get("mail"), f"{name}: mail")
    if mail.security not in ("none", "starttls", "ssl"):
        raise ConfigError(f"{name}: mail.security must be none, starttls or ssl.")
    default_instance = str(raw.get("default_instance") or next(iter(instances), "demo"))
    validate_instance_name(default_instance)
    retain_releases = _coerce(raw.get("retain_releases", 5), "int", f"{name}: retain_releases")
    if retain_releases < 0:
        raise ConfigError(f"{name}: retain_releases must be 0 (never prune) or more, got {retain_releases}.")
    max_age = _coerce(raw.get("base_image_max_age_days", 30), "int", f"{name}: base_image_max_age_days")
    if max_age < 0:
        raise ConfigError(f"{name}: base_image_max_age_days must be 0 (no warning) or more days, got {max_age}.",
                          "The default, 30, warns when the base image misses a month of Debian security fixes.")
    return SiteConfig(
        source=source,
        registry=str(raw.get("registry") or ""),
        registry_username=_coerce(raw.get("registry_username") or "", "str", f"{name}: registry_username"),
        retain_releases=retain_releases,
        base_image_max_age_days=max_age,
        instances_root=instances_root,
        default_instance=default_instance,
        instances=instances,
        monitoring=monitoring,
        mail=mail,
    )


def _build_swarm(raw: Any, where: str) -> SwarmConfig:
    swarm = _build(SwarmConfig, raw, where)
    for key in ("backend_replicas", "frontend_replicas"):
        if getattr(swarm, key) < 1:
            raise ConfigError(f"{where}.{key} must be at least 1, got {getattr(swarm, key)}.")
    if swarm.shepherd_replicas < 0:
        raise ConfigError(f"{where}.shepherd_replicas must be 0 or more, got {swarm.shepherd_replicas}.")
    return swarm


def _build_monitoring(raw: Any, name: str) -> MonitoringConfig:
    """`monitoring`, with its nested `self_heal` mapping validated key by key."""
    if not isinstance(raw, dict):
        return _build(MonitoringConfig, raw, f"{name}: monitoring")
    settings = dict(raw)
    heal_raw = settings.pop("self_heal", None)
    heal_where = f"{name}: monitoring.self_heal"
    heal = _build(SelfHealConfig, heal_raw, heal_where)
    for key in ("after_checks", "max_restarts", "window_s"):
        if getattr(heal, key) < 1:
            raise ConfigError(f"{heal_where}.{key} must be at least 1, got {getattr(heal, key)}.")
    services = heal.services if heal.services is not None else {}
    if not isinstance(services, dict) or not all(isinstance(v, bool) for v in services.values()):
        raise ConfigError(
            f"{heal_where}.services must map service names to true or false.", "Example: services: {queue: false}"
        )
    unknown = sorted(str(key) for key in services if key not in COMPONENTS)
    if unknown:
        raise ConfigError(f"{heal_where}.services names unknown service(s): {', '.join(unknown)}.",
                          f"Services: {', '.join(COMPONENTS)}.")
    monitoring = _build(MonitoringConfig, settings, f"{name}: monitoring")
    return dataclasses.replace(monitoring, self_heal=dataclasses.replace(heal, services=dict(services)))


def _check_auth(instance: InstanceConfig, where: str) -> None:
    """`auth: proxy` needs the proxy's addresses; each must be an IP address or network."""
    if instance.auth not in ("password", "proxy"):
        raise ConfigError(f"{where}.auth must be password or proxy, not {instance.auth!r}.")
    if instance.auth == "proxy" and not instance.auth_proxy_addresses:
        raise ConfigError(f"{where}.auth is proxy but auth_proxy_addresses is empty.",
                          "List the reverse proxy's addresses, e.g. auth_proxy_addresses: [10.0.0.5].")
    for address in instance.auth_proxy_addresses:
        try:
            ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ConfigError(f"{where}.auth_proxy_addresses: {address!r} is not an IP address or network.") from None
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", instance.auth_proxy_header):
        raise ConfigError(f"{where}.auth_proxy_header: {instance.auth_proxy_header!r} is not an HTTP header name.")


def parse_limits(raw: Any, where: str) -> dict[str, ResourceLimits]:
    """`{shepherd: {memory: 4g, cpus: 2}}` over `DEFAULT_LIMITS`; each bad value named."""
    limits = dict(DEFAULT_LIMITS)
    if raw is None:
        return limits
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must map services to their limits, e.g. {{shepherd: {{memory: 4g, cpus: 2}}}}.")
    for service, settings in raw.items():
        if service not in DEFAULT_LIMITS:
            raise ConfigError(f"{where} names an unknown service '{service}'.",
                              f"Services: {', '.join(DEFAULT_LIMITS)}.")
        if not isinstance(settings, dict) or not settings or set(settings) - {"memory", "cpus"}:
            raise ConfigError(f"{where}.{service} must set memory and/or cpus, e.g. {{memory: 4g, cpus: 2}}.")
        memory = str(settings.get("memory", limits[service].memory)).strip()
        try:
            too_small = memory_bytes(memory) < MIN_MEMORY_BYTES
        except ValueError:
            raise ConfigError(f"{where}.{service}.memory must be a size such as 512m or 4g, got {memory!r}.") from None
        if too_small:
            raise ConfigError(f"{where}.{service}.memory must be at least 6m (Docker's minimum), got {memory}.")
        cpus = settings.get("cpus", limits[service].cpus)
        if cpus is not None:
            cpus = _coerce(cpus, "float", f"{where}.{service}.cpus")
            if not cpus >= 0.01:  # also refuses .nan
                raise ConfigError(f"{where}.{service}.cpus must be at least 0.01 (a share of one core), got {cpus}.")
        limits[service] = ResourceLimits(memory.lower(), cpus)
    return limits


def _check_port_clashes(instances: dict[str, InstanceConfig], name: str) -> None:
    seen: dict[int, str] = {}
    for instance in instances.values():
        for port in (instance.http_port, instance.api_port):
            if port in seen:
                raise ConfigError(
                    f"{name}: port {port} is used by both instance '{seen[port]}' and '{instance.name}'.",
                    "Give each instance its own http_port and api_port.",
                )
            seen[port] = instance.name


def read_env_file(path: Path) -> dict[str, str]:
    """Read an `.envrc`-style env file (`KEY=value`, `export KEY=value`, comments)."""
    if not path.exists():
        return {}
    return {key: value or "" for key, value in dotenv_values(path).items()}


def read_yaml_mapping(path: Path, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (`what` names it in errors: "Values file")."""
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"Cannot read {what.lower()} {path}: {exc.strerror}.") from None
    except yaml.YAMLError:
        raise ConfigError(f"{what} {path} is not valid YAML.") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{what} {path} must be a mapping of settings.")
    return loaded


def ensure_env_file(instance: InstanceConfig, settings: dict[str, str]) -> dict[str, str]:
    """Create or update the instance's env file, mode 0600, generating missing secrets.

    Values already in the file win: a re-run never rotates a secret or undoes a hand edit.
    Returns the resulting variables.
    """
    instance.directory.mkdir(parents=True, exist_ok=True)
    current = read_env_file(instance.env_file)
    merged = dict(settings)
    for key in GENERATED_SECRETS:
        merged.setdefault(key, secrets.token_hex(20))
    merged.update(current)
    if merged != current or not instance.env_file.exists():
        lines = ["# Written by isletops; values here win over generated ones. Mode 0600: holds secrets."]
        lines += [f"{key}={value}" for key, value in sorted(merged.items())]
        tmp = instance.env_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        os.replace(tmp, instance.env_file)
    os.chmod(instance.env_file, 0o600)
    return merged
