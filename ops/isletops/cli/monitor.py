"""`isletops probe|silence|unsilence|alerts|monitor`: parse, call `monitors`, print."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from isletops.cli import Context, pass_context
from isletops.errors import ConfigError, ExitStatus, IsletOpsError
from monitors import alerts, cron, nagios, notify, probes, runner, silences
from monitors.result import Status

COLOURS = {Status.OK: "green", Status.WARNING: "yellow", Status.CRITICAL: "red", Status.UNKNOWN: "magenta"}


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


class PluginCommand(click.Command):
    """A command that keeps the Nagios plugin conventions when it cannot run: a usage or
    configuration error prints `ISLETNET UNKNOWN - <why>` on stdout and exits 3 (UNKNOWN), never
    2, which would page as CRITICAL."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as error:
            _exit_unknown(error.format_message())

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except IsletOpsError as error:
            _exit_unknown(str(error))


def _exit_unknown(reason: str) -> NoReturn:
    click.echo(nagios.unknown_line(reason))
    sys.exit(int(ExitStatus.UNKNOWN))


@click.command("probe", cls=PluginCommand)
@click.option("--only", metavar="A,B", help=f"Run only these probes ({', '.join(probes.NAMES)}).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--no-alert", is_flag=True, help="Only check: no alert state change, no mail.")
@click.option("--quiet", "-q", is_flag=True, help="Print nothing unless mail could not be sent (for cron).")
@click.option("--log", "log_file", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also append the results to FILE, with a time stamp; kept under 1 MiB plus 2 older files.")
@pass_context
def probe_command(
    ctx: Context, only: str | None, as_json: bool, no_alert: bool, quiet: bool, log_file: Path | None
) -> None:
    """One monitoring pass: run the probes, alert by mail, exit with the worst status.

    \b
    Output and exit codes follow the Nagios plugin guidelines: the first line is
    'ISLETNET <STATE> - <summary> | <perfdata>' with the worst state, then one line per probe;
    exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for bad arguments or configuration).
    Results are kept in <instance>/state/probes/; alert mails that SMTP did not take wait in
    state/outbox/.
    \b
    Examples:
      isletops probe                       all probes that apply to this host
      isletops probe --only disk           one Nagios/Icinga service check per probe
      isletops probe --only e2e,containers --json
      */5 * * * * isletops -i prod probe -q   (what 'isletops monitor install-cron' writes)
      isletops -i prod probe -q --log /home/isletnet/prod/logs/probe.log   (the provisioned cron entry)
    """
    instance = ctx.instance()
    try:
        report = runner.monitor_pass(ctx.config, instance, only=runner.parse_only(only), send_alerts=not no_alert)
    except IsletOpsError as error:
        if log_file:
            cron.append_to_log(log_file, [f"isletops: error: {error}"])
        raise
    if log_file:
        cron.append_to_log(log_file, _log_lines(report))
    if as_json:
        document = {
            "instance": instance.name,
            "status": report.status.name,
            "results": [result.to_dict() for result in report.results],
            "mails": [f"{n.state_word} {n.incident} ({n.kind})" for n in report.notifications],
            "outbox_pending": report.delivery.pending if report.delivery else None,
            "heartbeat": report.heartbeat,
        }
        click.echo(json.dumps(document, indent=2, default=str))
    elif not quiet:
        click.echo(nagios.status_line(report.results))
        for result in report.results:
            click.secho(nagios.probe_line(result), fg=COLOURS[result.status])
        for notification in report.notifications:
            click.echo(f"mail: {notification.state_word} {notification.incident} ({notification.kind})")
    if report.delivery and report.delivery.error:
        click.secho(f"isletops: warning: {report.delivery.error}", fg="yellow", err=True)
    sys.exit(int(report.status.value))


def _log_lines(report: runner.PassReport) -> list[str]:
    """What a probe pass leaves in its log: the lines it prints, and the mail warning."""
    lines = [nagios.status_line(report.results), *(nagios.probe_line(result) for result in report.results)]
    lines += [f"mail: {n.state_word} {n.incident} ({n.kind})" for n in report.notifications]
    if report.delivery and report.delivery.error:
        lines.append(f"isletops: warning: {report.delivery.error}")
    return lines


@click.command("silence")
@click.argument("target", required=False)
@click.option("--for", "duration", metavar="DURATION", help="How long: 90s, 30m, 2h, 1h30m, 1d.")
@click.option("--reason", help="Why (shown in mails and in --list).")
@click.option("--start", metavar="ISO-TIME", help="Start later (a maintenance window), e.g. 2026-11-28T22:00Z.")
@click.option("--list", "list_only", is_flag=True, help="List current and planned silences.")
@pass_context
def silence_command(
    ctx: Context, target: str | None, duration: str | None, reason: str | None, start: str | None, list_only: bool
) -> None:
    """Stop alert mail for a probe (or 'all') for a while; failures are still counted.

    \b
    Examples:
      isletops silence e2e --for 2h --reason "retraining the model"
      isletops silence all --for 3h --start 2026-11-28T22:00Z --reason "disk swap"
      isletops silence --list
      isletops unsilence e2e
    """
    instance = ctx.instance()
    if list_only or target is None:
        entries = silences.list_silences(instance.state_dir)
        if not entries:
            click.echo("No silences.")
        for entry in entries:
            planned = " (planned)" if entry.start > time.time() else ""
            click.echo(
                f"{entry.id}  {entry.target:<10} {_when(entry.start)} → {_when(entry.end)}{planned}  "
                f"{entry.author}: {entry.reason}"
            )
        return
    if not duration:
        raise ConfigError("Say how long to silence.", "Pass --for, e.g. --for 2h.")
    begins = _parse_time(start) if start else None
    entry = silences.silence(
        instance.state_dir,
        target,
        silences.parse_duration(duration),
        reason or "",
        start=begins,
        known_probes=probes.NAMES,
    )
    click.echo(
        f"Silenced {entry.target} until {_when(entry.end)} (id {entry.id}); "
        f"end it with 'isletops unsilence {entry.id}'."
    )


def _parse_time(text: str) -> float:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise silences.SilenceError(f"'{text}' is not a time.", "Write it like 2026-11-28T22:00Z.") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


@click.command("unsilence")
@click.argument("target")
@pass_context
def unsilence_command(ctx: Context, target: str) -> None:
    """End silences by id, or by probe name ('all' ends the silences on all).

    \b
    Example:
      isletops unsilence e2e
    """
    for entry in silences.unsilence(ctx.instance().state_dir, target):
        click.echo(f"Ended silence {entry.id} on {entry.target} ({entry.reason}).")


@click.command("alerts")
@click.option("--json", "as_json", is_flag=True, help="Print the alert state as JSON.")
@pass_context
def alerts_command(ctx: Context, as_json: bool) -> None:
    """Show the open incident, firing probes, recent incidents and waiting mails.

    \b
    Example:
      isletops alerts
    """
    instance = ctx.instance()
    state = alerts.load_state(runner.alerts_path(instance), instance.name)
    waiting = len(notify.pending(instance))
    if as_json:
        click.echo(json.dumps({**state, "outbox_pending": waiting}, indent=2, default=str))
        return
    incident = state["open"]
    if incident is None:
        click.echo("No open incident.")
    else:
        click.secho(
            f"{incident['severity']} {incident['name']} open since {_when(incident['opened_at'])}: "
            f"firing {', '.join(incident['firing'])}",
            fg=COLOURS[Status[incident["severity"]]],
        )
        for name in incident["firing"]:
            entry = state["probes"][name]
            click.echo(f"  {name}: {entry['message']} (since {_when(entry['firing_since'])})")
    for closed in state["closed"][-5:]:
        click.echo(
            f"closed {closed['name']}: {', '.join(closed['probes'])} {_when(closed['opened_at'])} → "
            f"{_when(closed.get('closed_at'))}"
        )
    if waiting:
        click.secho(f"{waiting} alert mail(s) wait in {notify.outbox_dir(instance)}.", fg="yellow")


@click.group("monitor", invoke_without_command=True)
@click.option("--port", type=int, help="Status port on 127.0.0.1 (default: monitoring.status_port).")
@click.pass_context
def monitor_group(click_ctx: click.Context, port: int | None) -> None:
    """Run the monitor daemon: each probe on its interval, /status and /metrics on 127.0.0.1.

    \b
    Examples:
      isletops -i prod monitor                  run in the foreground (systemd runs it like this)
      curl -s 127.0.0.1:9110/status | jq .status
      isletops -i prod monitor install-cron     or: one pass every 5 minutes from cron
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from monitors.daemon import MonitorDaemon

    ctx = click_ctx.find_object(Context)
    if ctx is None:  # only when called outside `isletops` (main() sets the context)
        raise click.UsageError("'monitor' runs as a subcommand of isletops.")
    daemon = MonitorDaemon(ctx.config, ctx.instance(), port=port)
    daemon.start()
    click.echo(
        f"isletops monitor: {', '.join(daemon.enabled)} on schedule; "
        f"http://127.0.0.1:{daemon.port}/status and /metrics",
        err=True,
    )

    def stop(signum: int, _frame: object) -> None:
        daemon.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    daemon.wait()


@monitor_group.command("install-cron")
@click.option("--schedule", metavar="CRON", help="Cron schedule (default: monitoring.cron_schedule, '*/5 * * * *').")
@click.option(
    "--crontab-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Edit this crontab file instead of the user's crontab (tests, managed setups).",
)
@click.option("--dry-run", is_flag=True, help="Show the line, change nothing.")
@pass_context
def install_cron_command(ctx: Context, schedule: str | None, crontab_file: Path | None, dry_run: bool) -> None:
    """Add (or update) the crontab line that runs 'isletops probe' for this instance; idempotent.

    \b
    Example:
      isletops -i prod monitor install-cron --schedule '*/2 * * * *'
    """
    instance = ctx.instance()
    executable = shutil.which("isletops") or str(Path(sys.executable).with_name("isletops"))
    command = [executable]
    if ctx.config.source is not None:
        command += ["--config", str(Path(ctx.config.source).resolve())]
    command += ["--instance", instance.name, "probe", "--quiet"]
    change = cron.install(
        schedule or ctx.config.monitoring.cron_schedule, command, instance.name, crontab_file, dry_run=dry_run
    )
    if not change.changed:
        click.echo(f"Already installed in {change.target}: {change.line}")
    elif dry_run:
        click.echo(f"Would write to {change.target}: {change.line}")
    else:
        click.echo(f"Installed in {change.target}: {change.line}")


@monitor_group.command("send-outbox")
@pass_context
def send_outbox_command(ctx: Context) -> None:
    """Send the alert mails waiting in the outbox now (they also go out with every pass).

    \b
    Example:
      isletops monitor send-outbox
    """
    instance = ctx.instance()
    report = notify.flush(instance, ctx.config.mail)
    click.echo(f"Sent {len(report.sent)} mail(s); {report.pending} waiting.")
    if report.error:
        click.secho(f"isletops: warning: {report.error}", fg="yellow", err=True)
        sys.exit(int(ExitStatus.WARNING))


def register(main: click.Group) -> None:
    for command in (probe_command, silence_command, unsilence_command, alerts_command, monitor_group):
        main.add_command(command)
