import json

from isletops.history import (
    History,
    HistoryEntry,
    deployed_tags,
    last_attempt_notice,
    parse_history,
)

T1, T2, T3 = "2026-11-20_01", "2026-11-21_01", "2026-11-21_02"


def entry(command, from_tag, to_tag, result="ok", **extra) -> HistoryEntry:
    return HistoryEntry(command=command, from_tag=from_tag, to_tag=to_tag, result=result, duration_s=1.0, **extra)


def test_deploys_stack_up_and_rollback_pops():
    entries = [entry("deploy", "", T1), entry("deploy", T1, T2), entry("deploy", T2, T3)]
    assert deployed_tags(entries).current == T3 and deployed_tags(entries).previous == T2
    entries.append(entry("rollback", T3, T2))
    assert (deployed_tags(entries).current, deployed_tags(entries).previous) == (T2, T1)
    entries.append(entry("rollback", T2, T1))
    assert (deployed_tags(entries).current, deployed_tags(entries).previous) == (T1, "")


def test_failed_and_rolled_back_attempts_do_not_move_the_deployed_tag():
    entries = [
        entry("deploy", "", T1),
        entry("deploy", T1, T2),
        entry("deploy", T2, T3, "rolled_back"),
        entry("deploy", T2, T3, "failed"),
        entry("deploy", T2, T3, "interrupted"),
    ]
    deployed = deployed_tags(entries)
    assert (deployed.current, deployed.previous) == (T2, T1)


def test_rollback_to_a_tag_not_on_the_stack_pushes_it():
    entries = [entry("deploy", "", T2), entry("rollback", T2, T1)]
    assert (deployed_tags(entries).current, deployed_tags(entries).previous) == (T1, T2)


def test_corrupt_lines_are_reported_by_number_and_the_rest_kept():
    good1, good2 = entry("deploy", "", T1).to_json(), entry("deploy", T1, T2).to_json()
    text = "\n".join([good1, "{truncated", json.dumps({"command": "deploy"}), "", "[1, 2]", good2]) + "\n"
    read = parse_history(text)
    assert [e.to_tag for e in read.entries] == [T1, T2]
    assert [p.line_number for p in read.problems] == [2, 3, 5]
    assert "not JSON" in read.problems[0].reason and "missing" in read.problems[1].reason


def test_append_survives_a_torn_last_line(tmp_path):
    history = History(tmp_path / "state", "prod")
    history.append(entry("deploy", "", T1))
    with history.path.open("a") as handle:
        handle.write('{"command": "deploy", "to_ta')  # a crash mid-write, no newline
    history.append(entry("deploy", T1, T2))
    read = history.read()
    assert [e.to_tag for e in read.entries] == [T1, T2]
    assert [p.line_number for p in read.problems] == [2]
    audit = history.audit_path.read_text().splitlines()
    assert len(audit) == 2 and audit[1].endswith(f"deploy {T1} -> {T2}: ok in 1 s")
    assert audit[1].startswith("[") and "] [prod] " in audit[1]


def test_missing_history_is_empty(tmp_path):
    read = History(tmp_path, "prod").read()
    assert read.entries == [] and read.problems == []


def test_notice_after_an_interrupted_or_rolled_back_attempt():
    ok = entry("deploy", "", T1)
    assert last_attempt_notice([ok]) == ""
    restored = entry("deploy", T1, T2, "interrupted", user="alice", message=f"interrupted (Ctrl-C); {T1} restored")
    notice = last_attempt_notice([ok, restored])
    assert "interrupted" in notice and f"{T1} was restored" in notice and "alice" in notice
    notice = last_attempt_notice([ok, entry("deploy", T1, T2, "interrupted", message="restoring failed: x")])
    assert f"{T1} may not have been restored (see 'isletops status')" in notice
    notice = last_attempt_notice([ok, entry("deploy", T1, T2, "rolled_back", message="backend unhealthy")])
    assert f"rolled back to {T1}" in notice and "backend unhealthy" in notice


def test_deployment_status_for_isletops_status(tmp_path):
    from isletops.config import InstanceConfig
    from isletops.deploy import deployment_status
    from isletops.lock import InstanceLock, LockDetails
    from tests.fakes.engine import FakeEngine

    inst = InstanceConfig(name="prod", directory=tmp_path / "prod")
    history = History(inst.state_dir, "prod")
    history.append(entry("deploy", "", T1))
    history.append(entry("deploy", T1, T2))
    history.append(entry("deploy", T2, T3, "interrupted", user="alice"))
    by_hand = LockDetails.for_this_process("manual", message="hands off", hold=False)
    InstanceLock(inst.state_dir, "prod").acquire(by_hand)
    engine = FakeEngine()
    engine.run_release(T2)
    status = deployment_status(inst, engine)
    text = "\n".join(status.lines())
    assert status.release == T2
    assert f"history: {T2} deployed (previous good: {T1})" in text
    assert f"last deploy: {T2} -> {T3} interrupted" in text and "by alice" in text
    assert "locked:" in text and "hands off" in text
    assert "note: The last deploy" in text
    assert status.as_dict()["last_attempt"]["result"] == "interrupted"
