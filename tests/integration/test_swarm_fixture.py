"""The nested swarm itself: three Ready nodes, labelled, that pull from the host's registry and
run a service across the overlay network (dnsrr)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, SiteConfig
from isletops.engines.swarm import SwarmEngine
from isletops.errors import LockError
from tests.fixtures.swarm import NestedSwarm


def test_three_labelled_nodes_pull_and_run_a_service(nested_swarm: NestedSwarm) -> None:
    manager = nested_swarm.manager
    rows = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ManagerStatus}}").stdout.splitlines()
    assert len(rows) == 3 and all(" Ready" in row for row in rows)
    gpu = nested_swarm.node("isletnet.gpu")
    labels = manager.docker("node", "inspect", gpu.name, "-f", "{{json .Spec.Labels}}").stdout
    assert '"isletnet.gpu":"true"' in labels
    image = nested_swarm.push("isletnet-base:latest", "isletnet-probe:fixture")
    manager.docker("service", "create", "--detach", "--name", "probe", "--endpoint-mode", "dnsrr",
                   "--constraint", "node.labels.isletnet.gpu == true", image, "sleep", "600")
    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        state = manager.docker("service", "ps", "probe", "--format", "{{.Node}} {{.CurrentState}} {{.Error}}").stdout
        if "Running" in state:
            break
        time.sleep(1)
    assert state.startswith(gpu.name) and "Running" in state, state
    manager.docker("service", "rm", "probe")


def test_the_cluster_lock_is_a_swarm_config_one_operator_holds(nested_swarm: NestedSwarm, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISLETOPS_SWARM_DOCKER", f"docker exec -i {nested_swarm.manager.name} docker")
    instance = InstanceConfig(name="locktest", directory=tmp_path, engine="swarm")
    alice, bob = SwarmEngine(SiteConfig(source=None), instance), SwarmEngine(SiteConfig(source=None), instance)
    release = alice.take_cluster_lock("deploy T2 by alice@node-1")
    with pytest.raises(LockError, match="holds the swarm's lock isletops-lock-locktest: deploy T2 by alice@node-1"):
        bob.take_cluster_lock("deploy T3 by bob@node-2")
    release()
    bob.take_cluster_lock("deploy T3 by bob@node-2")()
    assert "isletops-lock" not in nested_swarm.manager.docker("config", "ls").stdout
