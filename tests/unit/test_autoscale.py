"""The shepherd autoscaler's pure decision: KEDA's rule, activation, cooldown, hysteresis, capacity."""

from __future__ import annotations

import pytest

from isletops.autoscale import Load, ScalePolicy, decide
from isletops.errors import ConfigError

POLICY = ScalePolicy(target_per_worker=2, min_replicas=1, max_replicas=4, activation=1, cooldown_s=300,
                     hysteresis=0.2)


def load(queued: int, running: int = 0, current: int = 1, capacity: int = 8, now: float = 1000.0,
         below_since: float | None = None) -> Load:
    return Load(queued=queued, running=running, current=current, capacity=capacity, now=now, below_since=below_since)


@pytest.mark.parametrize(("queued", "running", "expected"), [(1, 0, 1), (2, 1, 2), (4, 0, 2), (5, 2, 4), (30, 0, 4)])
def test_keda_rule_scales_up_at_once(queued: int, running: int, expected: int) -> None:
    decision = decide(POLICY, load(queued, running))
    assert decision.replicas == expected
    assert decision.raw == -(-(queued + running) // 2)


def test_burst_of_30_is_capped_by_gpu_capacity_and_says_so() -> None:
    decision = decide(POLICY, load(30, capacity=2))
    assert decision.replicas == 2
    assert "capped at 2 (GPU capacity)" in decision.describe()
    assert "queued 30, running 0, raw 15, capacity 2" in decision.describe()


def test_below_activation_goes_to_min_after_cooldown() -> None:
    first = decide(POLICY, load(0, current=3, now=1000))
    assert first.replicas == 3 and first.below_since == 1000 and "cooldown 0/300" in first.reason
    middle = decide(POLICY, load(0, current=3, now=1299, below_since=first.below_since))
    assert middle.replicas == 3
    done = decide(POLICY, load(0, current=3, now=1300, below_since=first.below_since))
    assert done.replicas == 1 and "inactive" in done.reason and done.below_since is None


def test_a_new_burst_resets_the_cooldown() -> None:
    waiting = decide(POLICY, load(0, current=3, now=1000))
    burst = decide(POLICY, load(6, current=3, now=1100, below_since=waiting.below_since))
    assert burst.replicas == 3 and burst.below_since is None
    again = decide(POLICY, load(0, current=3, now=1200, below_since=burst.below_since))
    assert again.below_since == 1200 and again.replicas == 3


def test_hysteresis_holds_at_the_boundary() -> None:
    # 4 workers, load 7 wants ceil(7/2)=4: steady; load 6 wants 3 but 6 > 3*2*0.8: hold (no flapping)
    assert decide(POLICY, load(7, current=4)).replicas == 4
    held = decide(POLICY, load(6, current=4))
    assert held.replicas == 4 and "hysteresis" in held.reason
    # load 4 wants 2 and 4 <= 2*2*0.8? no (4 > 3.2): still held
    assert "hysteresis" in decide(POLICY, load(4, current=4)).reason
    # load 3 wants 2; 3 <= 3.2: may go down after the cooldown
    assert "cooldown" in decide(POLICY, load(3, current=4)).reason


def test_capacity_loss_scales_down_at_once() -> None:
    decision = decide(POLICY, load(10, current=4, capacity=2))
    assert decision.replicas == 2 and "capacity" in decision.reason


def test_min_zero_and_no_gpu_capacity() -> None:
    policy = ScalePolicy(min_replicas=0, max_replicas=3, cooldown_s=0)
    assert decide(policy, load(0, current=1)).replicas == 0
    assert decide(policy, load(9, current=0, capacity=0)).replicas == 0


def test_steady_is_not_a_change() -> None:
    decision = decide(POLICY, load(2, current=1))
    assert not decision.changes and decision.reason.startswith("steady")


@pytest.mark.parametrize("bad", [ScalePolicy(target_per_worker=0), ScalePolicy(min_replicas=3, max_replicas=2),
                                 ScalePolicy(hysteresis=1.0), ScalePolicy(cooldown_s=-1)])
def test_bad_policy_is_refused(bad: ScalePolicy) -> None:
    with pytest.raises(ConfigError):
        bad.validate()
