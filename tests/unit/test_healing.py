"""The self-healing state machine (monitors.healing): restart after N checks, the budget, giving
up, crash loops, the deploy lock, per-service switches; and its config keys."""

from __future__ import annotations

import pytest

from isletops.config import SelfHealConfig, parse_config
from isletops.errors import ConfigError
from monitors import healing
from monitors.healing import GIVE_UP, HOLD, RESTART, Observation

POLICY = SelfHealConfig(after_checks=2, max_restarts=3, window_s=1800)
EXITED = Observation("shepherd", "exited with exit code 137")
FINE = Observation("shepherd")


def run(observations_per_check, policy=POLICY, start=1000.0, step=60.0, lock=""):
    """Feed one observation list per check; return every decision with the check's time."""
    state, made = healing.new_state(), []
    for number, observations in enumerate(observations_per_check):
        now = start + number * step
        state, decisions = healing.decide(state, observations, now, policy, lock)
        made += [(now, decision) for decision in decisions]
    return state, made


def test_restart_only_after_n_broken_checks() -> None:
    _, made = run([[EXITED]])
    assert made == []
    _, made = run([[EXITED], [EXITED]])
    assert [(d.service, d.action) for _, d in made] == [("shepherd", RESTART)]
    assert "exited with exit code 137 for 1 min" in made[0][1].reason


def test_a_good_check_resets_the_streak() -> None:
    _, made = run([[EXITED], [FINE], [EXITED], [FINE]])
    assert made == []


def test_budget_spent_gives_up_once_and_says_so() -> None:
    # broken forever: restart at checks 2, 4, 6; at 8 the budget (3 in 30 min) is spent.
    state, made = run([[EXITED]] * 12)
    actions = [d.action for _, d in made]
    assert actions == [RESTART, RESTART, RESTART, GIVE_UP]
    assert made[-1][1].reason.startswith("gave up after 3 restarts in 6 min")
    assert state["services"]["shepherd"]["gave_up_at"] is not None


def test_after_giving_up_a_working_service_gets_a_new_budget_later() -> None:
    state, made = run([[EXITED]] * 10)
    assert [d.action for _, d in made] == [RESTART, RESTART, RESTART, GIVE_UP]
    state, decisions = healing.decide(state, [EXITED], 2000.0, POLICY)  # given up: still nothing
    assert decisions == []
    state, _ = healing.decide(state, [FINE], 4000.0, POLICY)  # seen working, the old restarts age out
    state, _ = healing.decide(state, [EXITED], 4060.0, POLICY)
    state, decisions = healing.decide(state, [EXITED], 4120.0, POLICY)
    assert [d.action for d in decisions] == [RESTART]


def test_old_restarts_leave_the_window() -> None:
    _, made = run([[EXITED]] * 12, step=1000.0)  # restarts 2000 s apart never fill the window
    assert [d.action for _, d in made] == [RESTART] * 6


def test_crash_looping_service_is_never_restarted() -> None:
    looping = Observation("shepherd", "crash-looping (Docker restarted it 7 times)", crash_looping=True)
    _, made = run([[looping]] * 5)
    assert [d.action for _, d in made] == [GIVE_UP]
    assert "a restart cannot help" in made[0][1].reason


def test_lock_held_means_no_restart_and_one_note_per_holder() -> None:
    _, made = run([[EXITED]] * 5, lock="root@host (pid 1, deploy x)")
    assert [d.action for _, d in made] == [HOLD]
    assert "a deploy holds the lock" in made[0][1].reason


def test_restart_after_the_lock_is_released() -> None:
    state, _ = run([[EXITED]] * 3, lock="someone")
    state, decisions = healing.decide(state, [EXITED], 5000.0, POLICY, "")
    assert [d.action for d in decisions] == [RESTART]


def test_switched_off_per_service_and_globally() -> None:
    off_for_shepherd = SelfHealConfig(services={"shepherd": False})
    _, made = run([[EXITED]] * 4, policy=off_for_shepherd)
    assert made == []
    _, made = run([[EXITED]] * 4, policy=SelfHealConfig(enabled=False))
    assert made == []
    queue = Observation("queue", "unhealthy")
    _, made = run([[queue]] * 2, policy=off_for_shepherd)
    assert [d.service for _, d in made] == ["queue"]


def test_several_services_are_counted_apart() -> None:
    queue = Observation("queue", "unhealthy")
    _, made = run([[EXITED, Observation("queue")], [EXITED, queue], [FINE, queue]])
    assert [(d.service, d.action) for _, d in made] == [("shepherd", RESTART), ("queue", RESTART)]


@pytest.mark.parametrize(
    ("container", "broken", "looping"),
    [
        ({"service": "x", "state": "running", "health": "healthy"}, "", False),
        ({"service": "x", "state": "running", "health": None}, "", False),
        ({"service": "x", "state": "running", "health": "starting"}, "", False),
        ({"service": "x", "state": "exited", "exit_code": 137}, "exited with exit code 137", False),
        ({"service": "x", "state": "dead"}, "dead", False),
        ({"service": "x", "state": "running", "health": "unhealthy"}, "unhealthy", False),
        ({"service": "x", "state": "restarting", "restart_count": 4}, "crash-looping (Docker restarted it 4 times)",
         True),
        ({"service": "x", "state": "missing"}, "", False),  # no container: `isletops up`, not a restart
    ],
)
def test_observe_container_states(container, broken, looping) -> None:
    seen = healing.observe(container)
    assert (seen.broken, seen.crash_looping) == (broken, looping)


def test_events_are_kept_and_bounded() -> None:
    state = healing.new_state()
    for number in range(healing.EVENTS_KEPT + 5):
        healing.add_event(state, float(number), "shepherd", "restarted", f"event {number}")
    assert len(state["events"]) == healing.EVENTS_KEPT
    assert [e["text"] for e in healing.events_since(state, healing.EVENTS_KEPT + 3)] == [
        f"event {healing.EVENTS_KEPT + 3}", f"event {healing.EVENTS_KEPT + 4}"
    ]


def test_state_file_round_trip_and_corrupt_file(tmp_path) -> None:
    path = healing.state_path(tmp_path)
    state, _ = run([[EXITED]] * 2)
    healing.save_state(path, state)
    assert healing.load_state(path) == state
    path.write_text("{not json")
    assert healing.load_state(path) == healing.new_state()
    assert path.with_name("healing.json.corrupt").exists()


def test_config_keys() -> None:
    config = parse_config({"monitoring": {"self_heal": {"after_checks": 3, "services": {"queue": False}}}})
    heal = config.monitoring.self_heal
    assert (heal.after_checks, heal.max_restarts, heal.window_s) == (3, 3, 1800)
    assert not heal.applies_to("queue") and heal.applies_to("shepherd")
    assert parse_config({}).monitoring.self_heal == SelfHealConfig()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"after_checks": 0}, "after_checks must be at least 1"),
        ({"max_restarts": "x"}, "max_restarts must be a whole number"),
        ({"window_s": -5}, "window_s must be at least 1"),
        ({"enabled": "yes"}, "enabled must be true or false"),
        ({"services": {"bogus": True}}, "unknown service"),
        ({"services": {"queue": "no"}}, "must map service names to true or false"),
        ({"services": ["queue"]}, "must map service names to true or false"),
        ({"restarts": 3}, "unknown setting"),
        ("on", "must be a mapping"),
    ],
)
def test_bad_config_is_refused_naming_the_key(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config({"monitoring": {"self_heal": settings}})
