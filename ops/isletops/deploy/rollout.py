"""Executes a `ServicePlan` through an `Engine`: level by level, each service start-first or
recreated, each level healthy before the next starts. A service already running the target image
is left alone (so a rollback or restore touches only what differs). Every engine call that must
not be cut half-way runs in a critical section of the deploy's `InterruptController`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from isletops.deploy.interrupts import InterruptController
from isletops.engines.base import Engine, HealthPolicy, ServicePlan, ServiceStep, Strategy

Progress = Callable[[str], None]

# The edge's and the frontend's nginx cache the frontend's and backend's addresses for `resolver
# ... valid=` seconds (2 s); the old container must stay up at least that long after the new one
# is healthy, with margin for Docker's DNS to register the new container.
RESOLVER_TTL_S = float(os.environ.get("ISLETOPS_RESOLVER_TTL_S", "11"))
# A new container failing `failed_checks` health checks in a row counts as broken once this many
# seconds have passed since its start, even inside its compose `start_period` (60 s for the
# backend). Measured (bench/deploy_under_load.py, 2-core host, load 10-22): a good backend passes
# its first check 5-30 s after start; until then gunicorn's port is open while its workers boot,
# so its checks hang to their 20 s timeout and 3 failures after 20 s would take over 75 s. A
# backend that refuses connections fails checks at 20, 25 and 30 s and is caught at about 35 s.
HEALTH_GRACE_S = float(os.environ.get("ISLETOPS_HEALTH_GRACE_S", "20"))
# A new container that never became healthy is stopped with at most this many seconds to finish.
UNREADY_STOP_S = 5
# Time a stopping container gets to finish what it is doing (gunicorn requests, shepherd jobs).
DRAIN_TIMEOUT_S = int(os.environ.get("ISLETOPS_DRAIN_TIMEOUT_S", "60"))


@dataclass(frozen=True)
class RolloutSettings:
    health: HealthPolicy
    drain_s: int = DRAIN_TIMEOUT_S
    resolver_ttl_s: float = RESOLVER_TTL_S


def roll_over(
    engine: Engine,
    plan: ServicePlan,
    images: dict[str, str],
    settings: RolloutSettings,
    interrupts: InterruptController,
    say: Progress,
) -> list[str]:
    """Bring every service of `plan` to `images`; returns the services it changed."""
    changed: list[str] = []
    for level in plan.levels:
        steps = [plan.step(service) for service in level]
        kept = [step.service for step in steps if engine.runs_image(step.service, images[step.service])]
        if kept:
            say(f"{', '.join(kept)}: same image as running, kept running (no restart)")
        todo = [step for step in steps if step.service not in kept]
        if todo:
            roll_level(engine, todo, settings, interrupts, say)
            changed += [step.service for step in todo]
    return changed


def _running(engine: Engine, service: str) -> list[str]:
    return [s.name for s in engine.service_states([service]) if s.service == service and s.state == "running"]


def roll_level(
    engine: Engine, steps: Sequence[ServiceStep], settings: RolloutSettings, interrupts: InterruptController,
    say: Progress,
) -> None:
    """Roll one dependency level over; on any failure or interrupt after a side-by-side start, the
    new instances go and the old ones keep serving (Kamal keeps the old one)."""
    old = {step.service: _running(engine, step.service) for step in steps}
    beside = [step.service for step in steps if step.strategy is Strategy.START_FIRST and old[step.service]]
    in_place = [step.service for step in steps if step.service not in beside]
    if in_place:
        say(f"{', '.join(in_place)}: updating (stop with up to {settings.drain_s} s to drain)")
        with interrupts.critical():
            engine.replace(in_place, settings.drain_s)
    started: list[str] = []  # services that may have a new instance beside the old
    draining: set[str] = set()  # ... and those whose old instances are already going
    try:
        for service in beside:
            say(f"{service}: starting a new container beside {', '.join(old[service])}")
            started.append(service)
            with interrupts.critical():
                engine.start_beside(service)
        for step in steps:
            new = [n for n in _running_or_starting(engine, step.service) if n not in old[step.service]]
            engine.wait_healthy([step.service], settings.health, only=new if step.service in beside else ())
        if beside:
            time.sleep(settings.resolver_ttl_s)  # the proxies' resolvers learn the new addresses
        for service in beside:
            draining.add(service)
            for name in old[service]:
                say(f"{service}: draining and removing {name}")
                with interrupts.critical():
                    engine.drain(name)
                    engine.stop(name, settings.drain_s)
    except BaseException:
        with interrupts.critical(redeliver=False):
            remove_new(engine, {s: old[s] for s in started if s not in draining}, settings.drain_s, say)
        raise
    say(f"{', '.join(step.service for step in steps)}: healthy")


def _running_or_starting(engine: Engine, service: str) -> list[str]:
    return [s.name for s in engine.service_states([service]) if s.service == service and s.state != "missing"]


def remove_new(engine: Engine, old_by_service: dict[str, list[str]], drain_s: int, say: Progress) -> None:
    """Remove the instances of each service that are not among its old ones (one never ready gets
    `UNREADY_STOP_S` to stop, not the full drain). A removal that fails is reported and left to
    the restore (which converges to one instance per service)."""
    for service, old in old_by_service.items():
        try:
            new = [s for s in engine.service_states([service])
                   if s.service == service and s.state != "missing" and s.name not in old]
        except Exception as error:  # noqa: BLE001 - reported; the restore converges
            say(f"{service}: could not list its containers to remove the new one: {error}")
            continue
        for state in new:
            name = state.name
            say(f"{service}: removing the new container {name}; {', '.join(sorted(old))} stays")
            try:  # one that never became ready served nothing worth a long drain
                engine.stop(name, drain_s if state.is_ready else min(drain_s, UNREADY_STOP_S))
            except Exception as error:  # noqa: BLE001 - reported; the restore converges
                say(f"{service}: could not remove {name}: {error}")
