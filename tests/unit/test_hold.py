"""A hold by hand (`isletops lock acquire|release|status`) over the engine's cluster lock
(isletops.hold), with the fake engine; the real Swarm config lock is in test_swarm_deploy.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from isletops import hold
from isletops.config import InstanceConfig
from isletops.errors import LockError
from isletops.lock import InstanceLock, LockDetails
from tests.fakes.engine import FakeEngine


@pytest.fixture
def instance(tmp_path: Path) -> InstanceConfig:
    return InstanceConfig(name="prod", directory=tmp_path / "prod")


def test_a_hold_takes_the_file_lock_and_the_cluster_lock_and_release_gives_both_back(instance) -> None:
    engine = FakeEngine()
    details = hold.take(instance, engine, "database maintenance")
    assert engine.cluster_lock_holder() == details.describe()
    found = hold.holders(instance, engine)
    assert found.held and found.local.held and "database maintenance" in found.cluster
    with pytest.raises(LockError, match="database maintenance"):  # a deploy from another manager
        engine.take_cluster_lock("bob@node-2 (pid 7, deploy 2026-12-05_02)")
    released = hold.release(instance, engine)
    assert released[1] == "the fake lock" and "database maintenance" in released[0]
    assert not hold.holders(instance, engine).held
    assert hold.release(instance, engine) == []  # again: nothing was held


def test_a_refused_cluster_lock_gives_the_file_lock_back(instance) -> None:
    engine = FakeEngine()
    engine.take_cluster_lock("bob@node-2 (pid 7, deploy 2026-12-05_02)")
    with pytest.raises(LockError, match="bob@node-2"):
        hold.take(instance, engine, "maintenance")
    assert not InstanceLock(instance.state_dir, instance.name).status().held


def test_release_leaves_another_operators_cluster_lock_and_says_where_it_is(instance) -> None:
    engine = FakeEngine()
    engine.take_cluster_lock("alice@node-1 (by hand, manual) since 2026-12-05T10:00:00+00:00: upgrade")
    with pytest.raises(LockError, match="held from another host: alice@node-1") as refused:
        hold.release(instance, engine)
    assert "where it was taken" in refused.value.hint
    assert engine.cluster_lock_holder().startswith("alice@node-1")


def test_release_is_refused_while_a_live_deploy_holds_the_file_lock(instance) -> None:
    engine = FakeEngine()
    InstanceLock(instance.state_dir, instance.name).acquire(LockDetails.for_this_process("deploy", "2026-12-05_02"))
    with pytest.raises(LockError, match="held by a running deploy"):
        hold.release(instance, engine)
    assert InstanceLock(instance.state_dir, instance.name).status().held


def test_a_dead_deploys_locks_are_released_together(instance) -> None:
    """A deploy killed with -9 leaves its file lock (stale) and its cluster lock under the same holder text."""
    engine = FakeEngine()
    dead = LockDetails(**{**LockDetails.for_this_process("deploy", "2026-12-05_02").__dict__, "pid": 2**22 + 1})
    InstanceLock(instance.state_dir, instance.name).acquire(dead)
    engine.take_cluster_lock(dead.describe())
    assert len(hold.release(instance, engine)) == 2
    assert not hold.holders(instance, engine).held
