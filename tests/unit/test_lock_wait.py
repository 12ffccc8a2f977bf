"""`--lock-wait S`: wait for another process's deploy lock instead of refusing at once.

The holder is a real second process that takes the instance lock the way a deploy does (its own
pid in the details) and releases it after a while, or not at all; the waiting side is the real
`isletops` CLI. No Docker is needed: deploys here use a registry where nothing listens, so once one has the lock it
stops at the registry check (recorded in the history) instead of starting a stack: that is enough
to tell "took the lock after waiting" from "refused".
"""

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.lock import InstanceLock, LockDetails
from tests.fixtures.servers import free_port

TAG = "2026-03-01_01"

# Takes the lock like a deploy (pid = this process), says so, holds it, then releases it.
HOLDER = """
import sys, time
from pathlib import Path
from isletops.lock import InstanceLock, LockDetails
lock = InstanceLock(Path(sys.argv[1]), sys.argv[2])
lock.acquire(LockDetails.for_this_process("deploy", sys.argv[4], "held by the test's holder"))
print("held", flush=True)
time.sleep(float(sys.argv[3]))
lock.release()
"""


def write_site(tmp_path: Path, registry: str) -> tuple[Path, str]:
    name = f"lw{uuid.uuid4().hex[:6]}"
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "registry": registry,
        "instances_root": str(tmp_path / "instances"),
        "default_instance": name,
        "instances": {name: {"http_port": free_port(), "api_port": free_port()}},
    }))
    return config, name


@contextmanager
def holder(state_dir: Path, name: str, hold_s: float) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state_dir), name, str(hold_s), TAG], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "held"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def history(state_dir: Path) -> list[dict]:
    path = state_dir / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_lock_released_during_the_wait_is_taken(tmp_path, unreachable_registry):
    config, name = write_site(tmp_path, unreachable_registry)
    state_dir = tmp_path / "instances" / name / "state"
    with holder(state_dir, name, hold_s=1.5) as process:
        started = time.monotonic()
        result = cli(config, "lock", "acquire", "-m", "after the deploy", "--lock-wait", "20")
        waited = time.monotonic() - started
    assert result.exit_code == 0, result.output
    assert "waiting up to 20 s for the lock held by" in result.output
    assert f"pid {process.pid}, deploy {TAG}" in result.output
    assert 0.5 < waited < 10
    found = InstanceLock(state_dir, name).status()
    assert found.held and found.details.command == "manual" and found.details.message == "after the deploy"


@pytest.mark.parametrize("command", [["deploy", "--tag", TAG], ["rollback", "--to", TAG]])
def test_deploy_and_rollback_wait_then_go_on(tmp_path, unreachable_registry, command):
    config, name = write_site(tmp_path, unreachable_registry)
    state_dir = tmp_path / "instances" / name / "state"
    with holder(state_dir, name, hold_s=1.5) as process:
        result = cli(config, *command, "--lock-wait", "20", "--no-e2e", "-m", "queued")
    assert "waiting up to" in result.output and f"pid {process.pid}" in result.output
    # Past the lock: it stopped at the registry, holding the lock it then released.
    assert "is locked by" not in result.output
    assert f"Registry {unreachable_registry} is unreachable" in result.output
    assert result.exit_code == 2
    entries = history(state_dir)
    assert [(e["command"], e["to_tag"], e["result"]) for e in entries] == [(command[0], TAG, "failed")]
    assert "queued" in entries[0]["message"]
    assert not InstanceLock(state_dir, name).status().held


def test_lock_not_released_in_time_is_refused_after_the_wait(tmp_path, unreachable_registry):
    config, name = write_site(tmp_path, unreachable_registry)
    state_dir = tmp_path / "instances" / name / "state"
    with holder(state_dir, name, hold_s=60) as process:
        started = time.monotonic()
        result = cli(config, "deploy", "--tag", TAG, "--lock-wait", "1.5")
        waited = time.monotonic() - started
        details = InstanceLock(state_dir, name).status().details
        assert details is not None and details.pid == process.pid  # the holder's lock is untouched
    assert result.exit_code == 2, result.output
    assert 1.4 < waited < 10
    assert "waiting up to" in result.output
    assert f"Instance '{name}' is locked by" in result.output and details.acquired_at in result.output
    assert "Traceback" not in result.output
    assert history(state_dir) == []  # refused before anything happened


def test_stale_lock_is_not_waited_for(tmp_path, unreachable_registry):
    config, name = write_site(tmp_path, unreachable_registry)
    state_dir = tmp_path / "instances" / name / "state"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = LockDetails(**{**LockDetails.for_this_process("deploy", TAG).__dict__, "pid": dead.pid})
    InstanceLock(state_dir, name).acquire(stale)
    started = time.monotonic()
    result = cli(config, "deploy", "--tag", TAG, "--lock-wait", "30")
    assert time.monotonic() - started < 5
    assert result.exit_code == 2 and "stale lock" in result.output and "--force" in result.output
    assert "waiting" not in result.output


def test_negative_lock_wait_is_a_usage_error(tmp_path, unreachable_registry):
    config, _name = write_site(tmp_path, unreachable_registry)
    result = cli(config, "deploy", "--tag", TAG, "--lock-wait", "-1")
    assert result.exit_code == 2 and "--lock-wait" in result.output and "Traceback" not in result.output
