"""Silences and maintenance windows: parsing, storing, listing, ending, and their errors."""

from __future__ import annotations

import pytest

from monitors import silences
from monitors.probes import NAMES
from monitors.silences import SilenceError

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("600", 600)]
)
def test_durations(text: str, seconds: float) -> None:
    assert silences.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "two hours", "2x", "h", "2h banana"])
def test_bad_duration_is_one_sentence(text: str) -> None:
    with pytest.raises(SilenceError) as caught:
        silences.parse_duration(text)
    assert str(caught.value).startswith(f"'{text}' is not a duration.")
    assert "\n" not in str(caught.value)


def test_silence_list_and_unsilence(tmp_path) -> None:
    entry = silences.silence(tmp_path, "e2e", 7200, "retraining", now=NOW, known_probes=NAMES, author="anna")
    planned = silences.silence(tmp_path, "all", 3600, "disk swap", start=NOW + 86400, now=NOW)
    listed = silences.list_silences(tmp_path, now=NOW)
    assert [s.id for s in listed] == [entry.id, planned.id]
    assert entry.covers("e2e", NOW + 10) and not entry.covers("disk", NOW + 10)
    assert not planned.covers("disk", NOW + 10) and planned.covers("disk", NOW + 86400 + 10)
    assert entry.author == "anna" and entry.end == NOW + 7200
    removed = silences.unsilence(tmp_path, "e2e", now=NOW + 60)
    assert [s.id for s in removed] == [entry.id]
    assert [s.id for s in silences.list_silences(tmp_path, now=NOW + 60)] == [planned.id]


def test_expired_silences_disappear(tmp_path) -> None:
    silences.silence(tmp_path, "disk", 60, "cleanup", now=NOW)
    assert silences.list_silences(tmp_path, now=NOW + 61) == []


@pytest.mark.parametrize(
    ("target", "for_s", "reason", "message"),
    [
        ("banana", 60, "x", "'banana' is not a probe."),
        ("e2e", 0, "x", "A silence lasts more than 0 seconds and at most 30 days."),
        ("e2e", 40 * 86400, "x", "A silence lasts more than 0 seconds and at most 30 days."),
        ("e2e", 60, "  ", "A silence needs a reason."),
    ],
)
def test_bad_silence_is_refused_and_nothing_stored_is_lost(tmp_path, target, for_s, reason, message) -> None:
    kept = silences.silence(tmp_path, "http", 3600, "nginx work", now=NOW)
    before = silences.silences_path(tmp_path).read_bytes()
    with pytest.raises(SilenceError) as caught:
        silences.silence(tmp_path, target, for_s, reason, now=NOW, known_probes=NAMES)
    assert str(caught.value).startswith(message)
    assert silences.silences_path(tmp_path).read_bytes() == before
    assert [s.id for s in silences.list_silences(tmp_path, now=NOW)] == [kept.id]


def test_window_already_over_is_refused(tmp_path) -> None:
    with pytest.raises(SilenceError, match="already over"):
        silences.silence(tmp_path, "all", 60, "late", start=NOW - 120, now=NOW)


def test_unsilence_unknown_is_an_error_and_keeps_the_others(tmp_path) -> None:
    kept = silences.silence(tmp_path, "http", 3600, "nginx work", now=NOW)
    with pytest.raises(SilenceError, match="No silence matches 'e2e'"):
        silences.unsilence(tmp_path, "e2e", now=NOW)
    assert [s.id for s in silences.list_silences(tmp_path, now=NOW)] == [kept.id]


def test_silenced_context_ends_the_silence_even_on_error(tmp_path) -> None:
    with pytest.raises(RuntimeError), silences.silenced(tmp_path, "all", 600, "deploy 2026-11-25_01") as entry:
        assert silences.list_silences(tmp_path)[0].id == entry.id
        raise RuntimeError("deploy failed")
    assert silences.list_silences(tmp_path) == []


def test_deploy_hooks_silence_for_the_deploy(tmp_path) -> None:
    from dataclasses import dataclass

    from monitors import deploy_hooks

    @dataclass
    class Instance:
        directory: object
        state_dir: object

    @dataclass
    class HookContext:
        instance: Instance
        command: str = "deploy"
        version: str = "2026-11-25_02"
        previous_version: str = "2026-11-25_01"
        performer: str = "anna"

    registered = []
    deploy_hooks.register(lambda stage, hook: registered.append((stage, hook)))
    assert [stage for stage, _ in registered] == ["pre-deploy", "post-deploy"]
    context = HookContext(Instance(tmp_path, tmp_path / "state"))
    deploy_hooks.pre_deploy(context)
    (entry,) = silences.list_silences(tmp_path / "state")
    assert entry.target == "all" and "2026-11-25_02" in entry.reason and entry.author == "anna"
    deploy_hooks.post_deploy(context)
    assert silences.list_silences(tmp_path / "state") == []
