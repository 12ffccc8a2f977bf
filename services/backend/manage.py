"""Account administration inside the backend container, for `isletops users|tokens` (which runs it
with `docker exec`): `python -m services.backend.manage <area> <action> [arguments]`.

It reaches the instance's PostgreSQL with the container's own `DATABASE_URL`, so the database
needs no published port and no password leaves the container. A new password or token comes in
the exec's environment (`ISLETNET_NEW_SECRET`), never on the command line (which `ps` shows), and
only its hash is stored. Prints one JSON document: the result, or `{"error": sentence}` with exit
status 1.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any

from services.common import accounts as acc
from services.common.database import JobDatabase
from services.common.errors import ServiceError

SECRET_ENV = "ISLETNET_NEW_SECRET"  # noqa: S105 - the variable's name


def _secret() -> str:
    secret = os.environ.get(SECRET_ENV, "")
    if len(secret) < 12:
        raise acc.AccountError(f"No new secret in {SECRET_ENV} (at least 12 characters).")
    return secret


def run(arguments: list[str], store: acc.Accounts) -> Any:
    """Do what `arguments` say and return the JSON-ready result."""
    match arguments:
        case ["users", "add", name, role, team]:
            return store.add_user(name, role, team, acc.hash_password(_secret()))
        case ["users", "list"]:
            return store.list_users()
        case ["users", "disable", name]:
            store.set_disabled(name, True)
            return {"username": name, "disabled": True}
        case ["users", "enable", name]:
            store.set_disabled(name, False)
            return {"username": name, "disabled": False}
        case ["users", "reset-password", name]:
            store.set_password_hash(name, acc.hash_password(_secret()))
            return {"username": name}
        case ["tokens", "create", user, name, scopes]:
            return store.add_token(user, name, scopes.split(","), acc.digest(_secret()))
        case ["tokens", "list", *user]:
            return store.list_tokens(user[0] if user else None)
        case ["tokens", "revoke", user, name]:
            store.revoke_token(user, name)
            return {"username": user, "name": name, "revoked": True}
    raise acc.AccountError(f"Unknown account command: {' '.join(arguments)[:200]}.")


def _json_default(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def main(arguments: list[str] | None = None) -> int:
    try:
        result = run(sys.argv[1:] if arguments is None else arguments, acc.Accounts(JobDatabase.from_env()))
    except ServiceError as problem:
        print(json.dumps({"error": str(problem)}))
        return 1
    print(json.dumps({"result": result}, default=_json_default))
    return 0


if __name__ == "__main__":
    sys.exit(main())
