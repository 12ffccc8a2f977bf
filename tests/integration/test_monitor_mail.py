"""Alert mail through a real SMTP server (aiosmtpd): trigger/resolve from real probe passes,
an SMTP outage (outbox, nothing lost, nothing twice, heartbeat withheld), STARTTLS+AUTH, SSL."""

from __future__ import annotations

from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import notify, runner
from tests.fixtures.loopback_http import LoopbackFake, QuietHandler, serving

pytestmark = [
    pytest.mark.integration,
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]


class Heartbeat(LoopbackFake):
    """A loopback HTTP endpoint counting pings (the dead-man's switch)."""

    def __init__(self) -> None:
        self.hits = 0
        outer = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.hits += 1
                self.send_response(200)
                self.end_headers()

        self.handler = Handler


@pytest.fixture
def heartbeat():
    with serving(Heartbeat(), "/ping/abc") as beat:
        yield beat


def site(tmp_path: Path, mail, heartbeat_url: str, disk_critical: float) -> tuple[SiteConfig, InstanceConfig]:
    monitoring = MonitoringConfig(
        heartbeat_url=heartbeat_url,
        runbook_url="https://wiki.hospital.test/runbook.md",
        probes={"disk": {"paths": [str(tmp_path)], "critical_percent": disk_critical, "warning_percent": 100.0}},
    )
    instance = InstanceConfig(name="h5mail", directory=tmp_path / "instances" / "h5mail")
    return SiteConfig(source=None, instances_root=tmp_path / "instances", monitoring=monitoring, mail=mail), instance


def test_outage_keeps_alerts_in_outbox_and_sends_each_exactly_once(tmp_path, smtp_server, heartbeat) -> None:
    broken, instance = site(tmp_path, smtp_server.mail_config(), heartbeat.url, disk_critical=0.0)
    healthy, _ = site(tmp_path, smtp_server.mail_config(), heartbeat.url, disk_critical=100.0)

    for _ in range(3):
        report = runner.monitor_pass(broken, instance, only=["disk"])
    assert report.status.name == "CRITICAL" and report.heartbeat == "sent"
    assert len(smtp_server.messages) == 1
    trigger = smtp_server.messages[0]
    assert trigger["Subject"].startswith("CRITICAL [isletnet h5mail#1] disk: path ")
    assert smtp_server.envelopes[0]["to"] == ["oncall@hospital.test"]
    assert "https://wiki.hospital.test/runbook.md#alert-disk" in trigger.get_body(("plain",)).get_content()
    hits_before = heartbeat.hits

    smtp_server.stop()  # the mail server goes down; the problem recovers meanwhile
    report = runner.monitor_pass(healthy, instance, only=["disk"])
    assert report.notifications == [] and report.heartbeat == "sent"  # nothing to send: the monitor works
    report = runner.monitor_pass(healthy, instance, only=["disk"])
    assert [n.kind for n in report.notifications] == ["resolve"]
    assert report.delivery.pending == 1 and "Cannot reach SMTP server" in report.delivery.error
    assert report.heartbeat.startswith("withheld: 1 mail(s)") and heartbeat.hits == hits_before + 1
    report = runner.monitor_pass(healthy, instance, only=["disk"])
    assert report.delivery.pending == 1 and len(notify.pending(instance)) == 1

    smtp_server.start()  # back: the next pass sends the waiting mail, once
    report = runner.monitor_pass(healthy, instance, only=["disk"])
    assert report.delivery.pending == 0 and report.heartbeat == "sent" and heartbeat.hits == hits_before + 2
    runner.monitor_pass(healthy, instance, only=["disk"])
    subjects = [m["Subject"] for m in smtp_server.messages]
    assert len(subjects) == 2 and subjects[1].startswith("RESOLVED [isletnet h5mail#1] disk:")
    assert smtp_server.messages[1]["In-Reply-To"] == trigger["Message-ID"]
    assert notify.pending(instance) == []


def test_outbox_sends_oldest_first_after_an_outage(tmp_path, smtp_server) -> None:
    broken, instance = site(tmp_path, smtp_server.mail_config(), "", disk_critical=0.0)
    healthy, _ = site(tmp_path, smtp_server.mail_config(), "", disk_critical=100.0)
    smtp_server.stop()
    for config in [broken] * 3 + [healthy] * 2 + [broken] * 3:
        runner.monitor_pass(config, instance, only=["disk"])
    assert len(notify.pending(instance)) == 3
    smtp_server.start()
    report = notify.flush(instance, smtp_server.mail_config())
    assert report.pending == 0 and len(report.sent) == 3
    assert [m["X-IsletOps-Kind"] for m in smtp_server.messages] == ["trigger", "resolve", "trigger"]
    assert [m["X-IsletOps-Incident"] for m in smtp_server.messages] == ["h5mail#1", "h5mail#1", "h5mail#2"]


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login_with_password_from_the_env_file(tmp_path, smtp_server_factory, security) -> None:
    server = smtp_server_factory(security, username="alerts", password="s3cret-from-env")
    mail = server.mail_config(password_env="SMTP_PASSWORD")
    config, instance = site(tmp_path, mail, "", disk_critical=0.0)
    instance.directory.mkdir(parents=True)
    instance.env_file.write_text("SMTP_PASSWORD=wrong\n")
    for _ in range(3):
        report = runner.monitor_pass(config, instance, only=["disk"])
    assert server.messages == [] and report.delivery.pending == 1  # wrong password: kept, not lost
    assert "did not take a mail" in report.delivery.error or "Authentication" in report.delivery.error
    instance.env_file.write_text("SMTP_PASSWORD=s3cret-from-env\n")
    report = notify.flush(instance, mail)
    assert report.pending == 0 and len(server.messages) == 1
    assert server.messages[0]["Subject"].startswith("CRITICAL [isletnet h5mail#1]")


def test_permanently_refused_mail_is_set_aside_and_does_not_block_the_rest(tmp_path, smtp_server) -> None:
    broken, instance = site(tmp_path, smtp_server.mail_config(recipients=("gone@hospital.test",)), "", 0.0)
    smtp_server.refused.add("gone@hospital.test")
    for _ in range(3):
        report = runner.monitor_pass(broken, instance, only=["disk"])
    assert report.delivery.pending == 0 and "permanently refused" in report.delivery.error
    (kept,) = (instance.state_dir / "outbox" / "rejected").glob("*.eml")
    assert b"CRITICAL [isletnet h5mail#1]" in kept.read_bytes()
    smtp_server.refused.clear()
    healthy, _ = site(tmp_path, smtp_server.mail_config(), "", 100.0)
    runner.monitor_pass(healthy, instance, only=["disk"])
    report = runner.monitor_pass(healthy, instance, only=["disk"])
    assert report.delivery.error is None and [m["X-IsletOps-Kind"] for m in smtp_server.messages] == ["resolve"]
