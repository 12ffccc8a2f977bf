"""The rendered stack file passes the docker CLI's own stack loader (`docker stack config`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from isletops.config import InstanceConfig, SwarmConfig
from isletops.swarm_stack import stack_for_instance

ENV = (
    "TAG=2026-11-23_01\nS3_ACCESS_KEY=ak\nS3_SECRET_KEY=sk\nDB_PASSWORD=p$w\nREPOSITORY=10.0.0.1:5000/\n"
    "ISLETNET_PROBE_TOKEN=0123456789abcdef0123456789abcdef\n"
)


def docker_with_stack_config() -> str:
    """The first docker CLI on PATH (or Debian's) that has `stack config` (20.10's Debian build lacks it)."""
    candidates = [shutil.which("docker"), "/usr/local/bin/docker", "/usr/bin/docker"]
    for binary in dict.fromkeys(c for c in candidates if c and Path(c).exists()):
        help_text = subprocess.run([binary, "stack", "config", "--help"], capture_output=True, text=True).stdout
        if "--compose-file" in help_text:
            return binary
    pytest.fail("no docker CLI here has `docker stack config`; install a docker CLI of 20.10.x upstream or newer")


@pytest.mark.parametrize("swarm", [SwarmConfig(), SwarmConfig(gpu_generic_resources=True, encrypted_overlay=True)])
def test_docker_stack_config_accepts_the_stack(tmp_path: Path, swarm: SwarmConfig) -> None:
    directory = tmp_path / "prod"
    directory.mkdir()
    (directory / ".env").write_text(ENV)
    instance = InstanceConfig(name="prod", directory=directory, http_port=18080, swarm=swarm)
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(stack_for_instance(instance).text())
    # An empty environment: nothing may come from the CLI's own interpolation.
    result = subprocess.run([docker_with_stack_config(), "stack", "config", "--compose-file", str(stack_file)],
                            capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = yaml.safe_load(result.stdout)
    assert loaded["services"]["backend"]["deploy"]["update_config"]["order"] == "start-first"
    assert loaded["services"]["edge"]["ports"][0]["mode"] == "host"
    assert loaded["services"]["queue"]["environment"] == {"DB_PASSWORD_FILE": "/run/secrets/DB_PASSWORD"}
    assert loaded["secrets"]["DATABASE_URL"]["external"] is True
    generic = loaded["services"]["shepherd"]["deploy"].get("resources", {}).get("reservations", {})
    assert bool(generic.get("generic_resources")) is swarm.gpu_generic_resources


def test_docker_stack_config_rejects_a_broken_stack(tmp_path: Path) -> None:
    """The check can fail: a stack file the loader does not take."""
    stack_file = tmp_path / "stack.yml"
    stack_file.write_text(
        "version: '3.8'\nservices:\n  a:\n    image: x\n    deploy: {update_config: {order: sideways}}\n")
    result = subprocess.run([docker_with_stack_config(), "stack", "config", "--compose-file", str(stack_file)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
