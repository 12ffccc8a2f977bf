"""`isletops provision --tags swarm` builds a real 3-node swarm from an inventory: init on the
first manager, join of the workers, node labels from the inventory; join tokens never appear in
the run's output or files; a second run changes nothing."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from isletops.provision import run_provision
from tests.fixtures.swarm import NestedSwarm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

INVENTORY_LABELS = [{"storage": True, "edge": True}, {"gpu": True}, {}]


def write_inventory(directory: Path, swarm: NestedSwarm, key: Path) -> Path:
    hosts = {}
    for node, labels in zip(swarm.nodes, INVENTORY_LABELS, strict=True):
        hosts[node.name] = {
            "ansible_host": node.address, "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
            "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
            "ansible_python_interpreter": "/usr/bin/python3",
            "swarm_role": node.role, "swarm_advertise_addr": node.address, "swarm_labels": labels,
        }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump(
        {"isletnet": {"hosts": hosts, "vars": {"isletnet_instance": "prod", "certbot_enabled": False}}}))
    return directory


@pytest.fixture(scope="module")
def ssh_key(swarm_node_containers: NestedSwarm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("swarm-ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for node in swarm_node_containers.nodes:
        subprocess.run(["docker", "exec", "-i", node.name, "sh", "-c",
                        "mkdir -p -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && systemctl start ssh"],
                       input=key.with_suffix(".pub").read_text(), text=True, check=True, capture_output=True)
    return key


def test_provision_builds_the_swarm_then_changes_nothing(swarm_node_containers: NestedSwarm, ssh_key: Path,
                                                         tmp_path: Path) -> None:
    swarm = swarm_node_containers
    inventory = write_inventory(tmp_path / "inventory", swarm, ssh_key)
    first = run_provision(inventory, tags=["swarm"], state_dir=tmp_path / "state", timeout_s=600)
    assert first.succeeded, first.error_sentence()
    manager = swarm.manager
    rows = manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
    assert sorted(row for row in rows if row) == sorted(f"{node.name} Ready" for node in swarm.nodes)
    labels = {node.name: json.loads(manager.docker("node", "inspect", node.name, "-f",
                                                   "{{json .Spec.Labels}}").stdout) for node in swarm.nodes}
    assert labels[swarm.nodes[0].name] == {"isletnet.storage": "true", "isletnet.edge": "true"}
    assert labels[swarm.nodes[1].name] == {"isletnet.gpu": "true"}
    assert labels[swarm.nodes[2].name] == {}
    # the join tokens are nowhere in what the run left behind
    tokens = [manager.docker("swarm", "join-token", "-q", role).stdout.strip() for role in ("worker", "manager")]
    for path in first.artifacts_dir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            leaked = [text[max(0, text.find(tok) - 400):text.find(tok)] for tok in tokens if tok in text]
            assert not leaked, f"{path}: {leaked}"
    second = run_provision(inventory, tags=["swarm"], state_dir=tmp_path / "state", timeout_s=600)
    assert second.succeeded, second.error_sentence()
    assert second.changed == 0, second.changed_tasks
