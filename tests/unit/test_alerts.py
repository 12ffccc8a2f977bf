"""The alert state machine: thresholds, reminders, resolve, grouping, flapping, silences."""

from __future__ import annotations

import json

import pytest

from monitors import alerts
from monitors.alerts import Policy, evaluate
from monitors.result import ProbeResult, Status
from monitors.silences import Silence

HOUR = 3600.0
POLICY = Policy(failures_to_alert=3, successes_to_resolve=2, reminder_interval_s=4 * HOUR, group_window_s=900)
OK, WARN, CRIT, UNK = Status.OK, Status.WARNING, Status.CRITICAL, Status.UNKNOWN


class Feed:
    """Feeds results into the state machine run by run, collecting every mail."""

    def __init__(self, policy: Policy = POLICY, start: float = 1_800_000_000.0) -> None:
        self.state = alerts.new_state("prod")
        self.policy = policy
        self.now = start
        self.mails: list[alerts.Notification] = []
        self.silences: list[Silence] = []

    def run(self, step_s: float = 300.0, active: set[str] | None = None, **statuses: Status) -> list:
        self.now += step_s
        results = [
            ProbeResult(name, status, value=float(status.value), message=f"{name} is {status.name.lower()}",
                        details={"unit": "x"}, checked_at=self.now)
            for name, status in statuses.items()
        ]  # fmt: skip
        self.state, mails = evaluate(self.state, results, self.now, self.policy, self.silences, active)
        json.dumps(self.state)  # the state must stay JSON (it is persisted)
        self.mails += mails
        return mails


def kinds(mails: list[alerts.Notification]) -> list[str]:
    return [mail.kind for mail in mails]


def test_one_mail_after_n_consecutive_failures_and_none_while_it_stays_broken() -> None:
    feed = Feed()
    assert feed.run(containers=CRIT) == []
    assert feed.run(containers=CRIT) == []
    trigger = feed.run(containers=CRIT)
    assert kinds(trigger) == ["trigger"]
    assert trigger[0].incident == "prod#1" and trigger[0].severity is CRIT and trigger[0].mail_number == 0
    for _ in range(5):
        assert feed.run(containers=CRIT) == []


def test_a_success_in_between_restarts_the_count() -> None:
    feed = Feed()
    for status in (CRIT, CRIT, OK, CRIT, CRIT, OK, CRIT):
        feed.run(http=status)
    assert feed.mails == []


def test_resolves_after_m_successes_with_one_mail_in_the_same_thread() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(disk=WARN)
    assert feed.run(disk=OK) == []
    resolved = feed.run(disk=OK)
    assert kinds(resolved) == ["resolve"]
    assert resolved[0].incident == "prod#1" and resolved[0].mail_number == 1 and resolved[0].state_word == "RESOLVED"
    assert feed.state["open"] is None and feed.state["closed"][-1]["name"] == "prod#1"
    for _ in range(3):
        feed.run(disk=CRIT)
    assert feed.mails[-1].incident == "prod#2" and feed.mails[-1].mail_number == 0


def test_reminders_every_interval_while_broken_and_none_in_between() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(e2e=CRIT)
    opened = feed.now
    while feed.now < opened + 4 * HOUR - 300:
        assert feed.run(e2e=CRIT) == []
    reminder = feed.run(e2e=CRIT)
    assert kinds(reminder) == ["reminder"] and reminder[0].mail_number == 1
    assert feed.run(e2e=CRIT) == []
    feed.run(step_s=4 * HOUR, e2e=CRIT)
    assert kinds(feed.mails) == ["trigger", "reminder", "reminder"]


def test_probes_breaking_in_the_same_incident_give_one_mail() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(containers=CRIT, e2e=CRIT, http=CRIT)
    assert kinds(feed.mails) == ["trigger"]
    assert sorted(p["name"] for p in feed.mails[0].probes) == ["containers", "e2e", "http"]
    # e2e notices later (its deadline is longer): it joins the open incident without a new mail.
    feed2 = Feed()
    for _ in range(3):
        feed2.run(containers=CRIT, e2e=OK)
    for _ in range(3):
        feed2.run(containers=CRIT, e2e=CRIT)
    assert kinds(feed2.mails) == ["trigger"]
    assert feed2.state["open"]["firing"] == ["containers", "e2e"]
    # ... and the resolve mail names both, once both recovered.
    feed2.run(containers=OK, e2e=CRIT)
    feed2.run(containers=OK, e2e=CRIT)
    assert kinds(feed2.mails) == ["trigger"]  # e2e still broken: no resolve yet
    feed2.run(containers=OK, e2e=OK)
    feed2.run(containers=OK, e2e=OK)
    assert kinds(feed2.mails) == ["trigger", "resolve"]
    assert [p["name"] for p in feed2.mails[-1].probes] == ["containers", "e2e"]


def test_late_joiner_or_higher_severity_sends_an_update() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(disk=WARN)
    for _ in range(3):  # an hour later, an unrelated probe breaks at the same severity
        feed.run(step_s=1200, disk=WARN, pruner=WARN)
    assert kinds(feed.mails) == ["trigger", "update"]
    assert feed.mails[-1].joined == ["pruner"]
    feed.run(disk=CRIT, pruner=WARN)  # escalation of a probe already firing
    assert kinds(feed.mails) == ["trigger", "update", "update"]
    assert feed.mails[-1].severity is CRIT and feed.mails[-1].state_word == "CRITICAL"
    feed.run(disk=CRIT, pruner=WARN)
    assert len(feed.mails) == 3


def test_flapping_probe_alerts_once_and_does_not_storm() -> None:
    feed = Feed()
    for index in range(20):
        feed.run(http=CRIT if index % 2 == 0 else OK)
    assert kinds(feed.mails) == ["trigger"]
    assert feed.state["probes"]["http"]["flapping"] is True
    assert feed.mails[0].probes[0]["flapping"] is True
    for _ in range(12):  # it settles: flapping ends, then M successes resolve
        feed.run(http=OK)
    assert kinds(feed.mails) == ["trigger", "resolve"]
    assert feed.state["probes"]["http"]["flapping"] is False


def test_flapping_probe_does_not_resolve_while_it_flaps() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(http=CRIT)
    for status in (OK, CRIT, OK, CRIT, OK, CRIT):  # five changes: flapping while firing
        feed.run(http=status)
    assert feed.state["probes"]["http"]["flapping"] is True
    for status in (OK, OK, CRIT, OK, OK, CRIT, OK, OK):  # OK OK would resolve a steady probe
        feed.run(http=status)
    assert kinds(feed.mails) == ["trigger"]


def test_silenced_probe_sends_nothing_and_alerts_when_the_silence_ends() -> None:
    feed = Feed()
    feed.silences = [Silence("s1", "e2e", feed.now, feed.now + 3600, "model retraining", "ops", feed.now)]
    for _ in range(6):
        feed.run(e2e=CRIT)
    assert feed.mails == []
    feed.run(step_s=3600, e2e=CRIT)  # silence over, still broken: alert at once
    assert kinds(feed.mails) == ["trigger"]


def test_silence_all_is_a_maintenance_window_without_reminders() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(containers=CRIT)
    start = feed.now
    feed.silences = [Silence("m1", "all", start, start + 10 * HOUR, "disk swap", "ops", start)]
    for _ in range(8):
        feed.run(step_s=HOUR, containers=CRIT, disk=CRIT, http=CRIT)
    assert kinds(feed.mails) == ["trigger"]
    # the problem is fixed during the window: the resolve still closes the thread
    feed.run(containers=OK, disk=OK, http=OK)
    feed.run(containers=OK, disk=OK, http=OK)
    assert kinds(feed.mails) == ["trigger", "resolve"]


def test_unknown_alerts_unless_configured_otherwise() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(gpu=UNK)
    assert kinds(feed.mails) == ["trigger"] and feed.mails[0].severity is UNK
    quiet = Feed(Policy(alert_on_unknown=False))
    for _ in range(5):
        quiet.run(gpu=UNK)
    assert quiet.mails == []


def test_a_probe_that_is_no_longer_configured_resolves() -> None:
    feed = Feed()
    for _ in range(3):
        feed.run(tls=CRIT, active={"tls"})
    feed.run(disk=OK, active={"disk"})
    assert kinds(feed.mails) == ["trigger", "resolve"]


def test_snapshot_carries_what_since_value_and_last_good() -> None:
    feed = Feed()
    feed.run(disk=OK)
    good_at = feed.now
    for _ in range(3):
        feed.run(disk=WARN)
    probe = feed.mails[0].probes[0]
    assert probe["last_good_at"] == good_at and probe["last_good_value"] == 0.0
    assert probe["value"] == 1.0 and probe["unit"] == "x" and probe["message"] == "disk is warning"
    assert probe["firing_since"] == good_at + 300


def test_state_file_round_trip_and_corrupt_file_is_kept_aside(tmp_path) -> None:
    path = tmp_path / "alerts.json"
    feed = Feed()
    for _ in range(3):
        feed.run(containers=CRIT)
    alerts.save_state(path, feed.state)
    assert alerts.load_state(path, "prod") == feed.state
    path.write_text("{not json")
    assert alerts.load_state(path, "prod") == alerts.new_state("prod")
    assert (tmp_path / "alerts.json.corrupt").read_text() == "{not json"


@pytest.mark.parametrize("failures", [1, 2, 5])
def test_threshold_follows_policy(failures: int) -> None:
    feed = Feed(Policy(failures_to_alert=failures))
    for _ in range(failures - 1):
        feed.run(http=CRIT)
    assert feed.mails == []
    feed.run(http=CRIT)
    assert kinds(feed.mails) == ["trigger"]
