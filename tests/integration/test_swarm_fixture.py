"""The nested swarm itself: three Ready nodes, labelled, that pull from the host's registry and
run a service across the overlay network (dnsrr)."""

from __future__ import annotations

import time

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
