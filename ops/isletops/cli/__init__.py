"""The `isletops` command line: click commands only — parse, call the core, print.

Commands are grouped by area in sibling modules (stack, deploy, monitor, provision, training)
so each area's commands sit next to each other; this module holds the root group, the shared
options and the one place where `IsletOpsError` becomes a plain sentence and an exit code.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import traceback
from pathlib import Path

import click

from isletops import __version__
from isletops.config import SiteConfig, load_config
from isletops.errors import ExitStatus, IsletOpsError

DEBUG_LOG = Path(tempfile.gettempdir()) / "isletops-debug.log"


class Context:
    """What every command gets: the loaded site config and the chosen instance name."""

    def __init__(self, config_path: str | None, instance: str | None, verbose: bool) -> None:
        self.config_path = config_path
        self.instance_name = instance
        self.verbose = verbose
        self._config: SiteConfig | None = None

    @property
    def config(self) -> SiteConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def instance(self):  # -> InstanceConfig
        return self.config.instance(self.instance_name)


pass_context = click.make_pass_decorator(Context)


class IsletOpsGroup(click.Group):
    """Root group that turns expected errors into one line and an exit code."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except IsletOpsError as error:
            click.secho(f"isletops: error: {error}", fg="red", err=True)
            raise SystemExit(int(error.exit_status)) from None
        except KeyboardInterrupt:
            click.secho("isletops: interrupted; clean-ups ran, see 'isletops status'.", fg="yellow", err=True)
            raise SystemExit(int(ExitStatus.INTERRUPTED)) from None
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception:  # an unexpected bug: traceback to the debug log, not the screen
            DEBUG_LOG.write_text(traceback.format_exc())
            verbose = ctx.obj.verbose if isinstance(ctx.obj, Context) else False
            if verbose:
                traceback.print_exc()
            click.secho(
                f"isletops: internal error (a bug); the traceback is in {DEBUG_LOG}. Re-run with -v to see it.",
                fg="red",
                err=True,
            )
            raise SystemExit(int(ExitStatus.CRITICAL)) from None


@click.group(cls=IsletOpsGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", envvar="ISLETOPS_CONFIG", metavar="PATH",
              help="Site config (YAML). Default: $ISLETOPS_CONFIG or ./isletops.yml.")
@click.option("--instance", "-i", envvar="ISLETOPS_INSTANCE", metavar="NAME",
              help="Instance to act on (its folder is the compose project). Default: the config's default_instance.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracebacks and debug logging.")
@click.version_option(__version__, prog_name="isletops")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, instance: str | None, verbose: bool) -> None:
    """Build, release, deploy, watch and repair IsletNet on a GPU server.

    \b
    Everyday use:
      isletops up                        start the stack of the default instance
      isletops deploy --tag 2026-11-23_02 health-gated deploy of a release
      isletops rollback                  back to the previous good release
      isletops status                    what runs, which tag, is it healthy
      isletops probe                     one monitoring pass (exit 0/1/2/3 like Nagios)
      isletops restart shepherd          most problems are solved by a restart

    Exit codes: 0 ok, 1 warning, 2 critical/failed, 3 unknown, 130 interrupted.
    Runbook for alerts: docs/runbook.md.
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    ctx.obj = Context(config_path, instance, verbose)


def render_group(main_group: click.Group) -> click.Group:
    """The `isletops render` group, shared by the areas that render files (made by the first asking)."""
    existing = main_group.commands.get("render")
    if isinstance(existing, click.Group):
        return existing
    group = click.Group("render", help="Show the files isletops writes, rendered from the templates and settings.")
    main_group.add_command(group)
    return group


def _register_commands() -> None:
    """Every area module registers its commands (they all ship together: an import error is a bug)."""
    from isletops.cli import accounts, deploy, doctor, monitor, provision, stack, swarm, training

    for module in (stack, deploy, monitor, provision, training, doctor, swarm, accounts):
        module.register(main)


_register_commands()


def run() -> None:  # pragma: no cover - console entry point alias
    sys.exit(main())
