"""`isletops doctor`: parse, call `monitors.doctor`, print the ranked findings, apply safe fixes."""

from __future__ import annotations

import json

import click

from isletops.cli import Context, pass_context
from isletops.errors import ConfigError
from monitors import doctor


def _config_finding(ctx: Context, error: ConfigError) -> doctor.Finding:
    where = ctx.config_path or "isletops.yml / $ISLETOPS_CONFIG"
    return doctor.Finding(
        doctor.Severity.CRITICAL, "config", "the site config cannot be read", [str(error)],
        f"$EDITOR {where}                  # fix the line named above\nisletops --config {where} status",
        "the-site-config-is-broken",
    )  # fmt: skip


def _print(findings: list[doctor.Finding], instance: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doctor.to_json(findings, instance), indent=2, default=str))
        return
    colours = {doctor.Severity.CRITICAL: "red", doctor.Severity.WARNING: "yellow", doctor.Severity.INFO: None}
    for line in doctor.format_text(findings, instance).splitlines():
        severity = next((s for s in doctor.Severity if f". {s.name} [" in line[:16]), None)
        click.secho(line, fg=colours[severity] if severity is not None else None, bold=severity is not None)


@click.command("doctor")
@click.option("--instance", "-i", "instance_name", metavar="NAME", help="Instance to examine (as the global -i).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@click.option("--fix", "fix", is_flag=True, help="Apply the safe fixes (restart a service, remove dangling "
              "images, rotate an oversized log), asking before each one.")  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="With --fix: do not ask.")
@click.option("--area", "areas", multiple=True, type=click.Choice(doctor.AREAS), help="Only these areas (repeatable).")
@click.option("--database-url", default="", metavar="URL", envvar="ISLETOPS_DOCTOR_DATABASE_URL",
              help="Job database to read (read-only). Default: the instance's queue container.")  # fmt: skip
@pass_context
def doctor_command(
    ctx: Context, instance_name: str | None, as_json: bool, fix: bool, yes: bool, areas: tuple[str, ...],
    database_url: str,
) -> None:  # fmt: skip
    """Diagnose the instance: ranked findings, each with evidence, the fix command and the runbook
    section. Exit 0 healthy, 1 warnings, 2 critical.

    \b
    Examples:
      isletops doctor                   what is wrong, and how to fix it
      isletops -i prod doctor --json    the same for scripts
      isletops doctor --fix             apply the safe fixes, asking before each
      isletops doctor --fix --yes       ... without asking (audited in state/audit.log)
    """
    if yes and not fix:
        raise click.UsageError("--yes only makes sense with --fix.")
    name = instance_name or ctx.instance_name
    try:
        config = ctx.config
        instance = config.instance(name)
    except ConfigError as error:
        findings = [_config_finding(ctx, error)]
        _print(findings, name or "?", as_json)
        raise SystemExit(doctor.exit_code(findings)) from None
    context = doctor.DoctorContext(config, instance, database_url=database_url)
    findings = doctor.diagnose(context, areas or doctor.AREAS)
    _print(findings, instance.name, as_json)
    if fix:
        fixable = [f for f in findings if f.fix]
        if not fixable and not as_json:
            click.echo("\nNo safe fix to apply; the commands above are for a person.")

        def confirm(finding: doctor.Finding) -> bool:
            assert finding.fix is not None  # noqa: S101 - only fixable findings are offered
            return yes or click.confirm(f"\n{finding.fix.description}?", default=False, err=as_json)

        for applied in doctor.apply_fixes(context, fixable, confirm):
            word = "done" if applied.done else "FAILED"
            click.echo(f"{word}: {applied.finding.fix.description if applied.finding.fix else ''}: "
                       f"{applied.outcome}", err=as_json)  # fmt: skip
    raise SystemExit(doctor.exit_code(findings))


def register(main: click.Group) -> None:
    main.add_command(doctor_command)
