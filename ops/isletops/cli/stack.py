"""`isletops build|up|down|restart|logs|ps|status|demo`: parse, call `isletops.stack`/`isletops.demo`, print."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import click

from isletops import deploy
from isletops import stack as core
from isletops.cli import Context, pass_context
from isletops.engines import HealthPolicy, ServiceState, engine_for
from isletops.errors import ConfigError, ExitStatus, IsletOpsError
from isletops.release import COMPONENTS


@dataclass
class Reporter:
    """Progress callbacks for long commands: `step` for isletops' own lines, `output` for tool
    output (Docker build steps). On a terminal a rich spinner shows the latest line and keeps the
    steps; on a pipe steps are printed and tool output only with -v."""

    step: Callable[[str], None]
    output: Callable[[str], None]


@contextlib.contextmanager
def progress_reporter(title: str, verbose: bool = False) -> Iterator[Reporter]:
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        with console.status(title) as status:

            def step(line: str) -> None:
                console.log(line)
                status.update(f"{title}: {line}")

            def output(line: str) -> None:
                if verbose:
                    console.print(line, markup=False, highlight=False)
                status.update(f"{title}: {line[:100]}")

            yield Reporter(step, output)
        return

    def step_on_pipe(line: str) -> None:
        click.echo(f"  {line}", err=True)

    def output_on_pipe(line: str) -> None:
        if verbose:
            click.echo(f"    {line}", err=True)

    click.echo(f"{title} …", err=True)
    yield Reporter(step_on_pipe, output_on_pipe)


def _state_rows(states: list[ServiceState]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for state in states:
        started = state.started_at.strftime("%Y-%m-%d %H:%M:%S") if state.started_at else "-"
        rows.append((state.service, state.state, state.health or "-", str(state.restart_count), started,
                     state.image or "-"))
    return rows


def print_states(states: list[ServiceState]) -> None:
    header = ("SERVICE", "STATE", "HEALTH", "RESTARTS", "STARTED (UTC)", "IMAGE")
    rows = [header, *_state_rows(states)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        ready = row is header or (row[1] == "running" and row[2] in ("-", "healthy"))
        click.secho(line, fg=None if ready else "red")  # click drops colours on a pipe


def _not_ready(states: list[ServiceState]) -> list[ServiceState]:
    return [state for state in states if not state.is_ready]


@click.command("build")
@click.argument("components", nargs=-1, metavar="[COMPONENT]...")
@click.option("--tag", metavar="TAG", help="Release tag to give the images (default: reuse the newest local "
              "release when nothing changed, else the next tag of today).")
@click.option("--base-image", default=core.BASE_IMAGE, show_default=True, metavar="IMAGE",
              help="Image every Dockerfile starts FROM (a public Debian bookworm image in production).")
@pass_context
def build_command(ctx: Context, components: tuple[str, ...], tag: str | None, base_image: str) -> None:
    """Build the service images and tag them as one release.

    \b
    Examples:
      isletops build                  all seven images, tagged e.g. 2026-11-23_01
      isletops build backend shepherd rebuild two; the release tag covers all seven
    """
    with progress_reporter("building images", ctx.verbose) as report:
        result = core.build_images(components or None, tag=tag, progress=report.step, output=report.output,
                                   base_image=base_image, base_max_age_days=ctx.config.base_image_max_age_days)
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    note = " (nothing changed since this release)" if result.reused_tag else ""
    click.secho(f"release {result.tag}{note}:", fg="green")
    for ref in result.images.values():
        click.echo(f"  {ref}")
    click.echo(f"Start it with: isletops up --tag {result.tag}")


@click.command("up")
@click.argument("services", nargs=-1, metavar="[SERVICE]...")
@click.option("--tag", metavar="TAG", help="Release to run (default: the instance's current one).")
@click.option("--force-recreate", is_flag=True, help="Recreate containers even when nothing changed.")
@click.option("--timeout", "timeout_s", type=click.IntRange(min=1), metavar="SECONDS",
              help="How long to wait for health (default: the instance's health_timeout_s).")
@pass_context
def up_command(ctx: Context, services: tuple[str, ...], tag: str | None, force_recreate: bool,
               timeout_s: int | None) -> None:
    """Start the instance's stack (or update it to --tag) and wait until every service is healthy.

    \b
    Examples:
      isletops up --tag 2026-11-23_01
      isletops -i staging up --force-recreate
      isletops up shepherd            only (re)start the shepherd
    """
    instance = ctx.instance()
    with progress_reporter(f"starting instance '{instance.name}'", ctx.verbose):
        states = core.up(ctx.config, instance, tag=tag, force_recreate=force_recreate, services=services or None,
                         timeout_s=timeout_s)
    print_states(states)
    click.secho(f"instance '{instance.name}' is up on {core.current_tag(instance)}: frontend {instance.frontend_url}, "
                f"API {instance.api_url}", fg="green")


@click.command("down")
@click.option("--volumes", is_flag=True, help="Also delete the instance's data (all images, results and jobs!).")
@click.option("--yes", is_flag=True, help="Confirm --volumes without asking.")
@pass_context
def down_command(ctx: Context, volumes: bool, yes: bool) -> None:
    """Stop and remove the instance's containers (data is kept unless --volumes --yes).

    \b
    Examples:
      isletops down
      isletops -i staging down --volumes --yes   remove staging and its data
    """
    instance = ctx.instance()
    if volumes and not yes:
        raise ConfigError(
            f"--volumes deletes every stored image, result and job of instance '{instance.name}'.",
            "Add --yes to confirm.",
        )
    if core.down(ctx.config, instance, remove_data=volumes):
        click.secho(f"instance '{instance.name}' is down{'; its data was deleted' if volumes else ''}.", fg="green")
    else:
        click.echo(f"instance '{instance.name}' was not set up; nothing to stop.")


@click.command("restart")
@click.argument("service", required=False)
@pass_context
def restart_command(ctx: Context, service: str | None) -> None:
    """Restart one service (or all) and wait until healthy; the first fix for most problems.

    \b
    Examples:
      isletops restart shepherd
      isletops restart                restart every service
    """
    instance = ctx.instance()
    chosen = core.validate_services([service] if service else None) or list(COMPONENTS)
    engine = engine_for(ctx.config, instance)
    with progress_reporter(f"restarting {service or 'every service'}", ctx.verbose):
        states = engine.restart(chosen, HealthPolicy(timeout_s=float(instance.health_timeout_s)))
    print_states(states)


@click.command("logs")
@click.argument("service", required=False)
@click.option("--tail", "-n", default=100, show_default=True, type=click.IntRange(min=0), help="Lines per service.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@pass_context
def logs_command(ctx: Context, service: str | None, tail: int, follow: bool) -> None:
    """Show the last log lines of one service or all.

    \b
    Examples:
      isletops logs shepherd --tail 200
      isletops logs -f backend
    """
    chosen = core.validate_services([service] if service else None)
    text = engine_for(ctx.config, ctx.instance()).show_logs(chosen or list(COMPONENTS), tail, follow)
    if text:
        click.echo(text, nl=not text.endswith("\n"))


def _status(ctx: Context, as_json: bool) -> None:
    instance = ctx.instance()
    engine = engine_for(ctx.config, instance)
    states = engine.service_states(COMPONENTS)
    not_ready = _not_ready(states)
    deployment = None
    try:
        deployment = deploy.deployment_status(instance, engine)  # the release read from the containers
        deploy_lines, deploy_doc = deployment.lines(), deployment.as_dict()
    except IsletOpsError as exc:  # a broken history file must not hide what runs
        deploy_lines, deploy_doc = [f"deploy history unreadable: {exc}"], {"error": str(exc)}
    release = deployment.release if deployment else ""
    mixed = bool(deployment and deployment.mixed)
    if as_json:
        document = {
            "instance": instance.name,
            "project": instance.project_name,
            "tag": release or None,
            "mixed": mixed,
            "healthy": not not_ready and not mixed,
            "containers": [state.as_dict() for state in states],
            "deployment": deploy_doc,
        }
        click.echo(json.dumps(document, indent=2))
    else:
        shown = "MIXED (see below)" if mixed else release or "(none running)"
        click.echo(f"instance '{instance.name}', release {shown}")
        print_states(states)
        for line in deploy_lines:
            click.echo(f"  {line}")
    if not_ready or mixed:
        raise SystemExit(int(ExitStatus.CRITICAL))


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def status_command(ctx: Context, as_json: bool) -> None:
    """What runs, which release, is it healthy (exit 0 healthy, 2 otherwise).

    \b
    Examples:
      isletops status
      isletops -i staging status --json | jq .healthy
    """
    _status(ctx, as_json)


@click.command("ps")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def ps_command(ctx: Context, as_json: bool) -> None:
    """List the instance's containers with state and health (same as status).

    \b
    Example:
      isletops ps
    """
    _status(ctx, as_json)


@click.command("demo")
@click.option("--timeout", "timeout_s", default=300, show_default=True, type=click.IntRange(min=10),
              metavar="SECONDS", help="How long to wait for the demo job's result.")
@pass_context
def demo_command(ctx: Context, timeout_s: int) -> None:
    """Build everything, start the demo instance and push one synthetic image through it.

    \b
    Example:
      isletops demo                   safe to re-run: unchanged images keep their release tag
    """
    from isletops import demo

    instance = ctx.config.instance(ctx.instance_name or "demo")
    with progress_reporter("demo", ctx.verbose) as report:
        result = demo.run_demo(ctx.config, instance, progress=report.step, output=report.output,
                               result_timeout_s=timeout_s)
    click.secho(f"demo job {result.job_id} on release {result.tag}: done in {result.job_seconds:.0f} s", fg="green")
    click.echo(f"  islets found:   {result.islet_count} (the synthetic image has {result.expected_count})")
    click.echo(f"  IEQ (Ricordi):  {result.ieq_ricordi:.2f} (expected {result.expected_ieq_ricordi:.2f})")
    click.echo(f"  IEQ (sphere):   {result.ieq_sphere:.2f}")
    click.echo(f"  overlay:        {result.overlay_path} ({result.overlay_url})")
    click.echo(f"  frontend:       {instance.frontend_url}")
    click.echo(f"  sign in as:     {result.admin} (password in {result.password_file}, mode 0600)")


def register(main: click.Group) -> None:
    for command in (build_command, up_command, down_command, restart_command, logs_command, ps_command,
                    status_command, demo_command):
        main.add_command(command)
