"""The probes, one module each, and their options.

A probe module has `NAME`, `INTERVAL_S` (the daemon's default schedule), `DEFAULTS` (its options)
and `run(context) -> ProbeResult`; optionally `enabled(context) -> bool` when it only applies to
some hosts (gpu: a GPU is expected or present; tls: the public URL is https). Site config sets
options under `monitoring.probes.<name>`, plus `enabled` and `interval_s` for every probe.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from isletops.config import MonitoringConfig
from isletops.errors import ConfigError

NAMES: tuple[str, ...] = ("containers", "http", "e2e", "disk", "gpu", "tls", "pruner")
COMMON_OPTIONS = ("enabled", "interval_s")


def module(name: str) -> ModuleType:
    if name not in NAMES:
        raise ConfigError(f"'{name}' is not a probe.", f"Probes: {', '.join(NAMES)}.")
    return importlib.import_module(f"monitors.probes.{name}")


def options(name: str, monitoring: MonitoringConfig) -> dict[str, Any]:
    """The probe's defaults with the site config's settings over them; unknown settings are errors."""
    probe = module(name)
    configured = monitoring.probes.get(name) or {}
    if not isinstance(configured, dict):
        raise ConfigError(f"monitoring.probes.{name} must be a mapping of settings.")
    unknown = sorted(set(configured) - set(probe.DEFAULTS) - set(COMMON_OPTIONS))
    if unknown:
        raise ConfigError(
            f"monitoring.probes.{name} has unknown setting(s): {', '.join(unknown)}.",
            f"Known: {', '.join(sorted([*probe.DEFAULTS, *COMMON_OPTIONS]))}.",
        )
    merged = {**probe.DEFAULTS, "enabled": None, "interval_s": probe.INTERVAL_S, **configured}
    for key, default in probe.DEFAULTS.items():
        value = merged[key]
        if isinstance(default, bool) or default is None:
            continue
        if isinstance(default, int | float) and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"monitoring.probes.{name}.{key} must be a number, got {value!r}.")
        if isinstance(default, list) and not isinstance(value, list):
            raise ConfigError(f"monitoring.probes.{name}.{key} must be a list, got {value!r}.")
    if not isinstance(merged["interval_s"], int | float) or merged["interval_s"] <= 0:
        raise ConfigError(f"monitoring.probes.{name}.interval_s must be a positive number of seconds.")
    return merged


def validate(monitoring: MonitoringConfig) -> None:
    """Check every probe's settings and the alert thresholds once, with messages naming the key."""
    unknown = sorted(set(monitoring.probes) - set(NAMES))
    if unknown:
        raise ConfigError(
            f"monitoring.probes has unknown probe(s): {', '.join(unknown)}.", f"Probes: {', '.join(NAMES)}."
        )
    for name in NAMES:
        options(name, monitoring)
    for key in ("failures_to_alert", "successes_to_resolve", "flap_window", "flap_threshold"):
        if getattr(monitoring, key) < 1:
            raise ConfigError(f"monitoring.{key} must be at least 1.")
    if monitoring.reminder_interval_s <= 0:
        raise ConfigError("monitoring.reminder_interval_s must be a positive number of seconds.")
