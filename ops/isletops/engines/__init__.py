"""The orchestrators an instance can run on, behind one `Engine` protocol (see `base.py`).

`engine_for` picks the implementation from the instance's `engine:` setting, once, at the edge
of the CLI (or of a library caller); nothing past that point knows which engine it drives.
"""

from __future__ import annotations

from collections.abc import Mapping

from isletops.config import ENGINE_NAMES, InstanceConfig, SiteConfig
from isletops.engines.base import Engine, HealthPolicy, ServicePlan, ServiceState, ServiceStep, Strategy
from isletops.errors import ConfigError
from isletops.registry import RegistryCredentials

__all__ = [
    "ENGINE_NAMES", "Engine", "HealthPolicy", "ServicePlan", "ServiceState", "ServiceStep", "Strategy", "engine_for",
]


def engine_for(
    site: SiteConfig, instance: InstanceConfig, credentials: Mapping[str, RegistryCredentials] | None = None
) -> Engine:
    """The engine that runs `instance`; `credentials` (registry host -> credentials) are used for
    its pulls and pushes."""
    if instance.engine == "compose":
        # Imported here, not at the top: the compose engine sits on `isletops.docker_engine`, which
        # itself uses this package's engine-neutral types.
        from isletops.docker_engine import DockerEngine
        from isletops.engines.compose import ComposeEngine

        return ComposeEngine(site, instance, DockerEngine(credentials=credentials))
    if instance.engine == "kubernetes":
        from isletops.engines.kubernetes import KubernetesEngine

        return KubernetesEngine(site, instance)
    if instance.engine == "swarm":
        from isletops.engines.swarm import SwarmEngine

        return SwarmEngine(site, instance, credentials=credentials)
    raise ConfigError(
        f"Instance '{instance.name}' asks for engine '{instance.engine}', which isletops does not have.",
        f"Set 'engine:' to one of: {', '.join(ENGINE_NAMES)}.",
    )
