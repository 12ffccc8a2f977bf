"""`isletops release|releases|deploy|rollback|history|lock|prune`: parse, call the core, print.

This is the edge where the instance's engine is picked (`engine_for`) and where what a deploy
gets from outside `isletops` is injected: the registry credentials, the end-to-end gate and the
alert-silence hooks of `monitors`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from isletops import deploy as core
from isletops import hold, image_prune
from isletops.cli import Context, pass_context
from isletops.docker_engine import DockerEngine
from isletops.engines import Engine, engine_for
from isletops.errors import ConfigError, ExitStatus
from isletops.history import History, deployed_tags, failed_tags, last_attempt_notice
from isletops.registry import RegistryClient, RegistryCredentials, credentials_for_registry, credentials_from_env
from isletops.release import list_releases, plan_release, release
from monitors import deploy_hooks
from monitors.probes.e2e import probe_token, run_synthetic_job


def _registry_name(ctx: Context, option: str | None) -> str:
    registry = option or ctx.config.registry
    if not registry:
        raise ConfigError(
            "No registry is configured.", "Set 'registry:' in the site config or pass --registry HOST:PORT."
        )
    return registry


def _registry(ctx: Context, option: str | None) -> tuple[str, RegistryCredentials | None]:
    """The registry to use and the site's credentials for it (None when it is another host)."""
    registry = _registry_name(ctx, option)
    site_credentials = credentials_from_env(ctx.config.registry_username)
    credentials = credentials_for_registry(ctx.config.registry or registry, registry, site_credentials)
    if site_credentials is not None and credentials is None:
        _say(f"not sending the registry credentials to {registry}: they are for {ctx.config.registry}")
    return registry, credentials


def _engine(ctx: Context, registry: str, credentials: RegistryCredentials | None) -> Engine:
    """The instance's engine (picked once, here), logging in to `registry` with `credentials`."""
    return engine_for(ctx.config, ctx.instance(), {registry: credentials} if credentials else None)


def _say(line: str) -> None:
    click.echo(f"  {line}", err=True)


def _print_notes(notes: list[str]) -> None:
    for note in notes:
        click.secho(f"isletops: note: {note}", fg="yellow", err=True)


def _e2e_gate(token: str) -> Callable[[str, float], str]:
    """The deploy's end-to-end gate: the monitor's synthetic job (one implementation), sent with the
    instance's probe token (from its env file)."""

    def gate(base_url: str, timeout_s: float) -> str:
        return str(run_synthetic_job(base_url, timeout_s, token))

    return gate


def _options(
    ctx: Context, command: str, tag: str, registry: str | None, dry_run: bool, force: bool, lock_wait: float,
    no_e2e: bool, health_timeout: float | None, failed_checks: int | None, min_free_mb: float, message: str,
) -> core.DeployOptions:
    """Deploy options from the command line, plus what the CLI injects: the credentials, the e2e
    gate, the alert-silence hooks and the site's retain policy."""
    name, credentials = _registry(ctx, registry)
    hooks = core.Hooks()
    deploy_hooks.register(hooks.add)
    return core.DeployOptions(
        tag=tag, registry=name, command=command, force=force, dry_run=dry_run, lock_wait_s=lock_wait,
        min_free_bytes=int(min_free_mb * 2**20), health_timeout_s=health_timeout, failed_checks=failed_checks,
        credentials=credentials, gate=None if no_e2e else _e2e_gate(probe_token(ctx.instance())), hooks=hooks,
        retain_releases=ctx.config.retain_releases, message=message,
    )


def _run_deploy(ctx: Context, options: core.DeployOptions, to: str | None = None) -> None:
    instance = ctx.instance()
    engine = _engine(ctx, options.registry, options.credentials)
    try:
        if options.command == "rollback":
            result = core.rollback(instance, engine, to, options, progress=_say)
        else:
            result = core.deploy(instance, engine, options, progress=_say)
    except core.DeployFailed as failure:
        if failure.details:
            click.echo(failure.details, err=True)
        raise
    _print_notes(result.notes)
    if options.dry_run:
        for line in result.plan.lines():
            click.echo(line)
        if result.plan.missing:
            raise core.DeployFailed(
                f"Release {result.plan.to_tag} lacks {len(result.plan.missing)} image(s) in {result.plan.registry}.",
                "A real deploy would stop before changing anything.",
            )
        return
    click.secho(
        f"{options.command} of {result.plan.to_tag} to instance '{instance.name}': ok in {result.duration_s:.0f} s "
        f"(was {result.plan.from_tag or 'nothing'}).",
        fg="green",
    )


_deploy_options = [
    click.option("--registry", metavar="HOST[:PORT][/PREFIX]", help="Registry to pull from. Default: config."),
    click.option("--dry-run", is_flag=True, help="Print the plan (and check the images exist); change nothing."),
    click.option("--force", is_flag=True, help="Break a STALE lock (its process is gone) and go on."),
    click.option("--lock-wait", type=click.FloatRange(min=0), default=0, metavar="S",
                 help="When another deploy holds the lock, wait up to S seconds for it instead of refusing."),
    click.option("--no-e2e", is_flag=True, help="Skip the end-to-end job gate (healthchecks still gate)."),
    click.option("--health-timeout", type=float, metavar="S", help="Seconds per service to become healthy."),
    click.option("--failed-checks", type=click.IntRange(min=1), metavar="N",
                 help="Consecutive failed health checks (after the start period) that fail a service at once. "
                      f"Default: the instance's health_failed_checks ({core.DEFAULT_FAILED_CHECKS})."),
    click.option("--min-free-mb", type=float, default=core.DEFAULT_MIN_FREE_BYTES / 2**20, show_default=True,
                 help="MiB that must stay free on Docker's data root and the instance folder after the pull."),
    click.option("-m", "--message", default="", help="Why: kept in the lock details and the history."),
]


def _with_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_deploy_options):
        func = option(func)
    return func


def register(main: click.Group) -> None:
    main.add_command(release_command)
    main.add_command(releases_command)
    main.add_command(deploy_command)
    main.add_command(rollback_command)
    main.add_command(history_command)
    main.add_command(lock_group)
    main.add_command(prune_group)


@click.command("release")
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]", help="Registry to push to. Default: config 'registry'.")
@click.option("--build-tag", default="latest", show_default=True, help="Tag of the local images 'isletops build' made.")
@click.option("--dry-run", is_flag=True, help="Show the next tag and what would be pushed; push nothing.")
@pass_context
def release_command(ctx: Context, registry: str | None, build_tag: str, dry_run: bool) -> None:
    """Tag every component's local image with the next YYYY-MM-DD_NN tag and push it.

    The number continues from the tags already in the registry, so a second release the same
    day gets _02. Prints the new tag on stdout (for scripts).

    \b
    Example:
      TAG=$(isletops release --registry 127.0.0.1:5000) && isletops deploy --tag "$TAG"
    """
    name, credentials = _registry(ctx, registry)
    client = RegistryClient(name, credentials=credentials)
    if dry_run:
        plan = plan_release(client, build_tag)
        for source, target in plan.pushes.values():
            click.echo(f"would push {source} as {target}", err=True)
        click.echo(plan.tag)
        return
    plan = release(client, _engine(ctx, name, credentials), build_tag, progress=_say)
    click.echo(plan.tag)


@click.command("releases")
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]", help="Registry to list. Default: config 'registry'.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def releases_command(ctx: Context, registry: str | None, as_json: bool) -> None:
    """List release tags in the registry, newest first, marking the deployed, previous and failed ones.

    \b
    Example:
      isletops releases            # '*' deployed, '-' previous (where 'rollback' goes), '!' failed
    """
    instance = ctx.instance()
    deployed, notes = core.current_deployment(instance)
    failed = failed_tags(History(instance.state_dir, instance.name).read().entries)
    name, credentials = _registry(ctx, registry)
    rows = list_releases(RegistryClient(name, credentials=credentials), deployed.current, deployed.previous, failed)
    if as_json:
        click.echo(json.dumps([row.__dict__ for row in rows], indent=2))
        return
    _print_notes(notes)
    if not rows:
        click.echo("No releases in the registry yet; make one with 'isletops release'.")
    for row in rows:
        mark = "*" if row.deployed else "-" if row.previous else "!" if row.failed else " "
        remarks = []
        if row.deployed:
            remarks.append("deployed")
        if row.previous:
            remarks.append("previous")
        if row.failed:
            remarks.append("FAILED: its last deploy failed or was rolled back")
        if not row.complete:
            remarks.append("INCOMPLETE: some component images are missing")
        click.echo(f"{mark} {row.tag}" + (f"   {', '.join(remarks)}" if remarks else ""))


@click.command("deploy")
@click.option("--tag", "-t", required=True, metavar="TAG", help="Release tag YYYY-MM-DD_NN.")
@_with_options
@pass_context
def deploy_command(ctx: Context, tag: str, registry: str | None, dry_run: bool, force: bool, lock_wait: float,
                   no_e2e: bool, health_timeout: float | None, failed_checks: int | None, min_free_mb: float,
                   message: str) -> None:
    """Deploy release TAG, health-gated; roll back by itself when it is not healthy.

    Verifies every image first (nothing changes when one is missing), pulls, renders compose for
    TAG, rolls services over in dependency order, waits for every healthcheck, runs one
    end-to-end job, and records the attempt in 'isletops history'.

    \b
    Examples:
      isletops deploy --tag 2026-11-23_02 --dry-run
      isletops -i staging deploy --tag 2026-11-23_02 -m "new model"
      isletops deploy --tag 2026-11-23_02 --lock-wait 600   # queue behind a running deploy
    """
    options = _options(ctx, "deploy", tag, registry, dry_run, force, lock_wait, no_e2e, health_timeout,
                       failed_checks, min_free_mb, message)
    _run_deploy(ctx, options)


@click.command("rollback")
@click.option("--to", "to", metavar="TAG", help="Tag to go back to. Default: the previous good release.")
@_with_options
@pass_context
def rollback_command(ctx: Context, to: str | None, registry: str | None, dry_run: bool, force: bool,
                     lock_wait: float, no_e2e: bool, health_timeout: float | None, failed_checks: int | None,
                     min_free_mb: float, message: str) -> None:
    """Go back to the previous good release (or --to TAG), with the same health gate as deploy.

    \b
    Examples:
      isletops rollback
      isletops rollback --to 2026-11-20_01 -m "IEQ regression"
    """
    options = _options(ctx, "rollback", "", registry, dry_run, force, lock_wait, no_e2e, health_timeout,
                       failed_checks, min_free_mb, message)
    _run_deploy(ctx, options, to)


@click.command("history")
@click.option("--json", "as_json", is_flag=True, help="JSON lines, as stored.")
@click.option("-n", "count", type=int, default=20, show_default=True, help="How many of the newest entries.")
@pass_context
def history_command(ctx: Context, as_json: bool, count: int) -> None:
    """Show deploy and rollback attempts of the instance, newest last.

    \b
    Example:
      isletops history -n 5
    """
    instance = ctx.instance()
    history = History(instance.state_dir, instance.name)
    read = history.read()
    if read.problems:
        click.secho(f"isletops: warning: {read.problem_summary(history.path)}", fg="yellow", err=True)
        for problem in read.problems[:10]:
            click.echo(f"  {problem}", err=True)
    entries = read.entries[-count:] if count > 0 else read.entries
    if as_json:
        for entry in entries:
            click.echo(entry.to_json())
    else:
        if not entries:
            click.echo(f"No deploys recorded for instance '{instance.name}' yet.")
        for entry in entries:
            colour = {"ok": "green", "interrupted": "yellow"}.get(entry.result, "red")
            line = (
                f"{entry.time}  {entry.user:<10} {entry.command:<8} {entry.from_tag or '-':>13} -> {entry.to_tag:<13} "
                f"{click.style(entry.result, fg=colour):<11} {entry.duration_s:6.0f} s"
            )
            click.echo(line + (f"  {entry.message}" if entry.message else ""))
        deployed = deployed_tags(read.entries)
        if deployed.current:
            click.echo(f"deployed: {deployed.current}; previous: {deployed.previous or 'none'}")
        notice = last_attempt_notice(read.entries)
        if notice:
            click.secho(f"note: {notice}", fg="yellow")
    if read.problems:
        ctx_exit = click.get_current_context()
        ctx_exit.exit(int(ExitStatus.WARNING))


@click.group("lock")
def lock_group() -> None:
    """Show, take or release the instance's deploy lock.

    \b
    Examples:
      isletops lock status
      isletops lock acquire -m "database maintenance until 14:00"
      isletops lock release
    """


@lock_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_context
def lock_status(ctx: Context, as_json: bool) -> None:
    """Say whether the instance is locked, by whom, since when; exit 1 when locked.

    On Swarm and Kubernetes it also names the holder of the cluster-wide lock (a deploy or a hold
    from any manager or admin host).

    \b
    Example:
      isletops lock status
    """
    instance = ctx.instance()
    found = hold.holders(instance, engine_for(ctx.config, instance))
    local = found.local
    if as_json:
        payload = {"held": local.held, "stale": local.stale, "problem": local.problem,
                   "details": local.details.__dict__ if local.details else None, "cluster": found.cluster or None}
        click.echo(json.dumps(payload, indent=2))
    elif not found.held:
        click.echo(f"Instance '{instance.name}' is not locked.")
    else:
        if local.held:
            who = local.details.describe() if local.details else local.problem
            state = "STALE lock (its process is gone; --force breaks it)" if local.stale else "locked"
            click.echo(f"Instance '{instance.name}': {state}: {who}")
        if found.cluster:
            click.echo(f"Instance '{instance.name}': cluster-wide lock held: {found.cluster}")
    if found.held:
        click.get_current_context().exit(int(ExitStatus.WARNING))


@lock_group.command("acquire")
@click.option("-m", "--message", required=True, help="Why (shown to whoever is refused).")
@click.option("--lock-wait", type=click.FloatRange(min=0), default=0, metavar="S",
              help="When a deploy holds the lock, wait up to S seconds for it instead of refusing.")
@pass_context
def lock_acquire(ctx: Context, message: str, lock_wait: float) -> None:
    """Take the lock by hand (no deploy or rollback can start until 'isletops lock release').

    On Swarm and Kubernetes the hold is cluster-wide: a deploy from another manager or admin host
    is refused too. Release it on the host that took it.

    \b
    Examples:
      isletops lock acquire -m "investigating the shepherd"
      isletops lock acquire -m "maintenance" --lock-wait 900   # after the running deploy
    """
    instance = ctx.instance()
    engine = engine_for(ctx.config, instance)
    hold.take(instance, engine, message, wait_s=lock_wait, progress=_say)
    where = "" if engine.name == "compose" else f" (on every host of the {engine.name} cluster)"
    click.echo(f"Instance '{instance.name}' is locked{where}: {message}")


@lock_group.command("release")
@pass_context
def lock_release(ctx: Context) -> None:
    """Release the lock taken on this host, whoever took it (refused while a live deploy holds it).

    \b
    Example:
      isletops lock release
    """
    instance = ctx.instance()
    released = hold.release(instance, engine_for(ctx.config, instance))
    if not released:
        click.echo(f"Instance '{instance.name}' was not locked.")
    else:
        click.echo(f"Released the lock of '{instance.name}' ({'; '.join(released)}).")


@click.group("prune")
def prune_group() -> None:
    """Remove what old releases leave on this host.

    \b
    Example:
      isletops prune images --dry-run
    """


@prune_group.command("images")
@click.option("--keep", type=click.IntRange(min=1), metavar="N",
              help=f"Newest releases to keep. Default: 'retain_releases' from the config ({image_prune.DEFAULT_KEEP}).")
@click.option("--registry", metavar="HOST[:PORT][/PREFIX]", help="Whose release images. Default: config 'registry'.")
@click.option("--dry-run", is_flag=True, help="List what would be removed and what is kept, and why; remove nothing.")
@pass_context
def prune_images_command(ctx: Context, keep: int | None, registry: str | None, dry_run: bool) -> None:
    """Remove local images of releases older than the newest N.

    Never removes the deployed or previous tag of any instance, nor an image a container uses;
    only release tags of the registry's isletnet-* images are considered. Deploys do this by
    themselves afterwards (set retain_releases: 0 in the config to stop that).

    \b
    Examples:
      isletops prune images --dry-run
      isletops prune images --keep 3
    """
    keep = keep or ctx.config.retain_releases or image_prune.DEFAULT_KEEP
    result = image_prune.prune_images(ctx.config, _registry_name(ctx, registry), keep, DockerEngine(),
                                      dry_run=dry_run, progress=_say)
    if dry_run:
        for line in result.plan.lines():
            click.echo(line)
        click.echo(f"would remove {len(result.plan.remove)} image(s), keep {len(result.plan.keep)}.")
        return
    for ref, why in result.failed.items():
        click.secho(f"isletops: warning: could not remove {ref}: {why}", fg="yellow", err=True)
    click.echo(f"removed {len(result.removed)} image(s), kept {len(result.plan.keep)}.")
    if result.failed:
        click.get_current_context().exit(int(ExitStatus.WARNING))
