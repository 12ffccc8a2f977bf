"""The containers and pruner probes against real containers: a small compose-labelled project
of `isletnet-base` containers running `sleep`, made to exit, turn unhealthy and restart-loop."""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import runner
from monitors.result import Status

pytestmark = pytest.mark.integration
SECOND_NS = 1_000_000_000


@pytest.fixture
def project(tmp_path: Path, labelled_containers):
    """A compose project of our own (label-wise); every container is removed at the end."""
    name = f"h5mon-{secrets.token_hex(3)}"

    def run(service: str, command: list[str], **kwargs):
        return labelled_containers(name, service, command, **kwargs)

    yield name, InstanceConfig(name="h5mon", directory=tmp_path / name), run


def wait_for(predicate, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def site(services: list[str]) -> SiteConfig:
    return SiteConfig(source=None, monitoring=MonitoringConfig(probes={"containers": {"services": services}}))


def health(container) -> str | None:
    container.reload()
    return (container.attrs["State"].get("Health") or {}).get("Status")


def test_running_exited_unhealthy_and_missing_services(project) -> None:
    name, instance, run = project
    config = site(["backend", "shepherd", "frontend"])
    check = {"test": ["CMD", "test", "-f", "/tmp/ok"], "interval": SECOND_NS, "retries": 1}
    backend = run("backend", ["sh", "-c", "touch /tmp/ok; exec sleep infinity"], healthcheck=check)
    shepherd = run("shepherd", ["sleep", "infinity"])
    wait_for(lambda: health(backend) == "healthy", what="backend healthy")

    (result,) = runner.run_probes(config, instance, ["containers"])
    assert result.status is Status.CRITICAL and result.message == "1 of 3 services not ok: frontend (missing)"

    run("frontend", ["sleep", "infinity"])
    (result,) = runner.run_probes(config, instance, ["containers"])
    assert result.status is Status.OK and result.message == "3/3 services running and healthy"

    shepherd.kill()
    wait_for(lambda: (shepherd.reload(), shepherd.status)[1] == "exited", what="shepherd exited")
    (result,) = runner.run_probes(config, instance, ["containers"])
    assert result.status is Status.CRITICAL and "shepherd (exited, exit code 137)" in result.message

    backend.exec_run(["rm", "/tmp/ok"])
    wait_for(lambda: health(backend) == "unhealthy", what="backend unhealthy")
    (result,) = runner.run_probes(config, instance, ["containers"])
    assert result.status is Status.CRITICAL and "backend (unhealthy" in result.message
    assert result.message.startswith("2 of 3 services not ok")


def test_restart_loop_is_detected(project) -> None:
    name, instance, run = project
    config = site(["queue"])
    # Runs 2 s, fails, Docker restarts it: mostly "running", but its restart count keeps rising.
    looping = run("queue", ["sh", "-c", "sleep 2; exit 3"], restart_policy={"Name": "always"})

    def running_after_restarts(count: int) -> bool:
        looping.reload()
        return looping.status == "running" and looping.attrs["RestartCount"] >= count

    wait_for(lambda: running_after_restarts(1), what="a first restart")
    runner.run_probes(config, instance, ["containers"])  # remembers the restart count
    before = looping.attrs["RestartCount"]
    wait_for(lambda: running_after_restarts(before + 1), what="another restart")
    (result,) = runner.run_probes(config, instance, ["containers"])
    assert result.status in (Status.WARNING, Status.CRITICAL)  # CRITICAL when 3+ restarts happened in between
    assert re.search(r"queue \((restart loop: )?restarted \d+× since the last check\)", result.message), result.message


def test_pruner_record_from_its_healthcheck(project) -> None:
    name, instance, run = project
    ten_minutes_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).isoformat().replace("+00:00", "Z")
    record = json.dumps({"last_success_at": ten_minutes_ago, "last_error": None, "deleted_jobs": 4,
                         "training_images": 2, "training_bytes": 1234})  # fmt: skip
    pruner = run("pruner", ["sleep", "infinity"],
                 healthcheck={"test": ["CMD", "echo", record], "interval": SECOND_NS, "retries": 1})  # fmt: skip
    wait_for(lambda: health(pruner) == "healthy", what="pruner healthy")
    (result,) = runner.run_probes(SiteConfig(source=None), instance, ["pruner"])
    assert result.status is Status.OK and result.message == "last successful prune 10 min ago, deleted 4 jobs"
    pruner.kill()
    wait_for(lambda: (pruner.reload(), pruner.status)[1] == "exited", what="pruner exited")
    (result,) = runner.run_probes(SiteConfig(source=None), instance, ["pruner"])
    assert result.status is Status.CRITICAL and result.message.startswith("pruner is not running: pruner (exited")
