"""The pruner probe's reading of the pruner's health record (fake engine; real containers in
tests/integration/test_probe_containers.py)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import ContainerState
from monitors import probes
from monitors.probes import pruner
from monitors.result import ProbeContext, Status

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


class FakeEngine:
    def __init__(self, state: ContainerState) -> None:
        self.state = state

    def project_containers(self, project, expected=()):
        return [self.state]


def run(tmp_path: Path, health: str | None, output: str, status: str = "running"):
    state = ContainerState("pruner", "p-1", status, health, 0, NOW, "img", None, output)
    config = SiteConfig(source=None)
    context = ProbeContext(config, InstanceConfig("h5p", tmp_path), probes.options("pruner", config.monitoring),
                           now=NOW.timestamp(), engine=FakeEngine(state))  # fmt: skip
    return pruner.run(context)


def record(hours_ago: float, error: str | None = None) -> str:
    when = (NOW - dt.timedelta(hours=hours_ago)).isoformat().replace("+00:00", "Z")
    return "checking last run\n" + json.dumps({"last_success_at": when, "last_error": error, "deleted_jobs": 0})


@pytest.mark.parametrize(
    ("hours", "health", "status", "start"),
    [(0.5, "healthy", Status.OK, "last successful prune 30 min ago"),
     (8, "unhealthy", Status.WARNING, "last successful prune 8.0 h ago"),
     (2, "unhealthy", Status.WARNING, "last successful prune 2.0 h ago"),
     (50, "unhealthy", Status.CRITICAL, "no successful prune for 50.0 h")],
)  # fmt: skip
def test_age_of_the_last_successful_run(tmp_path, hours, health, status, start) -> None:
    result = run(tmp_path, health, record(hours, error="S3 timeout" if hours > 1 else None))
    assert result.status is status and result.message.startswith(start)
    assert result.value == pytest.approx(hours)
    if hours > 1:
        assert result.message.endswith("; last error: S3 timeout")


def test_health_without_a_record(tmp_path) -> None:
    assert run(tmp_path, "healthy", "ok").status is Status.OK
    result = run(tmp_path, "unhealthy", "last run 30 h ago\n")
    assert result.status is Status.CRITICAL and result.message == "pruner unhealthy: last run 30 h ago"
    assert run(tmp_path, None, "").status is Status.UNKNOWN


def test_parse_record_takes_the_last_json_line() -> None:
    assert pruner.parse_record('{"a": 1}\nnoise\n{"a": 2}\n{broken') == {"a": 2}
    assert pruner.parse_record("") is None


def test_the_pruners_own_healthcheck_output(tmp_path) -> None:
    """What services.pruner.healthcheck prints: a sentence, then the record (or a stub without a success)."""
    never = 'The pruner has not recorded a pass yet.\n{"last_success_at": null, "last_error": "The pruner has not ' \
            'recorded a pass yet; see its log (isletops logs pruner)."}'  # fmt: skip
    result = run(tmp_path, "unhealthy", never)
    assert result.status is Status.CRITICAL
    assert result.message == (
        "pruner unhealthy: The pruner has not recorded a pass yet; see its log (isletops logs pruner)."
    )
    failed_once = json.dumps({"last_success_at": (NOW - dt.timedelta(minutes=50)).isoformat(), "ok": False,
                              "last_error": "S3 timeout", "deleted_jobs": 0})  # fmt: skip
    result = run(tmp_path, "healthy", "The last pass failed.\n" + failed_once)
    assert result.status is Status.OK
    assert result.message == "last successful prune 50 min ago, deleted 0 jobs; the latest pass failed: S3 timeout"


def test_the_last_success_is_a_timestamp_for_prometheus_and_an_age_for_nagios(tmp_path) -> None:
    result = run(tmp_path, "healthy", record(8))
    measured = {m.quantity: m for m in result.measurements}
    assert measured["pruner_last_success"].value == (NOW - dt.timedelta(hours=8)).timestamp()
    age = measured["pruner_last_success_age"]
    assert (age.value, age.warn, age.crit) == (8 * 3600, 6 * 3600, 48 * 3600)
    assert run(tmp_path, "healthy", "ok").measurements == []  # nothing measured, nothing reported
