"""The containers probe's verdicts over container states (a fake engine; real Docker is in
tests/integration/test_probe_containers.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import ContainerState
from isletops.errors import DockerError
from isletops.release import COMPONENTS
from monitors import probes
from monitors.probes import containers
from monitors.result import ProbeContext, Status

SERVICES = COMPONENTS  # the probe expects every component of a release


def state(service: str, status: str = "running", health: str | None = "healthy", restarts: int = 0,
          exit_code: int | None = None, output: str = "") -> ContainerState:  # fmt: skip
    return ContainerState(service, f"h5c-{service}-1", status, health, restarts,
                          dt.datetime(2026, 11, 25, tzinfo=dt.UTC), "img", exit_code, output)  # fmt: skip


class FakeEngine:
    def __init__(self, states: list[ContainerState] | Exception) -> None:
        self.states = states

    def project_containers(self, project: str, expected=()) -> list[ContainerState]:
        if isinstance(self.states, Exception):
            raise self.states
        return self.states


def run(tmp_path: Path, states) -> object:
    config = SiteConfig(source=None)
    context = ProbeContext(config, InstanceConfig("h5c", tmp_path), probes.options("containers", config.monitoring),
                           engine=FakeEngine(states))  # fmt: skip
    return containers.run(context)


def healthy() -> list[ContainerState]:
    return [state(service) for service in SERVICES]


def test_all_running_and_healthy(tmp_path: Path) -> None:
    result = run(tmp_path, healthy())
    assert result.status is Status.OK and result.value == len(SERVICES)
    assert result.message == f"{len(SERVICES)}/{len(SERVICES)} services running and healthy"


@pytest.mark.parametrize(
    ("bad", "status", "phrase"),
    [
        (state("shepherd", "exited", None, exit_code=137), Status.CRITICAL, "shepherd (exited, exit code 137)"),
        (state("shepherd", "missing", None), Status.CRITICAL, "shepherd (missing)"),
        (state("shepherd", "restarting", None, restarts=7), Status.CRITICAL, "shepherd (restarting), 7 restarts"),
        (state("shepherd", health="unhealthy", output="curl: (7) Failed to connect\n"), Status.CRITICAL,
         "shepherd (unhealthy: curl: (7) Failed to connect)"),
        (state("shepherd", health="starting"), Status.WARNING, "shepherd (health check starting)"),
        (state("shepherd", "paused", None), Status.WARNING, "shepherd (paused)"),
    ],
)  # fmt: skip
def test_bad_container_states(tmp_path: Path, bad: ContainerState, status: Status, phrase: str) -> None:
    states = [s for s in healthy() if s.service != "shepherd"] + [bad]
    result = run(tmp_path, states)
    assert result.status is status and phrase in result.message
    assert result.message.startswith(f"1 of {len(SERVICES)} services not ok: ") and result.value == len(SERVICES) - 1


def test_rising_restart_count_is_a_restart_loop(tmp_path: Path) -> None:
    assert run(tmp_path, healthy()).status is Status.OK
    states = [s for s in healthy() if s.service != "backend"]
    result = run(tmp_path, states + [state("backend", restarts=1)])
    assert result.status is Status.WARNING and "backend (restarted 1× since the last check)" in result.message
    result = run(tmp_path, states + [state("backend", restarts=5)])
    assert result.status is Status.CRITICAL and "backend (restart loop: restarted 4× since the last check)" in (
        result.message
    )
    assert run(tmp_path, states + [state("backend", restarts=5)]).status is Status.OK  # it stopped restarting


def test_docker_unreachable_is_critical_with_the_reason(tmp_path: Path) -> None:
    result = run(tmp_path, DockerError("Docker Engine is not reachable (connection refused)."))
    assert result.status is Status.CRITICAL
    assert result.message == "cannot read container state: Docker Engine is not reachable (connection refused)."


def test_restart_counts_and_ready_services_are_measured(tmp_path: Path) -> None:
    states = [state(s, restarts=3 if s == "shepherd" else 0) for s in SERVICES if s != "edge"]
    result = run(tmp_path, states + [state("edge", "missing", None)])
    measured = {(m.quantity, tuple(m.labels.values())): m.value for m in result.measurements}
    assert measured[("services_ready", ())] == len(SERVICES) - 1
    assert measured[("services_expected", ())] == len(SERVICES)
    assert measured[("service_restarts", ("shepherd",))] == 3
    assert ("service_restarts", ("edge",)) not in measured  # a missing container has no count


def test_swarm_verdict_counts_replicas_and_down_nodes() -> None:
    from isletops.swarm_command import ServiceReplicas

    healthy = [ServiceReplicas(s, 1, 1) for s in SERVICES]
    ok = containers.swarm_verdict(healthy, [], len(SERVICES))
    assert ok.status is Status.OK and ok.value == len(SERVICES)
    short = [*healthy[1:], ServiceReplicas(SERVICES[0], 2, 1, "task failed: exit 1")]
    bad = containers.swarm_verdict(short, ["node w2 (worker) is down: heartbeat failure"], len(SERVICES))
    assert bad.status is Status.CRITICAL
    assert f"{SERVICES[0]} 1/2 running (task failed: exit 1)" in bad.message
    assert "node w2 (worker) is down: heartbeat failure" in bad.message
    down_only = containers.swarm_verdict(healthy, ["node w2 (worker) is down"], len(SERVICES))
    assert down_only.status is Status.CRITICAL and "node w2" in down_only.message
