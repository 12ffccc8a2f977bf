"""The shepherd autoscaler's decision, pure: KEDA's postgresql-scaler rule with an activation
threshold, a cooldown before scaling down and hysteresis, capped by the GPU nodes' capacity.

    wanted = clamp(ceil((queued + running) / target_per_worker), min, max, capacity)

- Below `activation` jobs (queued + running) the scaler is inactive and wants `min_replicas`
  (KEDA's `activationTargetQueryValue`: under it, scale to zero/min).
- Scaling up happens at once; scaling down only after the load has wanted fewer replicas for
  `cooldown_s` without interruption (KEDA's `cooldownPeriod`), so a short lull does not stop
  workers that a next burst needs.
- Hysteresis: a scale-down only happens when the load would fit in the smaller count with
  `hysteresis` (a fraction) of headroom per worker, so a load hovering at a boundary does not
  flap between two counts.
- Never more than `capacity` (what the GPU nodes can hold: one task per GPU) nor `max_replicas`.

Every decision carries its numbers (`Decision.describe`) for the log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from isletops.errors import ConfigError


@dataclass(frozen=True)
class ScalePolicy:
    target_per_worker: float = 2.0  # jobs (queued + running) one shepherd task should carry
    min_replicas: int = 1
    max_replicas: int = 4
    activation: float = 1.0  # below this many jobs: inactive, min_replicas
    cooldown_s: float = 300.0  # how long the load must want fewer before scaling down
    hysteresis: float = 0.2  # headroom fraction a scale-down must leave per worker

    def validate(self) -> ScalePolicy:
        if self.target_per_worker <= 0:
            raise ConfigError(f"target_per_worker must be above 0, got {self.target_per_worker}.")
        if self.min_replicas < 0 or self.max_replicas < self.min_replicas:
            raise ConfigError(
                f"Replica bounds must satisfy 0 <= min <= max, got min {self.min_replicas}, max {self.max_replicas}.")
        if self.cooldown_s < 0 or not 0 <= self.hysteresis < 1 or self.activation < 0:
            raise ConfigError("cooldown_s and activation must be 0 or more, hysteresis between 0 and 1 (excluded).")
        return self


@dataclass(frozen=True)
class Load:
    queued: int
    running: int
    current: int  # replicas now
    capacity: int  # shepherd tasks the GPU nodes can hold
    now: float  # seconds (monotonic or epoch: only differences count)
    below_since: float | None = None  # when the load first wanted fewer replicas (carried between runs)


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    raw: int  # ceil((queued + running) / target) before clamps
    below_since: float | None  # to carry to the next decision
    load: Load

    @property
    def changes(self) -> bool:
        return self.replicas != self.load.current

    def describe(self) -> str:
        load = self.load
        return (f"shepherd replicas {load.current} -> {self.replicas}: {self.reason} "
                f"(queued {load.queued}, running {load.running}, raw {self.raw}, capacity {load.capacity})")


def decide(policy: ScalePolicy, load: Load) -> Decision:
    """The replicas the shepherd should run now, and why."""
    jobs = load.queued + load.running
    raw = math.ceil(jobs / policy.target_per_worker) if jobs else 0
    ceiling = min(policy.max_replicas, load.capacity)
    floor = min(policy.min_replicas, ceiling)
    if jobs < policy.activation:
        wanted, why = floor, f"inactive (under the activation of {policy.activation:g} jobs)"
    else:
        wanted = max(floor, min(raw, ceiling))
        why = f"ceil({jobs}/{policy.target_per_worker:g}) = {raw}"
        if raw > ceiling:
            why += f", capped at {ceiling} ({'GPU capacity' if load.capacity < policy.max_replicas else 'max'})"
    if wanted > load.current:
        return Decision(wanted, f"scale up, {why}", raw, None, load)
    if wanted == load.current:
        return Decision(wanted, f"steady, {why}", raw, None, load)
    if load.current > ceiling:  # capacity shrank (a GPU node is down): no waiting for a cooldown
        return Decision(ceiling, f"scale down to the capacity, {why}", raw, None, load)
    if jobs >= policy.activation and jobs > wanted * policy.target_per_worker * (1 - policy.hysteresis):
        return Decision(load.current, f"hold (within the {policy.hysteresis:.0%} hysteresis), {why}", raw, None, load)
    since = load.below_since if load.below_since is not None else load.now
    waited = load.now - since
    if waited < policy.cooldown_s:
        return Decision(load.current, f"hold, cooldown {waited:.0f}/{policy.cooldown_s:.0f} s, {why}", raw, since, load)
    return Decision(wanted, f"scale down after {waited:.0f} s of cooldown, {why}", raw, None, load)
