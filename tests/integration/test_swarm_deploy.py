"""`engine: swarm` on a real nested 3-node swarm, through the real CLI: refusals that change
nothing (not a manager, a missing node label), the first deploy of a release (every task healthy
on the new image, the edge answering in host mode), and a broken release rolled back stack-wide
with exit 2 and the failing task's error."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from isletops.release import COMPONENTS
from tests.fixtures.swarm import NestedSwarm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1500)]

BUILT_TAG = os.environ.get("ISLETOPS_SWARM_TEST_IMAGES", "swarmt1")  # local images isletnet-<c>:<this>
T1, T3 = "2026-12-04_01", "2026-12-04_03"
HTTP_PORT = 18080


@pytest.fixture(scope="module")
def releases(nested_swarm: NestedSwarm) -> dict[str, str]:
    """T1: the built images; T3: the same with a backend that exits at once (the base image)."""
    for component in COMPONENTS:
        nested_swarm.push(f"isletnet-{component}:{BUILT_TAG}", f"isletnet-{component}:{T1}")
        source = "isletnet-base:latest" if component == "backend" else f"isletnet-{component}:{BUILT_TAG}"
        nested_swarm.push(source, f"isletnet-{component}:{T3}")
    return {"T1": T1, "T3": T3}


@pytest.fixture(scope="module")
def site(nested_swarm: NestedSwarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("swarm-site")
    config = root / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "registry": f"http://{nested_swarm.node_registry}",
        "instances_root": str(root / "instances"),
        "instances": {"prod": {"engine": "swarm", "http_port": HTTP_PORT,
                               "bind_address": nested_swarm.manager.address, "health_timeout_s": 240,
                               "swarm": {"backend_replicas": 2, "frontend_replicas": 2}}},
    }))
    yield config


def isletops(config: Path, cli: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ISLETOPS_SWARM_DOCKER": cli}
    return subprocess.run(
        [str(Path(".venv/bin/isletops").resolve()), "--config", str(config), "-i", "prod", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def manager_cli(swarm: NestedSwarm) -> str:
    return f"docker exec -i {swarm.manager.name} docker"


def services(swarm: NestedSwarm) -> dict[str, str]:
    rows = swarm.manager.docker("service", "ls", "--format", "{{.Name}} {{.Image}}").stdout.split("\n")
    return dict(row.split(" ", 1) for row in rows if row)


def test_a_worker_is_not_a_manager(nested_swarm: NestedSwarm, site: Path, releases: dict[str, str]) -> None:
    result = isletops(site, f"docker exec -i {nested_swarm.workers[0].name} docker", "deploy", "--tag", T1,
                      "--no-e2e")
    assert result.returncode != 0
    assert "This host is not a swarm manager" in result.stderr + result.stdout
    assert "isletops provision --inventory" in result.stderr + result.stdout
    assert services(nested_swarm) == {}


def test_missing_node_label_names_label_and_service(nested_swarm: NestedSwarm, site: Path,
                                                    releases: dict[str, str]) -> None:
    manager = nested_swarm.manager
    manager.docker("node", "update", "--label-rm", "isletnet.storage", manager.name)
    try:
        result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T1, "--no-e2e")
    finally:
        manager.docker("node", "update", "--label-add", "isletnet.storage=true", manager.name)
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "Service storage cannot be placed: no ready node has the label isletnet.storage == true" in output
    assert services(nested_swarm) == {}


def test_first_deploy_converges_and_the_edge_answers(nested_swarm: NestedSwarm, site: Path,
                                                     releases: dict[str, str]) -> None:
    started = time.monotonic()
    result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T1, "--no-e2e")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    images = services(nested_swarm)
    assert set(images) == {f"prod_{c}" for c in COMPONENTS}
    assert all(image.endswith(f":{T1}") for image in images.values()), images
    response = requests.get(f"http://{nested_swarm.manager.address}:{HTTP_PORT}/api/health", timeout=10)
    assert response.status_code == 200
    print(f"first swarm deploy took {took:.0f} s")  # noqa: T201 - the figure for the README


def test_broken_release_is_rolled_back_stack_wide(nested_swarm: NestedSwarm, site: Path,
                                                  releases: dict[str, str]) -> None:
    result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T3, "--no-e2e")
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "backend did not become healthy on the swarm" in output
    images = services(nested_swarm)
    assert all(image.endswith(f":{T1}") for image in images.values()), images  # queue, storage too
    history = isletops(site, manager_cli(nested_swarm), "history", "--json")
    entries = [json.loads(line) for line in history.stdout.splitlines() if line.strip()]
    attempt = next(e for e in reversed(entries) if e["to_tag"] == T3)
    assert attempt["result"] != "success", attempt
    response = requests.get(f"http://{nested_swarm.manager.address}:{HTTP_PORT}/api/health", timeout=10)
    assert response.status_code == 200
