"""`isletops training export`: parse, call `isletops.training`, print."""

from __future__ import annotations

from pathlib import Path

import click

from isletops import training as core
from isletops.cli import Context, pass_context


@click.group("training")
def training_group() -> None:
    """Images users marked "for training": kept forever, exported once for the next training run.

    \b
    Example:
      isletops training export --output training.zip
    """


@training_group.command("export")
@click.option("--all", "include_exported", is_flag=True,
              help="Export every training image again, including those exported before.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Where to save the ZIP (default: ./isletnet-training-<UTC time>.zip). Must not exist yet.")
@click.option("--url", metavar="URL", help="Backend base URL (default: the instance's API address).")
@click.option("--timeout", default=600.0, show_default=True, metavar="SECONDS",
              help="How long to wait for the backend to build the archive.")
@pass_context
def export_command(ctx: Context, include_exported: bool, output: Path | None, url: str | None,
                   timeout: float) -> None:
    """Download the training images not exported yet as one ZIP; the backend records the export.

    The ZIP holds, per job, the original images (inputs/), the request and the results, and a
    manifest.json listing every job. Images stay on the server (training images are never pruned).
    It needs an admin's API token in $ISLETOPS_API_TOKEN (`isletops tokens create`).

    \b
    Examples:
      isletops training export                         new training images since the last export
      isletops training export --output /data/t.zip    save them to a chosen file
      isletops -i staging training export --all        every training image again
    """
    api_url = url or ctx.instance().api_url
    result = core.export_training(api_url, output, include_exported=include_exported, timeout_s=timeout)
    if result.path is None:
        hint = "" if include_exported else " (use --all to export every training image again)"
        click.echo(f"No training images are waiting for export{hint}.")
        return
    click.echo(f"Exported {result.images} training image(s) of {result.jobs} job(s) to {result.path} "
               f"({result.size_bytes / 1e6:.1f} MB); the backend recorded the export.")


def register(main: click.Group) -> None:
    main.add_command(training_group)
