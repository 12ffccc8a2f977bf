"""Docker Swarm commands: `isletops render stack`. Parse, call isletops.swarm_stack, print."""

from __future__ import annotations

from pathlib import Path

import click

from isletops.cli import Context, pass_context
from isletops.swarm_stack import stack_for_instance


def register(main: click.Group) -> None:
    existing = main.commands.get("render")
    if isinstance(existing, click.Group):
        render = existing
    else:

        @main.group("render")
        def render() -> None:
            """Show the files isletops writes, rendered from the templates and settings."""

    @render.command("stack")
    @click.option("--tag", default=None, metavar="TAG", help="Release tag (default: the one in the instance's .env).")
    @click.option("--registry", default=None, metavar="HOST[:PORT]", help="Registry prefix (default: the .env's).")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout.")
    @pass_context
    def render_stack(ctx: Context, tag: str | None, registry: str | None, output: Path | None) -> None:
        """Print the Docker Swarm stack file (compose 3.8) of the instance.

        Rendered from the same templates as the compose files, every variable checked by
        isletops. Secrets appear by name only (external Swarm secrets).

        \b
        Examples:
          isletops -i prod render stack
          isletops -i prod render stack --tag 2026-11-23_01 -o stack.yml
        """
        rendered = stack_for_instance(ctx.instance(), tag=tag, registry=registry)
        if output:
            output.write_text(rendered.text())
            click.echo(f"Wrote {output}")
        else:
            click.echo(rendered.text(), nl=False)
