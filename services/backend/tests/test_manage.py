"""`python -m services.backend.manage` (what `isletops users|tokens` runs in the backend
container) against a real PostgreSQL: secrets come from the environment, only hashes are kept,
and refusals are one JSON sentence with exit status 1."""

from __future__ import annotations

import json

import pytest

from services.backend import manage
from services.common import accounts as acc
from services.common.database import JobDatabase

pytestmark = pytest.mark.integration


def run(capsys: pytest.CaptureFixture[str], *arguments: str) -> tuple[int, dict]:
    status = manage.main(list(arguments))
    return status, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_users_and_tokens_through_the_manage_command(
    postgres_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", postgres_db)
    monkeypatch.setenv(manage.SECRET_ENV, "a long enough password")
    assert run(capsys, "users", "add", "Alice", "technician", "lab") == (
        0, {"result": {"username": "alice", "role": "technician", "team": "lab"}})
    store = acc.Accounts(JobDatabase(postgres_db))
    user_id, stored = store.password_hash_of("alice")
    assert stored.startswith("$argon2id$") and acc.verify_password(stored, "a long enough password")

    monkeypatch.setenv(manage.SECRET_ENV, "isk_" + "t" * 43)
    status, created = run(capsys, "tokens", "create", "alice", "lims", "jobs:read,jobs:submit")
    assert status == 0 and created["result"]["scopes"] == ["jobs:read", "jobs:submit"]
    assert store.token_principal("isk_" + "t" * 43).permissions == {"jobs:read", "jobs:submit"}
    status, listed = run(capsys, "tokens", "list")
    assert status == 0 and "isk_" not in json.dumps(listed)

    assert run(capsys, "users", "add", "alice", "admin", "lab") == (
        1, {"error": "There is already a user 'alice'; choose another name or reset its password."})
    assert run(capsys, "tokens", "create", "alice", "x", "root")[0] == 1
    assert run(capsys, "users", "remove", "alice") == (1, {"error": "Unknown account command: users remove alice."})
    monkeypatch.setenv(manage.SECRET_ENV, "short")
    assert run(capsys, "users", "reset-password", "alice")[1]["error"].startswith("No new secret")
    assert run(capsys, "users", "disable", "alice")[0] == 0
    assert store.token_principal("isk_" + "t" * 43) is None
