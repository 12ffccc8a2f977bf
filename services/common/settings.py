"""Reading service settings from the environment: the one place that turns `NAME=value` into a
checked number, so the backend, the shepherd and the pruner refuse a bad value with the same
kind of sentence. Light on purpose (no S3 or database imports): healthchecks use it too.

Usage::

    lease_s = read_number(env, "LEASE_SECONDS", 60.0, minimum=1)          # blank or unset: 60.0
    retention_s = read_number(env, "RETENTION_SECONDS", 86400.0, minimum=0, unit="seconds")
    password = read_secret(env, "DB_PASSWORD")   # or the file named by DB_PASSWORD_FILE (Swarm secrets)
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from services.common.errors import ServiceError


class ConfigError(ServiceError):
    """A setting in the environment has a value the service cannot use."""


def read_number(env: Mapping[str, str], name: str, default: float, minimum: float, *, unit: str = "") -> float:
    """`env[name]` as a finite float of at least `minimum`; `default` when unset or blank.

    Raises `ConfigError` naming the variable and its value; `unit` ("seconds") makes the sentence
    say what kind of number is expected."""
    raw = (env.get(name) or "").strip()
    if not raw:
        return float(default)
    kind = f"a number of {unit}" if unit else "a number"
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not {kind}; set it to {kind} of at least {minimum:g}.")
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum:g}, got {raw}.")
    return value


def read_secret(env: Mapping[str, str], name: str) -> str:
    """`env[name]`, or else the content of the file `env[name + "_FILE"]` names ("" when neither).

    Docker Swarm hands secrets over as files under /run/secrets, never as environment values; the
    `*_FILE` convention is the one the official images use. A trailing newline is dropped."""
    value = env.get(name) or ""
    path = env.get(f"{name}_FILE") or ""
    if value or not path:
        return value
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().rstrip("\n")
    except OSError as exc:
        raise ConfigError(f"{name}_FILE names {path}, which cannot be read: {exc.strerror}.") from None
