"""The e2e probe against the real stack (H3's `service_images` / `StackInstances`): a saturated
shepherd gives no CRITICAL, a stopped shepherd does — and its alert mail names the runbook."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import requests

from isletops.config import MonitoringConfig
from monitors import probes, runner
from monitors.probes import e2e
from monitors.result import ProbeContext, Status
from tests.fixtures.stack import StackInstances

pytestmark = pytest.mark.integration
LOAD_JOBS = 16


@pytest.fixture(scope="module")
def stack(service_images, tmp_path_factory):
    instances = StackInstances(tmp_path_factory)
    try:
        yield instances.make("h5e2e")
    finally:
        instances.close()


def probe(made, **options) -> object:
    monitoring = MonitoringConfig(probes={"e2e": options})
    config = replace(made.site, monitoring=monitoring)
    context = ProbeContext(config, made.instance, probes.options("e2e", monitoring))
    return e2e.run(context)


def queue(made) -> dict:
    return requests.get(f"{made.api_url}/api/queue", headers=made.auth, timeout=10).json()


def submit_load(made, jobs: int) -> None:
    """Queue `jobs` ordinary jobs of three bigger images each."""
    from services.islets.images import encode_png
    from services.islets.synthetic import make_dtz_image

    rgb, _ = make_dtz_image(3, diameters_um=[60, 90, 120, 150, 180, 210, 240, 270], touching_pairs=3)
    png = encode_png(rgb)
    for index in range(jobs):
        files = [("images", (f"load-{index}-{n}.png", png, "image/png")) for n in range(3)]
        response = requests.post(f"{made.api_url}/api/jobs", files=files, data={"priority": "0"}, headers=made.auth,
                                 timeout=60)
        assert response.status_code == 201, response.text


def saturate(made, deadline_s: float) -> dict:
    """Queue work until the backlog is at least three probe deadlines long, whatever the host's speed.

    The backlog is measured, not assumed: queued jobs × the stack's own mean service time per job,
    shared among the jobs running at once. A fixed number of jobs drained within the deadline on
    an idle host and made the test depend on the machine's load.
    """
    submit_load(made, LOAD_JOBS)
    for _ in range(30):
        state = queue(made)
        service_s = state.get("mean_service_time_s")
        if service_s:
            backlog_s = int(state["queued"]) * float(service_s) / max(int(state["running"]), 1)
            if backlog_s > 3 * deadline_s:
                return state
            submit_load(made, LOAD_JOBS // 2)
        else:
            time.sleep(1)  # no job finished yet: no service time to measure
    pytest.fail(f"could not build a backlog of {3 * deadline_s:.0f} s: {queue(made)}")


def test_idle_stack_passes(stack) -> None:
    result = probe(stack, deadline_s=120)
    assert result.status is Status.OK, result.message
    assert result.message.startswith("test job measured 3 islets")


def test_saturated_shepherd_is_slow_not_critical(stack) -> None:
    saturate(stack, deadline_s=40)
    # Behind the whole queue (priority 0) with a short deadline: the result cannot come in time,
    # but jobs keep finishing, so this must be "slow", never CRITICAL.
    behind = probe(stack, priority=0, deadline_s=40)
    assert behind.status is Status.WARNING, behind.message
    assert behind.message.startswith("slow: ") and "jobs queued" in behind.message
    # With its high priority, the probe's own job jumps the queue and passes (or is at worst slow).
    urgent = probe(stack, deadline_s=90)
    assert urgent.status in (Status.OK, Status.WARNING), urgent.message


def test_stopped_shepherd_is_critical_and_mails_the_runbook(stack, smtp_server) -> None:
    stack.compose("stop", "shepherd")
    try:
        time.sleep(2)
        monitoring = MonitoringConfig(
            failures_to_alert=1, probes={"e2e": {"deadline_s": 45, "priority": 100}}, runbook_url="docs/runbook.md"
        )
        config = replace(stack.site, monitoring=monitoring, mail=smtp_server.mail_config())
        report = runner.monitor_pass(config, stack.instance, only=["e2e"])
        (result,) = report.results
        assert result.status is Status.CRITICAL, result.message
        assert "shepherd dead?" in result.message
        assert len(smtp_server.messages) == 1
        mail = smtp_server.messages[0]
        assert mail["Subject"].startswith(f"CRITICAL [isletnet {stack.instance.name}#1] e2e: no result after")
        assert "docs/runbook.md#alert-e2e" in mail.get_body(("plain",)).get_content()
    finally:
        stack.compose("start", "shepherd")
