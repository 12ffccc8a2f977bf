"""Account administration of an instance (`isletops users|tokens`): the backend enforces, this
module only asks it.

The commands run `python -m services.backend.manage` inside the instance's running backend
container (`docker exec` through the Docker engine). That is the simplest honest path on a real
stack: the container already holds the database address and password and the same account code
the backend uses, the database needs no published port, and the ops host needs no database
client. New passwords and tokens are generated here, shown once to the caller, and handed to the
container in the exec's environment (never on a command line, which `ps` shows); only their
hashes are stored.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from isletops.config import InstanceConfig
from isletops.errors import IsletOpsError

SECRET_ENV = "ISLETNET_NEW_SECRET"  # noqa: S105 - the variable's name
MANAGE = ["python", "-m", "services.backend.manage"]
ROLES = ("technician", "admin")
SCOPES = ("jobs:read", "jobs:submit", "queue:read", "statistics", "training:export", "accounts", "probe")


class AccountsError(IsletOpsError):
    """The account command could not run or the backend refused it."""


class Engine(Protocol):
    @property
    def client(self) -> Any: ...


@dataclass(frozen=True)
class Created:
    """What a command made, with the secret to show once."""

    details: dict[str, Any]
    secret: str


def new_password() -> str:
    """A random password of 144 bits, easy to copy."""
    return secrets.token_urlsafe(18)


def new_token() -> str:
    return "isk_" + secrets.token_urlsafe(32)


def backend_container(instance: InstanceConfig, engine: Engine) -> Any:
    """A running backend container of the instance (any of them during a deploy)."""
    filters = {"label": [f"com.docker.compose.project={instance.project_name}", "com.docker.compose.service=backend"],
               "status": "running"}
    found = engine.client.containers.list(filters=filters)
    if not found:
        raise AccountsError(f"Instance '{instance.name}' has no running backend, so its accounts cannot be reached.",
                            f"Start it first: isletops -i {instance.name} up.")
    return found[0]


def manage(instance: InstanceConfig, engine: Engine, arguments: list[str], secret: str | None = None) -> Any:
    """Run one account command in the backend container; returns its result or raises its sentence."""
    container = backend_container(instance, engine)
    environment = {SECRET_ENV: secret} if secret else {}
    exit_code, output = container.exec_run([*MANAGE, *arguments], environment=environment, demux=True)
    stdout, stderr = output if isinstance(output, tuple) else (output, b"")
    lines = (stdout or b"").decode(errors="replace").strip().splitlines()
    try:
        answer = json.loads(lines[-1]) if lines else {}
    except ValueError:
        answer = {}
    if "error" in answer:
        raise AccountsError(str(answer["error"]))
    if exit_code != 0 or "result" not in answer:
        detail = (stderr or b"").decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise AccountsError(f"The account command failed in the backend container: {detail[0][:200]}",
                            "Check 'isletops logs backend'; an older release may lack account commands.")
    return answer["result"]


def add_user(instance: InstanceConfig, engine: Engine, username: str, role: str, team: str,
             password: str | None = None) -> Created:
    if role not in ROLES:
        raise AccountsError(f"Unknown role {role!r}.", f"Use {' or '.join(ROLES)}.")
    password = password or new_password()
    if len(password) < 12:
        raise AccountsError("The password is shorter than 12 characters.", "Choose a longer one.")
    details = manage(instance, engine, ["users", "add", username, role, team], password)
    return Created(details, password)


def reset_password(instance: InstanceConfig, engine: Engine, username: str, password: str | None = None) -> Created:
    password = password or new_password()
    if len(password) < 12:
        raise AccountsError("The password is shorter than 12 characters.", "Choose a longer one.")
    return Created(manage(instance, engine, ["users", "reset-password", username], password), password)


def create_token(instance: InstanceConfig, engine: Engine, username: str, name: str, scopes: list[str]) -> Created:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise AccountsError(f"Unknown or missing scope {', '.join(unknown) or '(none)'}.",
                            f"Use one or more of {', '.join(SCOPES)}.")
    token = new_token()
    return Created(manage(instance, engine, ["tokens", "create", username, name, ",".join(scopes)], token), token)
