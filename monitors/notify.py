"""The one SMTP module: renders alert mails and delivers them through an on-disk outbox.

Every mail is first written to the instance's `state/outbox/` (one `.eml` file, atomic), then
the outbox is flushed oldest first; a file is deleted only after the SMTP server accepted it.
SMTP down means the mail waits there and goes out on the next run: nothing is dropped and,
because a sent file is gone, nothing is sent twice. Mails of one incident form one thread
(Message-ID / In-Reply-To / References derived from the incident), the subject starts with the
state word and the incident name.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import smtplib
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import formatdate
from pathlib import Path

from isletops.config import InstanceConfig, MailConfig, MonitoringConfig, read_env_file
from monitors import healing, runbook
from monitors.alerts import Notification
from monitors.state import locked

KIND_WORDS = {
    "trigger": "is broken",
    "update": "has changed",
    "reminder": "is still broken",
    "resolve": "has recovered",
}


@dataclass
class FlushReport:
    """What one outbox flush did. `error` is one sentence when SMTP refused or was unreachable."""

    sent: list[str] = field(default_factory=list)  # Message-IDs
    pending: int = 0
    error: str | None = None


def outbox_dir(instance: InstanceConfig) -> Path:
    return instance.state_dir / "outbox"


# -- rendering ---------------------------------------------------------------------------------


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours >= 48:
        return f"{hours // 24} d {hours % 24} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _value(value: object, unit: str) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        value = f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return f"{value} {unit}".strip()


def message_id(notification: Notification, number: int, domain: str) -> str:
    """A Message-ID that is the same every time for the same incident and mail number."""
    return f"<isletops.{notification.instance}.{notification.seq}.{int(notification.opened_at)}.{number}@{domain}>"


def subject(notification: Notification) -> str:
    firing = [probe for probe in notification.probes if probe["firing"]] or notification.probes
    headline = firing[0]["message"] if firing else ""
    if notification.kind == "resolve":
        headline = f"all clear after {_duration(notification.now - notification.opened_at)}"
    more = f" (+{len(firing) - 1} more)" if notification.kind != "resolve" and len(firing) > 1 else ""
    probe_names = ", ".join(probe["name"] for probe in notification.probes)
    tag = {"reminder": " reminder", "update": " update"}.get(notification.kind, "")
    text = f"{notification.state_word} [isletnet {notification.incident}]{tag} {probe_names}: {headline}{more}"
    return " ".join(text.split())[:200]


def _for_instance(step: str, instance: str) -> str:
    """A runbook step aimed at this instance: `isletops restart x` -> `isletops -i prod restart x`."""
    return step.replace("isletops ", f"isletops -i {instance} ")


def _probe_lines(probe: dict, notification: Notification, monitoring: MonitoringConfig) -> list[str]:
    section = runbook.section(probe["name"])
    state = "recovered" if not probe["firing"] else probe["severity"] + (" (flapping)" if probe["flapping"] else "")
    since = probe["firing_since"] or probe["streak_since"]
    lines = [
        f"{probe['name']}: {state}{' — silenced' if probe['silenced'] else ''}",
        f"  what:       {probe['message'] if probe['firing'] else probe['last_failure_message']}",
    ]
    if probe["firing"]:
        lines.append(f"  since:      {_when(since)} ({_duration(notification.now - since) if since else 'n/a'})")
    lines += [
        f"  measured:   {_value(probe['value'], probe['unit'])} at {_when(probe['checked_at'])}",
        f"  last good:  {_value(probe['last_good_value'], probe['unit'])} at {_when(probe['last_good_at'])}",
        f"  runbook:    {runbook.link(monitoring.runbook_url, probe['name'])}",
    ]
    if probe["firing"]:
        lines.append("  steps:")
        lines += [f"    {_for_instance(step, notification.instance)}" for step in section.steps]
    return lines


def _healing_lines(instance: InstanceConfig, notification: Notification) -> list[str]:
    """What self-healing did around this incident (from an hour before it opened)."""
    state = healing.load_state(healing.state_path(instance.state_dir))
    events = healing.events_since(state, notification.opened_at - 3600)
    if not events:
        return []
    return ["Self-healing:"] + [f"  {event['text']}" for event in events]


def render(
    notification: Notification, instance: InstanceConfig, monitoring: MonitoringConfig, mail: MailConfig
) -> EmailMessage:
    """The multipart (plain + HTML) mail for one notification."""
    domain = mail.sender.rpartition("@")[2].strip("> ") if "@" in mail.sender else socket.getfqdn()
    message = EmailMessage()
    message["Subject"] = subject(notification)
    message["From"] = mail.sender
    message["To"] = ", ".join(mail.recipients)
    message["Date"] = formatdate(notification.now, usegmt=True)
    message["Message-ID"] = message_id(notification, notification.mail_number, domain)
    if notification.mail_number > 0:
        root = message_id(notification, 0, domain)
        message["In-Reply-To"] = root
        message["References"] = root
    message["X-IsletOps-Incident"] = notification.incident
    message["X-IsletOps-State"] = notification.state_word
    message["X-IsletOps-Kind"] = notification.kind

    intro = (
        f"IsletNet instance '{instance.name}' {KIND_WORDS[notification.kind]}: incident {notification.incident}, "
        f"opened {_when(notification.opened_at)}, {notification.state_word}."
    )
    if notification.joined and notification.kind == "update":
        intro += f" Newly failing: {', '.join(notification.joined)}."
    blocks = [_probe_lines(probe, notification, monitoring) for probe in notification.probes]
    plain = [intro, ""]
    for block in blocks:
        plain += block + [""]
    healed = _healing_lines(instance, notification)
    plain += healed + ([""] if healed else [])
    plain.append(
        f"Silence while you work on it: isletops -i {instance.name} silence <probe|all> --for 2h --reason '...'"
    )
    plain.append(f"Sent by isletops on {socket.gethostname()} at {_when(notification.now)}.")
    message.set_content("\n".join(plain) + "\n")

    rows = []
    for probe, block in zip(notification.probes, blocks, strict=True):
        link = runbook.link(monitoring.runbook_url, probe["name"])
        body = html.escape("\n".join(block[1:]))
        title = html.escape(runbook.section(probe["name"]).title)
        rows.append(
            f"<h3>{html.escape(block[0])}</h3><pre>{body}</pre>"
            f'<p><a href="{html.escape(link, quote=True)}">Runbook: {title}</a></p>'
        )
    if healed:
        rows.append(f"<h3>{html.escape(healed[0])}</h3><pre>{html.escape(chr(10).join(healed[1:]))}</pre>")
    message.add_alternative(
        "<html><body>"
        f"<p>{html.escape(intro)}</p>{''.join(rows)}"
        f"<p><small>{html.escape(plain[-2])}<br>{html.escape(plain[-1])}</small></p>"
        "</body></html>",
        subtype="html",
    )
    return message


# -- outbox and delivery -----------------------------------------------------------------------


def enqueue(instance: InstanceConfig, message: EmailMessage) -> Path:
    """Write the mail into the outbox (atomically) and return its file."""
    directory = outbox_dir(instance)
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{os.getpid()}.eml"
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=directory)
    with os.fdopen(fd, "wb") as handle:
        handle.write(message.as_bytes(policy=email_policy.SMTP))
        handle.flush()
        os.fsync(handle.fileno())
    path = directory / name
    os.replace(tmp, path)
    return path


def pending(instance: InstanceConfig) -> list[Path]:
    directory = outbox_dir(instance)
    return sorted(directory.glob("*.eml")) if directory.is_dir() else []


def _password(instance: InstanceConfig, mail: MailConfig) -> str | None:
    return read_env_file(instance.env_file).get(mail.password_env) or os.environ.get(mail.password_env)


def _connect(mail: MailConfig) -> smtplib.SMTP:
    context = ssl.create_default_context(cafile=mail.ca_file or None)
    if mail.security == "ssl":
        client: smtplib.SMTP = smtplib.SMTP_SSL(mail.smtp_host, mail.smtp_port, timeout=mail.timeout_s, context=context)
    else:
        client = smtplib.SMTP(mail.smtp_host, mail.smtp_port, timeout=mail.timeout_s)
    if mail.security == "starttls":
        client.starttls(context=context)
    return client


def flush(instance: InstanceConfig, mail: MailConfig) -> FlushReport:
    """Send every outbox mail, oldest first; stop at the first failure and keep the rest."""
    report = FlushReport()
    server = f"{mail.smtp_host}:{mail.smtp_port}"
    directory = outbox_dir(instance)
    directory.mkdir(parents=True, exist_ok=True)
    with locked(directory / "flush", blocking=False) as owned:
        if not owned:  # another pass is sending right now; it will take these too
            report.pending = len(pending(instance))
            return report
        files = pending(instance)
        if not files:
            return report
        if not mail.recipients:
            report.pending = len(files)
            report.error = "mail.recipients is empty, so alert mails wait in the outbox; add recipients to the config."
            return report
        password = _password(instance, mail) if mail.username else None
        if mail.username and not password:
            report.pending = len(files)
            report.error = (
                f"SMTP user {mail.username} has no password: set {mail.password_env} in {instance.env_file}."
            )
            return report
        try:
            client = _connect(mail)
        except (OSError, smtplib.SMTPException) as exc:
            report.pending = len(files)
            report.error = f"Cannot reach SMTP server {server} ({exc}); mails wait in the outbox."
            return report
        try:
            if mail.username:
                client.login(mail.username, password or "")
            for path in files:
                message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
                try:
                    client.send_message(message)
                except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
                    code = getattr(exc, "smtp_code", 550)
                    if code < 500:
                        raise
                    # Permanently refused: keep it for a human in rejected/, do not block the others.
                    rejected = directory / "rejected"
                    rejected.mkdir(exist_ok=True)
                    os.replace(path, rejected / path.name)
                    report.error = f"SMTP server {server} permanently refused a mail ({exc}); it is in {rejected}."
                    continue
                path.unlink()
                report.sent.append(str(message["Message-ID"]))
        except (OSError, smtplib.SMTPException) as exc:
            report.error = f"SMTP server {server} did not take a mail ({exc}); it waits in the outbox."
        finally:
            try:
                client.quit()
            except (OSError, smtplib.SMTPException):
                client.close()
        report.pending = len(pending(instance))
    return report


def deliver(
    notifications: list[Notification], instance: InstanceConfig, monitoring: MonitoringConfig, mail: MailConfig
) -> FlushReport:
    """Queue mails for `notifications`, then flush the whole outbox (older waiting mails first)."""
    for notification in notifications:
        enqueue(instance, render(notification, instance, monitoring, mail))
    return flush(instance, mail)
