"""The one health wait (`isletops.engines.health`): fails fast, formats health output once."""

from datetime import UTC, datetime, timedelta

import pytest

from isletops.engines.base import HealthCheck, HealthPolicy, ServiceState
from isletops.engines.health import HealthFailed, failed_streak, health_said, wait_healthy

STARTED = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)


def state(service="backend", name="p-backend-2", status="running", health="starting", restarts=0, output="",
          checks=(), start_period_s=0.0):
    return ServiceState(service, name, status, health, restarts, STARTED, "img:t", None, output, start_period_s,
                        tuple(checks))


def checks(*exit_codes, every_s=5, first_s=5):
    return [HealthCheck(STARTED + timedelta(seconds=first_s + i * every_s), code, "refused" if code else "ok")
            for i, code in enumerate(exit_codes)]


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def wait(states, services=("backend",), timeout_s=60.0, failed_checks=3, only=()):
    clock = Clock()
    return wait_healthy(lambda: list(states), list(services), HealthPolicy(timeout_s, failed_checks), only,
                        clock, clock.sleep)


def test_three_failed_checks_after_the_start_period_end_the_wait_at_once():
    failing = state(checks=checks(1, 1, 1), output="curl: (7) refused")
    with pytest.raises(HealthFailed) as caught:
        wait([failing])
    assert str(caught.value) == ("backend did not become healthy (3 health checks failed in a row): backend "
                                 "(running, starting): health check said 'curl: (7) refused' "
                                 "See 'isletops logs backend'.")
    assert caught.value.instance_names == ("p-backend-2",)


def test_failures_within_the_start_period_or_before_a_success_do_not_count():
    assert failed_streak(state(checks=checks(1, 1, 1), start_period_s=60)) == 0
    assert failed_streak(state(checks=checks(1, 1, 1, 1), start_period_s=12)) == 2
    assert failed_streak(state(checks=checks(1, 0, 1, 1))) == 2
    with pytest.raises(HealthFailed, match="not ready within 2 s"):
        wait([state(checks=checks(1, 1), output="x")], timeout_s=2)
    with pytest.raises(HealthFailed, match="2 health checks failed"):
        wait([state(checks=checks(1, 1))], failed_checks=2)


def test_the_grace_judges_a_new_instance_before_its_long_start_period_ends():
    never_serves = state(checks=checks(1, 1, 1, 1, 1, 1), start_period_s=60)  # checks at 5 ... 30 s
    assert failed_streak(never_serves) == 0
    assert failed_streak(never_serves, grace_s=20) == 3  # those at 20, 25 and 30 s
    assert failed_streak(never_serves, grace_s=90) == 0  # the start period is the longer bound
    clock = Clock()
    with pytest.raises(HealthFailed, match="3 health checks failed in a row"):
        wait_healthy(lambda: [never_serves], ["backend"], HealthPolicy(3600, 3, grace_s=20), (), clock, clock.sleep)
    assert clock.now == 0.0  # judged from the check log at once, not at the deadline
    slow = state(checks=checks(1, 1, 1, 1, 1, 0), start_period_s=60)  # passes at 30 s: never a failure
    assert failed_streak(slow, grace_s=20) == 0


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"status": "exited"}, "exited"), ({"status": "restarting"}, "restarting"), ({"restarts": 1}, "restarted 1"),
    ({"health": "unhealthy"}, "unhealthy"),
])
def test_exited_restarting_or_unhealthy_fail_at_once(kwargs, why):
    with pytest.raises(HealthFailed, match=why):
        wait([state(**kwargs)], timeout_s=3600)


def test_only_the_named_new_instances_are_judged():
    old = state(name="p-backend-1", health="healthy")
    new = state(name="p-backend-2", health="unhealthy", output="boom")
    assert wait([old], only=("p-backend-1",))[0].name == "p-backend-1"
    with pytest.raises(HealthFailed) as caught:
        wait([old, new], only=("p-backend-2",))
    assert caught.value.instance_names == ("p-backend-2",) and "boom" in str(caught.value)


def test_a_missing_service_is_named_at_the_deadline():
    missing = ServiceState("shepherd", "", "missing", None, 0, None, "", None, "")
    with pytest.raises(HealthFailed, match="shepherd did not become healthy .not ready within 1 s.: shepherd"):
        wait([state(health="healthy"), missing], services=("backend", "shepherd"), timeout_s=1)


def test_it_returns_the_ready_states_and_formats_output_once():
    ready = wait([state(health="healthy")])
    assert [s.name for s in ready] == ["p-backend-2"]
    assert health_said(state(output="a\n  b")) == "backend (running, starting): health check said 'a b'"
