"""Self-healing's acting half with a fake restart: what is restarted, audited and mailed, and
that nothing happens while the deploy lock is held or the containers probe did not run."""

from __future__ import annotations

import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MailConfig, MonitoringConfig, SelfHealConfig, SiteConfig
from isletops.errors import DockerError
from isletops.lock import InstanceLock, LockDetails
from monitors import healing, notify, ops_adapter, self_heal
from monitors.result import ProbeResult, Status

NOW = 1_800_000_000.0


def site(**heal) -> SiteConfig:
    return SiteConfig(source=None, monitoring=MonitoringConfig(self_heal=SelfHealConfig(**heal)),
                      mail=MailConfig(recipients=("oncall@hospital.test",)))  # fmt: skip


def result(*containers: dict) -> ProbeResult:
    return ProbeResult("containers", Status.CRITICAL, 0.0, "x", {"containers": list(containers)})


EXITED = {"service": "shepherd", "state": "exited", "exit_code": 137}


@pytest.fixture
def restarts(monkeypatch):
    done: list[str] = []

    def fake_restart(site, instance, service, engine=None, timeout_s=None):
        done.append(service)
        if service == "queue":
            raise DockerError("Project 'x' has a broken service: queue (running, unhealthy).")
        return []

    monkeypatch.setattr(ops_adapter, "restart_service", fake_restart)
    return done


def test_restart_is_audited_and_mailed(tmp_path: Path, restarts) -> None:
    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    assert self_heal.heal(site(), instance, [result(EXITED)], NOW) == []
    (event,) = self_heal.heal(site(), instance, [result(EXITED)], NOW + 60)
    assert restarts == ["shepherd"] and event["kind"] == "restarted"
    assert event["text"].startswith("restarted shepherd at ") and ", healthy again at " in event["text"]
    audit = (instance.state_dir / "audit.log").read_text().splitlines()
    assert len(audit) == 1 and "[isletops-monitor] [h5heal] self-heal: restarted shepherd at" in audit[0]
    (mail,) = notify.pending(instance)
    text = mail.read_text()
    assert "Subject: HEALED [isletnet h5heal] self-healing: restarted shepherd at" in text
    assert healing.load_state(self_heal.state_path(instance))["events"][-1] == event


def test_failed_restart_and_giving_up_are_critical_mails(tmp_path: Path, restarts) -> None:
    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    unhealthy = {"service": "queue", "state": "running", "health": "unhealthy"}
    budget = site(after_checks=1, max_restarts=2)
    kinds = [e["kind"] for n in range(4) for e in self_heal.heal(budget, instance, [result(unhealthy)], NOW + n)]
    assert kinds == ["restart_failed", "restart_failed", "gave_up"]
    parse = BytesParser(policy=policy.default).parsebytes
    subjects = [str(parse(path.read_bytes())["Subject"]) for path in notify.pending(instance)]
    assert subjects[-1].startswith("CRITICAL [isletnet h5heal] self-healing: queue: gave up after 2 restarts in 1 min")
    body = notify.pending(instance)[-1].read_text()
    assert "isletops -i h5heal logs queue --tail 200" in body and "rollback" in body


def test_nothing_while_the_lock_is_held(tmp_path: Path, restarts) -> None:
    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    lock = InstanceLock(instance.state_dir, instance.name)
    lock.acquire(LockDetails.for_this_process("deploy", version="2099-01-01_01"))
    events = [e for n in range(3) for e in self_heal.heal(site(), instance, [result(EXITED)], NOW + n)]
    assert restarts == [] and [e["kind"] for e in events] == ["held"]
    lock.release()
    (event,) = self_heal.heal(site(), instance, [result(EXITED)], NOW + 10)
    assert event["kind"] == "restarted" and restarts == ["shepherd"]


def test_off_or_no_containers_result_does_nothing(tmp_path: Path, restarts) -> None:
    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    for _ in range(3):
        assert self_heal.heal(site(enabled=False), instance, [result(EXITED)], NOW) == []
        assert self_heal.heal(site(), instance, [ProbeResult("disk", Status.OK)], NOW) == []
        assert self_heal.heal(site(services={"shepherd": False}), instance, [result(EXITED)], NOW) == []
    assert restarts == [] and not (instance.state_dir / "audit.log").exists()


def test_incident_mails_list_the_actions(tmp_path: Path, restarts) -> None:
    from monitors.alerts import Notification

    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    self_heal.heal(site(after_checks=1), instance, [result(EXITED)], NOW)
    opened = time.time()  # actions carry the wall-clock time they happened at
    notification = Notification("trigger", "h5heal", "h5heal#1", 1, opened, Status.CRITICAL, 0, opened + 5)
    message = notify.render(notification, instance, MonitoringConfig(), site().mail)
    plain = message.get_body(("plain",)).get_content()
    assert "Self-healing:\n  restarted shepherd at " in plain
    assert "Self-healing" in message.get_body(("html",)).get_content()


def test_the_daemon_heals_after_its_containers_run(tmp_path: Path, restarts, monkeypatch) -> None:
    from monitors import runner
    from monitors.daemon import MonitorDaemon

    instance = InstanceConfig("h5heal", tmp_path / "h5heal")
    monkeypatch.setattr(runner, "run_probes", lambda config, inst, names, **kw: [result(EXITED)])
    daemon = MonitorDaemon(site(), instance, port=0)
    for _ in range(2):
        daemon.run_probe("containers")
    assert restarts == ["shepherd"]
    assert "self-heal: restarted shepherd" in (instance.state_dir / "audit.log").read_text()
