"""`isletops provision` (run the host playbooks) and `isletops render nginx|daemon-json` (show the
files provisioning writes). Parse, call isletops.provision / nginx / daemon_json, print."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import click
import yaml

from isletops.cli import Context, pass_context, render_group
from isletops.config import read_yaml_mapping
from isletops.daemon_json import DAEMON_JSON_PATH, merge_daemon_json_text, settings_from_variables
from isletops.errors import ConfigError, ExitStatus, ProvisionError
from isletops.kube.chart import DEFAULT_KUBE_VERSION, render_kubernetes
from isletops.nginx import render_site, site_from_variables
from isletops.provision import KNOWN_TAGS, ProvisionResult, run_provision
from isletops.stack import current_tag


def _key_values(pairs: tuple[str, ...], option: str) -> dict[str, object]:
    """`key=value` pairs; values are read as YAML so numbers and lists work (`size=24`)."""
    values: dict[str, object] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"{option} '{pair}' is not key=value.", f"Example: {option} nginx_server_name=islets.example.org"
            )
        try:
            values[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
    return values


def _vars_file(path: str | None) -> dict[str, object]:
    return read_yaml_mapping(Path(path), "Variables file") if path else {}


def _print_summary(result: ProvisionResult) -> None:
    mode = " (check mode: nothing was changed)" if result.check else ""
    click.echo(f"Provisioning {result.status}{mode}:")
    for host, summary in sorted(result.hosts.items()):
        colour = {"ok": "green", "changed": "yellow", "failed": "red", "unreachable": "red"}[summary.state]
        click.echo(
            "  " + click.style(f"{host:<24}", fg=colour)
            + f" ok={summary.ok} changed={summary.changed} failed={summary.failed}"
            f" unreachable={summary.unreachable} skipped={summary.skipped}"
            f" docker-restarts={summary.docker_restarts}"
        )
    for warning in result.warnings:
        click.secho(f"warning: {warning}", fg="yellow", err=True)
    click.echo(f"Run files (stdout, job_events/): {result.artifacts_dir}")


def register(main: click.Group) -> None:
    @main.command("provision")
    @click.option("--inventory", "-I", "inventory", required=True, metavar="PATH",
                  help="Inventory folder or file (e.g. inventory/local).")
    @click.option("--check", is_flag=True, help="Only report what would change (ansible --check).")
    @click.option("--diff", is_flag=True, help="Show the changes made to files (ansible --diff).")
    @click.option("--tags", "tags", default="", metavar="TAG[,TAG]",
                  help=f"Only these parts: {', '.join(KNOWN_TAGS)}.")
    @click.option("--limit", default=None, metavar="PATTERN", help="Only these hosts of the inventory.")
    @click.option("--extra-var", "-e", "extra", multiple=True, metavar="KEY=VALUE", help="Override a variable.")
    @click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                  help="Where run files are kept. Default: ~/.local/state/isletops/provision.")
    @pass_context
    def provision(ctx: Context, inventory: str, check: bool, diff: bool, tags: str, limit: str | None,
                  extra: tuple[str, ...], state_dir: Path | None) -> None:
        """Provision hosts: Docker daemon settings, instance folder, nginx + certificates, probe cron.

        \b
        Examples:
          isletops provision --inventory inventory/production --check --diff
          isletops provision --inventory inventory/production
          isletops provision --inventory inventory/production --tags nginx,certbot

        Exit 0: done; 1: done with warnings (e.g. certbot failed, the site kept its
        certificate); 2: a host failed or was unreachable (the error names it).
        """
        result = run_provision(
            inventory, check=check, diff=diff, tags=tags.split(",") if tags else (), limit=limit,
            extra_vars=_key_values(extra, "-e"), state_dir=state_dir, verbose=ctx.verbose,
        )
        _print_summary(result)
        if not result.succeeded:
            raise ProvisionError(result.error_sentence())
        if result.warnings:
            raise SystemExit(int(ExitStatus.WARNING))

    render = render_group(main)

    @render.command("nginx")
    @click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                  help="A site setting, named like the inventory variable (nginx_server_name=...).")
    @click.option("--vars", "vars_file", metavar="FILE", help="YAML file of nginx_* variables (e.g. group_vars).")
    @click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write here, not stdout.")
    @pass_context
    def render_nginx(ctx: Context, settings: tuple[str, ...], vars_file: str | None, output: Path | None) -> None:
        """Render the host nginx site (/etc/nginx/conf.d/isletnet.conf).

        Ports, upload limit and public name default from the instance in the site config.

        \b
        Examples:
          isletops render nginx
          isletops -i prod render nginx --set nginx_server_name=islets.example.org -o isletnet.conf
        """
        instance = ctx.instance()
        variables: dict[str, object] = {
            "nginx_frontend_upstream": urlparse(instance.frontend_url).netloc,
            # The backend's own port, or the frontend (which proxies /api/) when it is not published.
            "nginx_backend_upstream": urlparse(instance.api_url).netloc,
            "nginx_client_max_body_size": f"{instance.max_upload_mb}m",
            "nginx_proxy_timeout_s": instance.proxy_timeout_s,
        }
        if instance.public_url:
            variables["nginx_server_name"] = urlparse(instance.public_url).hostname or ""
        variables.update(_vars_file(vars_file))
        variables.update(_key_values(settings, "--set"))
        text = render_site(site_from_variables(variables))
        if output:
            output.write_text(text)
            click.echo(f"Wrote {output}")
        else:
            click.echo(text, nl=False)

    @render.command("daemon-json")
    @click.option("--current", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help=f"The daemon.json to merge into (default: {DAEMON_JSON_PATH} when it exists).")
    @click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                  help="docker_data_root, docker_address_pools, docker_log_max_size, docker_log_max_file, gpu.")
    @pass_context
    def render_daemon_json(ctx: Context, current: Path | None, settings: tuple[str, ...]) -> None:
        """Print daemon.json as provisioning would write it (merged, never overwritten).

        \b
        Examples:
          isletops render daemon-json
          isletops render daemon-json --current ./daemon.json --set gpu=true --set docker_data_root=/data/docker
        """
        path = current or Path(DAEMON_JSON_PATH)
        try:
            text = path.read_text() if path.exists() else None
        except OSError as exc:
            raise ConfigError(f"Cannot read {path}: {exc.strerror}.") from None
        if current and text is None:
            raise ConfigError(f"{path} does not exist.", "Leave out --current to start from an empty file.")
        result = merge_daemon_json_text(text, settings_from_variables(_key_values(settings, "--set")), str(path))
        click.echo(result.text, nl=False)
        state = f"changes {', '.join(result.changed_keys)}" if result.changed else "no change"
        click.secho(f"# {path}: {state}", err=True, fg="yellow" if result.changed else "green")

    @render.command("kubernetes")
    @click.option("--instance", "instance_name", metavar="NAME", help="Instance to render (default: -i).")
    @click.option("--tag", metavar="TAG", help="Release tag of every image (default: the instance's current tag).")
    @click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                  help="Folder for chart/ and manifests/.")
    @click.option("--kube-version", default=DEFAULT_KUBE_VERSION, show_default=True, metavar="X.Y",
                  help="Server version the plain manifests target (API versions, like Helm's .Capabilities).")
    @click.option("--values", "-f", "values_files", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="Values file merged over the defaults for the plain manifests (like helm -f).")
    @pass_context
    def render_kubernetes_command(ctx: Context, instance_name: str | None, tag: str | None, out_dir: Path,
                                  kube_version: str, values_files: tuple[Path, ...]) -> None:
        """Write a Helm chart (OUT/chart) and plain manifests for kubectl apply -k (OUT/manifests).

        \b
        Examples:
          isletops render kubernetes --instance prod --tag 2026-11-23_02 --out k8s/
          helm install isletnet k8s/chart -n isletnet-prod --create-namespace
          kubectl apply -k k8s/manifests
          helm upgrade prometheus-adapter prometheus-community/prometheus-adapter \\
            --reuse-values -f k8s/prometheus-adapter-values.yaml
        """
        instance = ctx.config.instance(instance_name or ctx.instance_name)
        tag = tag or current_tag(instance)
        if not tag:
            raise ConfigError(f"Instance '{instance.name}' has no release tag yet.", "Pass --tag.")
        result = render_kubernetes(instance, tag, out_dir, registry=ctx.config.registry,
                                   kube_version=kube_version, values_files=list(values_files))
        click.echo(f"Wrote the chart to {result.chart_dir} and {len(result.objects)} objects to {result.manifests_dir}")
        click.echo(f"and the prometheus-adapter rule for the worker HPA (without KEDA) to {result.adapter_values}")
