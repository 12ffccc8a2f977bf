"""A hold by hand (`isletops lock acquire|release|status`): the instance's file lock and, where
the instance spans several hosts, the engine's cluster lock (a Swarm config, a Kubernetes Lease).

A deploy takes both locks; so does a hold, so that no deploy starts from this host or from any
other manager or admin host until the hold is released where it was taken. The cluster lock's
holder text is the file lock's `LockDetails.describe()`, which is how a release tells its own hold
from another operator's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from isletops.config import InstanceConfig
from isletops.engines.base import Engine
from isletops.errors import LockError
from isletops.lock import InstanceLock, LockDetails, LockStatus


@dataclass(frozen=True)
class Holders:
    """Who holds the instance: its file lock here, and the cluster lock ("" when free or none)."""

    local: LockStatus
    cluster: str

    @property
    def held(self) -> bool:
        return self.local.held or bool(self.cluster)


def holders(instance: InstanceConfig, engine: Engine) -> Holders:
    return Holders(InstanceLock(instance.state_dir, instance.name).status(), engine.cluster_lock_holder())


def take(instance: InstanceConfig, engine: Engine, message: str, wait_s: float = 0,
         progress: Callable[[str], None] | None = None) -> LockDetails:
    """Take both locks for a hold by hand; when the cluster lock is refused, the file lock is given
    back and the LockError names the other holder."""
    details = LockDetails.for_this_process("manual", message=message, hold=False)
    lock = InstanceLock(instance.state_dir, instance.name)
    lock.acquire(details, wait_s=wait_s, progress=progress)
    try:
        engine.take_cluster_lock(details.describe(), by_hand=True)
    except BaseException:
        with contextlib.suppress(Exception):
            lock.release(only_if_owned=False)
        raise
    return details


def release(instance: InstanceConfig, engine: Engine) -> list[str]:
    """Release a hold taken on this host: the file lock, then the cluster lock if this hold took
    it. Returns what was released (empty: nothing was held). Refused (LockError) while a live
    deploy holds the file lock, or when the cluster lock is another operator's."""
    lock = InstanceLock(instance.state_dir, instance.name)
    found = lock.status()
    if found.held and found.details and found.details.pid is not None and not found.stale:
        raise LockError(
            f"Instance '{instance.name}' is held by a running {found.details.command}: {found.details.describe()}.",
            "Let it finish (or stop it with Ctrl-C); its clean-ups release the lock.",
        )
    released: list[str] = []
    cluster = engine.cluster_lock_holder()
    if found.held:
        own = found.details.describe() if found.details else ""
        with contextlib.suppress(Exception):
            lock.release(only_if_owned=False)
        released.append(own or found.problem)
        if cluster and cluster == own and engine.release_cluster_lock(own):
            released.append(f"the {engine.name} lock")
            cluster = ""
    if cluster:
        raise LockError(
            f"The {engine.name} lock of '{instance.name}' is held from another host: {cluster}.",
            "Release it where it was taken ('isletops lock release' there), or wait for that deploy.",
        )
    return released
