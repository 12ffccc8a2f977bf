"""Docker Swarm commands: `isletops render stack`, `isletops scale`, `isletops autoscale`. Parse,
call isletops.swarm_stack / the swarm engine / isletops.autoscale, print."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import click
import requests

from isletops.autoscale import Load, ScalePolicy, decide
from isletops.cli import Context, pass_context, render_group
from isletops.config import InstanceConfig, read_env_file
from isletops.engines import HealthPolicy, engine_for
from isletops.engines.swarm import SwarmEngine
from isletops.errors import ConfigError
from isletops.release import COMPONENTS
from isletops.swarm_stack import stack_for_instance

log = logging.getLogger("isletops.autoscale")
PROBE_TOKEN_ENV = "ISLETNET_PROBE_TOKEN"  # noqa: S105 - the variable's name (the probe account's token)


def _swarm_engine(ctx: Context) -> SwarmEngine:
    instance = ctx.instance()
    engine = engine_for(ctx.config, instance)
    if not isinstance(engine, SwarmEngine):
        raise ConfigError(f"Instance '{instance.name}' runs on engine {engine.name}; scaling is for engine swarm.",
                          "Set 'engine: swarm' for the instance (see README, Several hosts).")
    return engine


def _queue_load(instance: InstanceConfig) -> tuple[int, int]:
    """(queued, running) from the backend's /api/queue through the public edge, as the instance's
    probe account (scope queue:read; every API route but /api/health needs credentials)."""
    url = instance.api_url
    token = read_env_file(instance.env_file).get(PROBE_TOKEN_ENV, "")
    try:
        response = requests.get(f"{url}/api/queue", timeout=10,
                                headers={"Authorization": f"Bearer {token}"} if token else {})
        response.raise_for_status()
        body = response.json()
        return int(body["queued"]), int(body["running"])
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise ConfigError(f"Cannot read the queue at {url}/api/queue: {exc}.") from None


def register(main: click.Group) -> None:
    render = render_group(main)

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

    @main.command("scale")
    @click.argument("service", type=click.Choice(COMPONENTS))
    @click.argument("replicas", type=click.IntRange(min=0))
    @pass_context
    def scale(ctx: Context, service: str, replicas: int) -> None:
        """Run REPLICAS tasks of SERVICE (engine swarm) and wait until they run.

        \b
        Example:
          isletops -i prod scale shepherd 3
        """
        engine = _swarm_engine(ctx)
        before = engine.replicas(service)
        engine.scale(service, replicas, HealthPolicy(timeout_s=ctx.instance().health_timeout_s))
        click.echo(f"{service}: {before} -> {replicas} replicas, all running")

    @main.command("autoscale")
    @click.option("--target-per-worker", type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
                  help="Jobs (queued + running) one shepherd task should carry.")
    @click.option("--min", "min_replicas", type=click.IntRange(min=0), default=1, show_default=True)
    @click.option("--max", "max_replicas", type=click.IntRange(min=0), default=4, show_default=True)
    @click.option("--activation", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="Below this many jobs: min replicas.")
    @click.option("--cooldown", "cooldown_s", type=click.FloatRange(min=0), default=300.0, show_default=True,
                  help="Seconds the load must want fewer replicas before scaling down.")
    @click.option("--hysteresis", type=click.FloatRange(min=0, max=1, max_open=True), default=0.2, show_default=True)
    @click.option("--interval", "interval_s", type=click.FloatRange(min=1), default=30.0, show_default=True)
    @click.option("--once", is_flag=True, help="One decision, then exit.")
    @pass_context
    def autoscale(ctx: Context, target_per_worker: float, min_replicas: int, max_replicas: int, activation: float,
                  cooldown_s: float, hysteresis: float, interval_s: float, once: bool) -> None:
        """Scale the shepherd to the queue (KEDA's postgresql rule), within the GPU nodes' capacity.

        replicas = clamp(ceil((queued + running) / target), min, max); down only after the
        cooldown and outside the hysteresis band. Each decision is printed with its time (UTC)
        and its numbers.
        """
        policy = ScalePolicy(target_per_worker, min_replicas, max_replicas, activation, cooldown_s,
                             hysteresis).validate()
        engine = _swarm_engine(ctx)
        instance = ctx.instance()
        below_since: float | None = None
        while True:
            queued, running = _queue_load(instance)
            load = Load(queued=queued, running=running, current=engine.replicas("shepherd"),
                        capacity=engine.gpu_capacity(), now=time.monotonic(), below_since=below_since)
            decision = decide(policy, load)
            below_since = decision.below_since
            log.info(decision.describe())
            click.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {decision.describe()}")
            if decision.changes:
                engine.scale("shepherd", decision.replicas, HealthPolicy(timeout_s=instance.health_timeout_s))
            if once:
                return
            time.sleep(interval_s)

    @main.group("node")
    def node() -> None:
        """Swarm nodes (engine swarm)."""

    @node.command("drain")
    @click.argument("name")
    @pass_context
    def node_drain(ctx: Context, name: str) -> None:
        """Drain node NAME and wait until its tasks run elsewhere.

        \b
        Example:
          isletops -i prod node drain node-2
        """
        engine = _swarm_engine(ctx)
        moved = engine.drain_node(name, HealthPolicy(timeout_s=ctx.instance().health_timeout_s))
        click.echo(f"{name}: drained; {', '.join(moved) or 'no task'} now running elsewhere")
