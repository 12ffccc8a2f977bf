import json
import os
import subprocess
import sys

import pytest

from isletops.errors import LockError
from isletops.lock import InstanceLock, LockDetails, pid_is_running


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def details(**changes) -> LockDetails:
    base = LockDetails.for_this_process("deploy", "2026-11-23_02", "new model")
    return LockDetails(**{**base.__dict__, **changes})


def test_details_round_trip_and_describe():
    d = details()
    again = LockDetails.from_json(d.to_json())
    assert again == d
    text = d.describe()
    assert d.user in text and f"pid {os.getpid()}" in text and "deploy 2026-11-23_02" in text and "new model" in text


def test_second_acquire_is_refused_naming_holder_and_time(tmp_path):
    first = InstanceLock(tmp_path / "state", "prod")
    first.acquire(details())
    with pytest.raises(LockError) as excinfo:
        InstanceLock(tmp_path / "state", "prod").acquire(details(command="rollback"))
    message = str(excinfo.value)
    assert "Instance 'prod' is locked by" in message
    assert first.status().details.acquired_at in message
    assert (tmp_path / "state" / "lock" / "details").exists()  # the holder's lock is untouched


def test_force_does_not_break_a_live_lock(tmp_path):
    InstanceLock(tmp_path, "prod").acquire(details())
    with pytest.raises(LockError):
        InstanceLock(tmp_path, "prod").acquire(details(), force=True)


def test_stale_lock_is_reported_and_broken_only_with_force(tmp_path):
    stale = details(pid=dead_pid())
    assert not pid_is_running(stale.pid)
    InstanceLock(tmp_path, "prod").acquire(stale)
    lock = InstanceLock(tmp_path, "prod")
    assert lock.status().stale
    with pytest.raises(LockError) as excinfo:
        lock.acquire(details())
    assert "stale lock" in str(excinfo.value) and "--force" in str(excinfo.value)
    broken = lock.acquire(details(), force=True)
    assert broken is not None and broken.details == stale
    assert lock.status().details.pid == os.getpid()


def test_hand_taken_lock_is_never_stale(tmp_path):
    lock = InstanceLock(tmp_path, "prod")
    lock.acquire(LockDetails.for_this_process("manual", message="maintenance", hold=False))
    found = InstanceLock(tmp_path, "prod").status()
    assert found.held and not found.stale and found.details.pid is None
    with pytest.raises(LockError, match="maintenance"):
        InstanceLock(tmp_path, "prod").acquire(details(), force=True)


def test_lock_of_another_host_counts_as_live(tmp_path):
    InstanceLock(tmp_path, "prod").acquire(details(host="elsewhere", pid=dead_pid()))
    assert not InstanceLock(tmp_path, "prod").status().stale


def test_corrupt_details_are_reported_and_breakable(tmp_path):
    (tmp_path / "lock").mkdir()
    (tmp_path / "lock" / "details").write_text("{not json")
    lock = InstanceLock(tmp_path, "prod")
    found = lock.status()
    assert found.held and found.stale and "unreadable" in found.problem
    with pytest.raises(LockError, match="unreadable"):
        lock.acquire(details())
    assert lock.acquire(details(), force=True) is not None


def test_release_leaves_a_lock_someone_else_holds(tmp_path):
    mine = InstanceLock(tmp_path, "prod")
    mine.acquire(details())
    mine.release()
    theirs = InstanceLock(tmp_path, "prod")
    theirs.acquire(details(user="alice"))
    assert mine.release() is None  # not mine any more
    assert json.loads((tmp_path / "lock" / "details").read_text())["user"] == "alice"
    assert theirs.release().user == "alice"
    assert not (tmp_path / "lock").exists()
