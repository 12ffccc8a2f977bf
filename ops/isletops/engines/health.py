"""The one health wait and the one health-output formatter, for every engine and command.

`wait_healthy` polls an engine's `ServiceState`s until every instance is ready, and fails fast:
at once when an instance exited, died or restarts (a fresh one that crashed), when the engine
itself judged it `unhealthy`, or when `failed_checks` consecutive health checks failed after the
instance's start period, or after the policy's `grace_s` when that is shorter (a container that
never serves is caught in seconds, not at Docker's `retries` or at the deadline). A service whose
old instance is still running beside the new one is judged by the instances named in `only`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import timedelta

from isletops.engines.base import HealthPolicy, ServiceState
from isletops.errors import IsletOpsError

BROKEN_STATES = frozenset({"exited", "dead", "restarting"})
OUTPUT_LIMIT = 200


class HealthFailed(IsletOpsError):
    """A service did not become healthy; `details` holds the failing instance's output and logs."""

    def __init__(self, service: str, message: str, details: str = "", instance_names: tuple[str, ...] = ()) -> None:
        super().__init__(message, f"See 'isletops logs {service}'.")
        self.service = service
        self.details = details
        self.instance_names = instance_names


def one_line(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """Text squeezed onto one line of at most `limit` characters."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def health_said(state: ServiceState) -> str:
    """The one formatter of health output: `backend (running, unhealthy): health check said '...'`."""
    text = state.describe()
    if state.last_health_output:
        text += f": health check said '{one_line(state.last_health_output)}'"
    return text


def failed_streak(state: ServiceState, grace_s: float | None = None) -> int:
    """Consecutive failed health checks at the end of the recorded ones, after the start period
    (or after `grace_s` from the start, when that is shorter)."""
    period = state.start_period_s if grace_s is None else min(state.start_period_s, grace_s)
    counted_from = state.started_at + timedelta(seconds=period) if state.started_at else None
    streak = 0
    for check in reversed(state.checks):
        if not check.failed:
            break
        if counted_from is not None and check.started_at is not None and check.started_at < counted_from:
            break
        streak += 1
    return streak


def broken_reason(state: ServiceState, failed_checks: int, grace_s: float | None = None) -> str:
    """Why `state` will not become ready by waiting ("" while it still may)."""
    if state.state in BROKEN_STATES:
        return state.state
    if state.restart_count > 0:
        return f"restarted {state.restart_count} time(s)"
    if state.health == "unhealthy":
        return "unhealthy"
    streak = failed_streak(state, grace_s)
    if state.health == "starting" and streak >= failed_checks:
        return f"{streak} health checks failed in a row"
    return ""


def wait_healthy(
    read: Callable[[], list[ServiceState]],
    services: Sequence[str],
    policy: HealthPolicy,
    only: Sequence[str] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[ServiceState]:
    """Wait until every instance of `services` (restricted to `only` names where given) is ready.

    `read` returns the engine's current states. Raises `HealthFailed` for the first service that
    is broken (see the module docstring) or still not ready at `policy.timeout_s`; its message
    names the state and what the health check said.
    """
    deadline = clock() + policy.timeout_s
    while True:
        states = [s for s in read() if s.service in services and (not only or s.name in only or s.state == "missing")]
        not_ready = [s for s in states if not s.is_ready]
        if not not_ready and states:
            return states
        broken = [(s, broken_reason(s, policy.failed_checks, policy.grace_s)) for s in not_ready]
        broken = [(s, why) for s, why in broken if why]
        if broken:
            state, why = broken[0]
            raise not_healthy(state, why, [s for s, _ in broken if s.service == state.service])
        if clock() >= deadline:
            first = not_ready[0] if not_ready else None
            if first is None:
                raise HealthFailed(services[0], f"{services[0]} has no instance to wait for.")
            raise not_healthy(first, f"not ready within {policy.timeout_s:.0f} s",
                              [s for s in not_ready if s.service == first.service])
        sleep(min(policy.poll_s, max(0.0, deadline - clock())))


def not_healthy(state: ServiceState, why: str, same_service: list[ServiceState]) -> HealthFailed:
    """The one failure sentence: `backend did not become healthy (3 health checks failed in a row): ...`."""
    shown = same_service or [state]
    message = f"{state.service} did not become healthy ({why}): {'; '.join(health_said(s) for s in shown)}"
    return HealthFailed(state.service, message, instance_names=tuple(s.name for s in shown if s.name))
