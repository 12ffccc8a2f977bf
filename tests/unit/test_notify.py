"""Alert mail rendering (subject, threading headers, body) and the outbox without a server."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

from isletops.config import InstanceConfig, MailConfig, MonitoringConfig
from monitors import alerts, notify
from monitors.result import ProbeResult, Status

T0 = 1_800_000_000.0
MAIL = MailConfig(sender="isletops@hospital.test", recipients=("oncall@hospital.test", "it@hospital.test"))
MONITORING = MonitoringConfig(runbook_url="https://git.hospital.test/isletops/-/blob/main/docs/runbook.md")


def incident_mails() -> list[alerts.Notification]:
    """trigger, reminder and resolve of one incident where disk and pruner broke together."""
    state, mails, now = alerts.new_state("prod"), [], T0
    policy = alerts.Policy()

    def step(disk: Status, pruner: Status, advance: float = 300) -> None:
        nonlocal state, now
        now += advance
        results = [
            ProbeResult("disk", disk, 93.0 if disk else 71.0, "data dir /srv 93% full, full in 5 h" if disk
                        else "fullest data dir at 71%", {"unit": "%"}, now),
            ProbeResult("pruner", pruner, 30.0 if pruner else 1.0, "no successful prune for 30.0 h" if pruner
                        else "last successful prune 60 min ago", {"unit": "h since last success"}, now),
        ]  # fmt: skip
        state, new = alerts.evaluate(state, results, now, policy)
        mails.extend(new)

    step(Status.OK, Status.OK)
    for _ in range(3):
        step(Status.CRITICAL, Status.WARNING)
    step(Status.CRITICAL, Status.WARNING, advance=4 * 3600)
    step(Status.OK, Status.OK)
    step(Status.OK, Status.OK)
    assert [mail.kind for mail in mails] == ["trigger", "reminder", "resolve"]
    return mails


def test_subject_starts_with_state_and_stable_incident_name(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    trigger, reminder, resolve = (notify.render(m, instance, MONITORING, MAIL) for m in incident_mails())
    assert trigger["Subject"].startswith("CRITICAL [isletnet prod#1] disk, pruner: data dir /srv 93% full")
    assert reminder["Subject"].startswith("CRITICAL [isletnet prod#1] reminder disk, pruner:")
    assert resolve["Subject"].startswith("RESOLVED [isletnet prod#1] disk, pruner: all clear after 4 h 10 min")


def test_mails_of_one_incident_form_one_thread(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    trigger, reminder, resolve = (notify.render(m, instance, MONITORING, MAIL) for m in incident_mails())
    root = trigger["Message-ID"]
    assert root.endswith("@hospital.test>") and trigger["In-Reply-To"] is None
    for reply in (reminder, resolve):
        assert reply["In-Reply-To"] == root and reply["References"] == root
    assert len({trigger["Message-ID"], reminder["Message-ID"], resolve["Message-ID"]}) == 3
    # the same notification renders the same Message-ID (a re-render never forks the thread)
    again = notify.render(incident_mails()[0], instance, MONITORING, MAIL)
    assert again["Message-ID"] == root


def test_body_says_what_since_value_last_good_and_runbook_steps(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    message = notify.render(incident_mails()[0], instance, MONITORING, MAIL)
    assert message.is_multipart()
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "what:       data dir /srv 93% full, full in 5 h" in plain
    assert "since:      2027-01-15 08:" in plain
    assert "measured:   93 %" in plain and "last good:  71 %" in plain
    assert f"{MONITORING.runbook_url}#alert-disk" in plain and f"{MONITORING.runbook_url}#alert-pruner" in plain
    assert "isletops -i prod restart pruner" in plain and "isletops -i prod silence" in plain
    assert f'href="{MONITORING.runbook_url}#alert-disk"' in html and "Runbook: Alert: disk" in html
    assert message["To"] == "oncall@hospital.test, it@hospital.test"


def test_resolve_mail_shows_what_was_wrong(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    message = notify.render(incident_mails()[-1], instance, MONITORING, MAIL)
    plain = message.get_body(("plain",)).get_content()
    assert "has recovered" in plain and "disk: recovered" in plain
    assert "what:       data dir /srv 93% full, full in 5 h" in plain


def test_smtp_unreachable_keeps_mail_in_outbox(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    closed_port = MailConfig(smtp_port=1, recipients=("oncall@hospital.test",), timeout_s=2)
    report = notify.deliver(incident_mails()[:1], instance, MONITORING, closed_port)
    assert report.sent == [] and report.pending == 1
    assert report.error.startswith("Cannot reach SMTP server 127.0.0.1:1")
    (saved,) = notify.pending(instance)
    parsed = BytesParser(policy=policy.default).parsebytes(saved.read_bytes())
    assert parsed["Subject"].startswith("CRITICAL [isletnet prod#1]")


def test_no_recipients_or_missing_password_keep_mail_and_say_why(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path)
    report = notify.deliver(incident_mails()[:1], instance, MONITORING, MailConfig(recipients=()))
    assert report.pending == 1 and "mail.recipients is empty" in report.error
    with_user = MailConfig(username="alerts", password_env="ISLETOPS_TEST_NO_SUCH_VAR", recipients=("a@b.test",))
    report = notify.flush(instance, with_user)
    assert report.pending == 1
    assert report.error == f"SMTP user alerts has no password: set ISLETOPS_TEST_NO_SUCH_VAR in {instance.env_file}."
