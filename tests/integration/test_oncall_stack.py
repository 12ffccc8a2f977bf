"""The on-call autopilot against one real stack (module-scoped: Docker time is scarce):
self-healing restarts a `docker kill`ed shepherd through cron-style passes, holds back while a
deploy holds the lock, audits and mails what it did; the doctor diagnoses a crash-looping service."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
from click.testing import CliRunner

from isletops.cli import main
from isletops.config import MonitoringConfig, SelfHealConfig
from isletops.lock import InstanceLock, LockDetails
from monitors import runner
from tests.fixtures.stack import StackInstances

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(service_images, tmp_path_factory):
    instances = StackInstances(tmp_path_factory)
    try:
        yield instances.make("oncall")
    finally:
        instances.close()


def container(live, service: str):
    (found,) = live.engine.client.containers.list(
        all=True, filters={"label": [f"com.docker.compose.project={live.project}",
                                     f"com.docker.compose.service={service}"]})  # fmt: skip
    return found


def audit_lines(live) -> list[str]:
    path = live.instance.state_dir / "audit.log"
    return path.read_text().splitlines() if path.exists() else []


def test_killed_shepherd_is_restarted_but_never_while_a_deploy_holds_the_lock(live, smtp_server) -> None:
    monitoring = MonitoringConfig(
        probes={"containers": {}}, self_heal=SelfHealConfig(after_checks=2, max_restarts=3, window_s=1800)
    )
    site = dataclasses.replace(live.site, monitoring=monitoring, mail=smtp_server.mail_config())
    shepherd = container(live, "shepherd")
    shepherd.kill()
    shepherd.reload()
    assert shepherd.status == "exited"

    lock = InstanceLock(live.instance.state_dir, live.instance.name)
    lock.acquire(LockDetails.for_this_process("deploy", version="2099-01-01_01", message="itest deploy"))
    try:
        for _ in range(2):
            runner.monitor_pass(site, live.instance, only=["containers"])
        shepherd.reload()
        assert shepherd.status == "exited"  # nothing was done while the lock was held
        assert not any("restarted shepherd" in line for line in audit_lines(live))
        held = [m for m in smtp_server.messages if "a deploy holds the lock" in str(m["Subject"])]
        assert len(held) == 1  # said once, not every pass
    finally:
        lock.release()

    report = runner.monitor_pass(site, live.instance, only=["containers"])  # the streak is long enough now
    shepherd.reload()
    assert shepherd.status == "running"
    assert report.status.name == "CRITICAL"  # this pass's probe saw it exited, before the restart
    restarted = [line for line in audit_lines(live) if "self-heal: restarted shepherd at" in line]
    assert len(restarted) == 1 and "healthy again at" in restarted[0]
    assert "[isletops-monitor]" in restarted[0] and f"[{live.instance.name}]" in restarted[0]
    healed = [m for m in smtp_server.messages if str(m["Subject"]).startswith("HEALED")]
    assert len(healed) == 1 and "restarted shepherd at" in str(healed[0]["Subject"])
    assert "healthy again at" in healed[0].get_body(("plain",)).get_content()
    # The incident's own mail (3 failed checks) carries what self-healing did.
    trigger = [m for m in smtp_server.messages if m["X-IsletOps-Kind"] == "trigger"]
    assert trigger and "Self-healing:" in trigger[0].get_body(("plain",)).get_content()
    assert "restarted shepherd at" in trigger[0].get_body(("plain",)).get_content()

    runner.monitor_pass(site, live.instance, only=["containers"])  # fine now: no further action
    assert len([line for line in audit_lines(live) if "self-heal" in line]) == 2  # the hold note + the restart


def isletops(live, *args: str, stdin: str | None = None):
    return CliRunner().invoke(main, ["--config", str(live.config_path), *args], input=stdin, catch_exceptions=False)


def wait_for(predicate, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError("timed out")


def doctor_json(live, *args: str) -> tuple[int, dict]:
    done = isletops(live, "doctor", "--json", *args)
    return done.exit_code, json.loads(done.stdout)


def test_doctor_reads_the_real_queue_and_finds_no_drift(live) -> None:
    # The job database through the queue container's network address and the .env password.
    code, document = doctor_json(live, "--area", "queue", "--area", "drift", "--area", "pruner")
    assert (code, document["findings"]) == (0, [])
    done = isletops(live, "doctor", "--area", "queue", "--area", "drift")
    assert done.exit_code == 0 and done.output.startswith(f"isletops doctor: instance '{live.project}' looks healthy")


def test_doctor_restarts_an_exited_service_with_fix_after_asking(live) -> None:
    shepherd = container(live, "shepherd")
    shepherd.kill()
    code, document = doctor_json(live, "--area", "containers")
    (finding,) = [f for f in document["findings"] if f["title"].startswith("shepherd is exited")]
    assert code == 2 and finding["fix"]["kind"] == "restart"
    assert "shepherd (exited, exit code 137)" in finding["evidence"][0]

    refused = isletops(live, "doctor", "--area", "containers", "--fix", stdin="n\n")
    assert "restart shepherd (isletops restart shepherd)? [y/N]" in refused.output
    shepherd.reload()
    assert shepherd.status == "exited" and not any("doctor --fix" in line for line in audit_lines(live))

    fixed = isletops(live, "doctor", "--area", "containers", "--fix", "--yes")
    assert "done: restart shepherd (isletops restart shepherd): shepherd restarted and healthy" in fixed.output
    shepherd.reload()
    assert shepherd.status == "running"
    assert any("doctor --fix: restart shepherd" in line for line in audit_lines(live))
    code, document = doctor_json(live, "--area", "containers")
    assert code == 0 and document["findings"] == []


def test_doctor_diagnoses_a_crash_looping_service(live) -> None:
    edge = container(live, "edge")
    for number in range(3):  # nginx dies on its own (not a `docker stop`): Docker restarts it each time
        edge.exec_run(["kill", "-TERM", "1"])
        wait_for(lambda n=number: (edge.reload(), edge.attrs["RestartCount"])[1] > n
                 and edge.status == "running")  # fmt: skip
    code, document = doctor_json(live, "--area", "containers")
    (finding,) = [f for f in document["findings"] if f["title"].startswith("edge")]
    assert finding["title"] == "edge is crash-looping" and finding["severity"] == "CRITICAL"
    assert "restarted 3 times by Docker" in finding["evidence"]
    assert finding["fix"] is None and "rollback" in finding["command"]
    assert finding["runbook"] == "docs/runbook.md#a-service-is-crash-looping"
    assert code == 2
