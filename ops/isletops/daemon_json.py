"""The merge of IsletNet's Docker daemon settings into an existing /etc/docker/daemon.json.

Pure logic, standard library only: the playbook's filter plugin (playbooks/filter_plugins) calls
`merge_daemon_json_text` on the controller and writes the result with ansible's `copy`, so there
is exactly one implementation. Keys we do not own are always kept; a file whose merged content
equals its current content is returned byte for byte, so an unchanged host reports no change and
Docker is not restarted.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from typing import Any

from isletops.errors import ProvisionError

DAEMON_JSON_PATH = "/etc/docker/daemon.json"

# Docker's built-in pools cover 172.17-172.31/16 and 192.168/16, which collide with hospital LANs.
DEFAULT_ADDRESS_POOLS: tuple[dict[str, Any], ...] = ({"base": "172.30.0.0/16", "size": 24},)
DEFAULT_DATA_ROOT = "/home/docker"
# What `nvidia-ctk runtime configure --runtime=docker --set-as-default` writes.
NVIDIA_RUNTIME_NAME = "nvidia"
NVIDIA_RUNTIME: dict[str, Any] = {"path": "nvidia-container-runtime", "args": []}
LOG_DRIVER = "json-file"


class DaemonJsonError(ProvisionError):
    """The existing daemon.json cannot be merged (invalid JSON) or our settings are invalid."""


@dataclass(frozen=True)
class DaemonSettings:
    """What IsletNet needs from the Docker daemon. Empty `data_root` leaves data-root as it is."""

    data_root: str = DEFAULT_DATA_ROOT
    default_address_pools: tuple[dict[str, Any], ...] = field(default=DEFAULT_ADDRESS_POOLS)
    log_max_size: str = "10m"
    log_max_file: str = "3"
    gpu: bool = False

    def __post_init__(self) -> None:
        validate_settings(self)


def validate_settings(settings: DaemonSettings) -> None:
    """Reject settings that would make dockerd refuse to start, naming the bad value."""
    if settings.data_root and not settings.data_root.startswith("/"):
        raise DaemonJsonError(f"docker_data_root must be an absolute path, got '{settings.data_root}'.")
    if not settings.default_address_pools:
        raise DaemonJsonError("docker_address_pools must list at least one pool, e.g. {base: 172.30.0.0/16, size: 24}.")
    for pool in settings.default_address_pools:
        if not isinstance(pool, dict) or set(pool) != {"base", "size"}:
            raise DaemonJsonError(f"Address pool {pool!r} must have exactly the keys 'base' and 'size'.")
        try:
            network = ipaddress.ip_network(str(pool["base"]), strict=True)
        except ValueError:
            raise DaemonJsonError(f"Address pool base '{pool['base']}' is not a network like 172.30.0.0/16.") from None
        size = pool["size"]
        valid_size = isinstance(size, int) and not isinstance(size, bool)
        if not valid_size or not network.prefixlen <= size <= network.max_prefixlen:
            raise DaemonJsonError(
                f"Address pool size {size!r} must be a prefix length between {network.prefixlen} and "
                f"{network.max_prefixlen} for base {network}."
            )
    for name, value in (("log max-size", settings.log_max_size), ("log max-file", settings.log_max_file)):
        if not isinstance(value, str) or not value:
            raise DaemonJsonError(
                f"The {name} option must be a non-empty string (Docker rejects numbers), got {value!r}."
            )


def parse_daemon_json(text: str, path: str = DAEMON_JSON_PATH) -> dict[str, Any]:
    """The current settings; an empty or missing file means none. Invalid JSON is an error."""
    if not text.strip():
        return {}
    try:
        current = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DaemonJsonError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it was left untouched, fix it by hand and run provisioning again."
        ) from None
    if not isinstance(current, dict):
        raise DaemonJsonError(
            f"{path} must hold a JSON object, not a {type(current).__name__}; "
            "it was left untouched, fix it by hand and run provisioning again."
        )
    return current


def merge_daemon_settings(current: dict[str, Any], settings: DaemonSettings) -> dict[str, Any]:
    """`current` with our keys set; every other key (and its order) kept."""
    merged = json.loads(json.dumps(current))  # deep copy; never mutate the caller's dict
    if settings.data_root:
        merged["data-root"] = settings.data_root
    merged["default-address-pools"] = [dict(pool) for pool in settings.default_address_pools]
    log_opts = merged.get("log-opts") if isinstance(merged.get("log-opts"), dict) else {}
    if merged.get("log-driver", LOG_DRIVER) != LOG_DRIVER:
        # Options of another driver (syslog-address, gelf-...) make dockerd refuse json-file.
        log_opts = {}
    merged["log-driver"] = LOG_DRIVER
    merged["log-opts"] = {**log_opts, "max-size": settings.log_max_size, "max-file": settings.log_max_file}
    if settings.gpu:
        runtimes = merged.get("runtimes") if isinstance(merged.get("runtimes"), dict) else {}
        merged["runtimes"] = {**runtimes, NVIDIA_RUNTIME_NAME: dict(NVIDIA_RUNTIME)}
        merged["default-runtime"] = NVIDIA_RUNTIME_NAME
    return merged


@dataclass(frozen=True)
class MergeResult:
    """The text to write, whether it differs from the current file, and which keys we set."""

    text: str
    changed: bool
    changed_keys: tuple[str, ...]


def merge_daemon_json_text(
    current_text: str | None, settings: DaemonSettings, path: str = DAEMON_JSON_PATH
) -> MergeResult:
    """Merge `settings` into the text of daemon.json (None: the file does not exist)."""
    current = parse_daemon_json(current_text or "", path)
    merged = merge_daemon_settings(current, settings)
    changed_keys = tuple(key for key in merged if current.get(key) != merged[key])
    if not changed_keys and current_text is not None and current_text.strip():
        # Same settings: keep the file byte for byte (a hand-formatted file stays as it is).
        return MergeResult(text=current_text, changed=False, changed_keys=())
    return MergeResult(text=json.dumps(merged, indent=2) + "\n", changed=True, changed_keys=changed_keys)


def settings_from_variables(variables: dict[str, Any]) -> DaemonSettings:
    """Build settings from inventory-style variables (docker_data_root, docker_address_pools, ...)."""
    pools = variables.get("docker_address_pools") or list(DEFAULT_ADDRESS_POOLS)
    if not isinstance(pools, list | tuple):
        raise DaemonJsonError(f"docker_address_pools must be a list of {{base, size}} pools, got {pools!r}.")
    data_root = variables.get("docker_data_root", DEFAULT_DATA_ROOT)
    return DaemonSettings(
        data_root=str(data_root or ""),
        default_address_pools=tuple(dict(pool) if isinstance(pool, dict) else pool for pool in pools),
        # YAML reads `max_file: 3` as a number; Docker wants the string "3".
        log_max_size=_option_text(variables.get("docker_log_max_size", "10m")),
        log_max_file=_option_text(variables.get("docker_log_max_file", "3")),
        gpu=bool(variables.get("gpu", False)),
    )


def _option_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value
