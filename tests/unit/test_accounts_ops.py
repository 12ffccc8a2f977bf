"""`isletops.accounts` over a fake Docker engine: the command that runs in the backend container,
secrets only in the exec environment, and the sentences for each failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from isletops import accounts
from isletops.config import InstanceConfig


class Container:
    def __init__(self, answer: Any, exit_code: int = 0, stderr: bytes = b"") -> None:
        self.answer, self.exit_code, self.stderr = answer, exit_code, stderr
        self.calls: list[tuple[list[str], dict[str, str]]] = []

    def exec_run(self, command: list[str], environment: dict[str, str], demux: bool) -> tuple[int, tuple]:
        assert demux
        self.calls.append((command, environment))
        stdout = json.dumps(self.answer).encode() if self.answer is not None else b""
        return self.exit_code, (stdout, self.stderr)


class Engine:
    def __init__(self, *containers: Container) -> None:
        self.found = list(containers)
        self.filters: dict[str, Any] = {}
        engine = self

        class Containers:
            def list(self, filters: dict[str, Any]) -> list[Container]:
                engine.filters = filters
                return engine.found

        class Client:
            containers = Containers()

        self.client = Client()


@pytest.fixture
def instance(tmp_path: Path) -> InstanceConfig:
    return InstanceConfig(name="prod", directory=tmp_path / "prod")


def test_a_new_user_gets_a_generated_password_sent_in_the_environment_only(instance: InstanceConfig) -> None:
    container = Container({"result": {"username": "alice", "role": "technician", "team": "lab"}})
    engine = Engine(container)
    created = accounts.add_user(instance, engine, "alice", "technician", "lab")
    command, environment = container.calls[0]
    assert command == ["python", "-m", "services.backend.manage", "users", "add", "alice", "technician", "lab"]
    assert environment == {"ISLETNET_NEW_SECRET": created.secret}
    assert created.secret not in " ".join(command) and len(created.secret) >= 24
    assert engine.filters == {"label": ["com.docker.compose.project=prod", "com.docker.compose.service=backend"],
                              "status": "running"}


def test_a_token_is_random_scoped_and_sent_in_the_environment(instance: InstanceConfig) -> None:
    container = Container({"result": {"name": "lims", "scopes": ["jobs:read"]}})
    created = accounts.create_token(instance, Engine(container), "alice", "lims", ["jobs:read"])
    assert created.secret.startswith("isk_") and len(created.secret) >= 47
    assert container.calls[0][0][-4:] == ["create", "alice", "lims", "jobs:read"]
    assert container.calls[0][1] == {"ISLETNET_NEW_SECRET": created.secret}


@pytest.mark.parametrize("call, message", [
    (lambda i, e: accounts.add_user(i, e, "a", "root", "t"), "Unknown role 'root'"),
    (lambda i, e: accounts.add_user(i, e, "a", "admin", "t", "short"), "shorter than 12"),
    (lambda i, e: accounts.reset_password(i, e, "a", "short"), "shorter than 12"),
    (lambda i, e: accounts.create_token(i, e, "a", "n", ["jobs:delete"]), "Unknown or missing scope jobs:delete"),
    (lambda i, e: accounts.create_token(i, e, "a", "n", []), "Unknown or missing scope"),
])
def test_bad_arguments_are_refused_before_the_container_is_asked(instance: InstanceConfig, call, message) -> None:
    container = Container({"result": {}})
    with pytest.raises(accounts.AccountsError, match=message):
        call(instance, Engine(container))
    assert container.calls == []


def test_the_backends_sentence_and_a_missing_backend_become_errors(instance: InstanceConfig) -> None:
    refused = Container({"error": "There is already a user 'alice'; choose another name."}, exit_code=1)
    with pytest.raises(accounts.AccountsError, match="^There is already a user 'alice'"):
        accounts.manage(instance, Engine(refused), ["users", "list"])
    with pytest.raises(accounts.AccountsError, match="no running backend.*isletops -i prod up"):
        accounts.manage(instance, Engine(), ["users", "list"])
    broken = Container(None, exit_code=1, stderr=b"Traceback...\nModuleNotFoundError: services.backend.manage\n")
    with pytest.raises(accounts.AccountsError, match="failed in the backend container: ModuleNotFoundError"):
        accounts.manage(instance, Engine(broken), ["users", "list"])
