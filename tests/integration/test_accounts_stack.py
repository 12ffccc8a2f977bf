"""`isletops users` and `isletops tokens` on a real stack: the commands reach the instance's
PostgreSQL through its backend container, and what they make works at once through the edge
(sign-in, scoped token), and stops at once when disabled or revoked."""

from __future__ import annotations

import re

import pytest
import requests
from click.testing import CliRunner

from isletops.cli import main

pytestmark = pytest.mark.integration


def isletops(made, *arguments: str, stdin: str | None = None):
    result = CliRunner().invoke(main, ["--config", str(made.config_path), "-i", made.project, *arguments], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_users_and_tokens_commands_on_a_real_stack(stack_instance) -> None:
    made = stack_instance("accounts")
    api = made.frontend_url  # through the edge and the frontend, as every client
    assert requests.get(f"{api}/api/jobs", timeout=10).status_code == 401
    assert requests.get(f"{api}/api/health", timeout=10).status_code == 200
    # The probe account exists from the env file's token.
    assert requests.get(f"{api}/api/queue", headers=made.auth, timeout=10).status_code == 200

    added = isletops(made, "users", "add", "alice", "--role", "technician", "--team", "islet-lab")
    password = re.search(r"Password \(shown once\): (\S+)", added).group(1)
    login = requests.post(f"{api}/api/auth/login", json={"username": "alice", "password": password}, timeout=10)
    assert login.status_code == 200 and login.json()["team"] == "islet-lab"
    assert "Secure" not in login.headers["Set-Cookie"] and "HttpOnly" in login.headers["Set-Cookie"]
    listed = isletops(made, "users", "list")
    assert re.search(r"alice\s+technician\s+islet-lab\s+enabled", listed), listed
    assert re.search(r"probe\s+technician\s+monitoring", listed), listed

    created = isletops(made, "tokens", "create", "alice", "lims", "--scope", "jobs:read")
    token = created.strip().splitlines()[-1]
    assert token.startswith("isk_") and len(token) >= 47
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.get(f"{api}/api/jobs", headers=auth, timeout=10).status_code == 200
    assert requests.get(f"{api}/api/queue", headers=auth, timeout=10).status_code == 403  # not in its scope
    tokens = isletops(made, "tokens", "list")
    assert "lims" in tokens and token not in tokens

    isletops(made, "users", "disable", "alice")
    assert requests.get(f"{api}/api/jobs", headers=auth, timeout=10).status_code == 401
    assert requests.get(f"{api}/api/jobs", cookies=login.cookies, timeout=10).status_code == 401
    isletops(made, "users", "enable", "alice")
    assert requests.get(f"{api}/api/jobs", headers=auth, timeout=10).status_code == 200
    isletops(made, "tokens", "revoke", "alice", "lims")
    assert requests.get(f"{api}/api/jobs", headers=auth, timeout=10).status_code == 401

    reset = isletops(made, "users", "reset-password", "alice", "--password-stdin", stdin="a new long password\n")
    assert "a new long password" not in reset
    again = requests.post(f"{api}/api/auth/login", json={"username": "alice", "password": "a new long password"},
                          timeout=10)
    assert again.status_code == 200

    refused = CliRunner().invoke(main, ["--config", str(made.config_path), "-i", made.project,
                                        "users", "add", "alice"])
    assert refused.exit_code != 0
    assert "There is already a user 'alice'" in refused.output
    assert "Traceback" not in refused.output
