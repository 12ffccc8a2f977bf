"""Shared helpers of the backend tests: submitting through Flask's test client, checking the
one-sentence JSON errors, and an app whose storage and database are dead ports (its clients
sign in as an admin of an in-memory account store, so validation is reached without a database;
authorisation itself is tested against real PostgreSQL in test_auth.py)."""

from __future__ import annotations

import io
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.backend.app import create_app
from services.common.accounts import PERMISSIONS, Principal
from services.common.database import JobDatabase
from services.common.jobs import Job
from services.common.storage import ObjectStore

# Nothing listens on port 9 (discard) of the loopback: connections are refused at once.
DEAD_S3 = "http://127.0.0.1:9"
DEAD_DATABASE = "postgresql://x:y@127.0.0.1:9/x"


OFFLINE_TOKEN = "offline-admin-token"  # noqa: S105 - a test value


class OfflineAccounts:
    """The account store's interface in memory: one admin, known by `OFFLINE_TOKEN`."""

    admin = Principal(1, "admin", "admin", "default", PERMISSIONS["admin"], "token")

    def ensure_schema(self) -> None:
        return None

    def ensure_probe_token(self, token: str) -> None:
        return None

    def token_principal(self, token: str) -> Principal | None:
        return self.admin if token == OFFLINE_TOKEN else None

    def session_principal(self, session_id: str) -> Principal | None:
        return None

    def assign_job(self, job_id: str, principal: Principal) -> None:
        return None

    def team_of_job(self, job_id: str) -> str | None:
        return None

    def team_jobs(self, *args: Any) -> list[Job]:
        return []


class AdminClient(FlaskClient):
    """A test client that sends the offline admin's token with every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {OFFLINE_TOKEN}"


def offline_app(env: dict[str, str] | None = None) -> Flask:
    """The real app with storage and database that refuse every connection. A request that
    reaches either answers 503, so a 4xx from this app proves the request was refused before
    anything was stored or queued."""
    store = ObjectStore(DEAD_S3, "a", "b", "isletnet", connect_timeout_s=0.2, max_attempts=1)
    database = JobDatabase(DEAD_DATABASE, connect_timeout_s=1)
    app = create_app(env or {}, store=store, database=database, accounts=OfflineAccounts())  # type: ignore[arg-type]
    app.extensions["isletnet.access"].stop()
    app.test_client_class = AdminClient
    return app


def submit(client: FlaskClient, files: list[tuple[bytes, str]], **fields: Any) -> TestResponse:
    data: dict = {"images": [(io.BytesIO(content), name) for content, name in files], **fields}
    return client.post("/api/jobs", data=data, content_type="multipart/form-data")


def assert_plain_error(response: TestResponse, status: int, pattern: str) -> None:
    """A JSON body `{"error": "<one sentence>"}` with `status`, matching `pattern`."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    body = response.get_json()
    assert set(body) == {"error"}
    message = body["error"]
    assert re.search(pattern, message), message
    assert "\n" not in message and "Traceback" not in message
    assert message.endswith("."), message


def admin_token(database_url: str) -> str:
    """A new admin account with an API token of every scope, in the database at `database_url`."""
    from services.common import accounts as acc

    store = acc.Accounts(JobDatabase(database_url))
    name = f"admin-{acc.new_secret()[:8].lower().replace('-', 'x').replace('_', 'x')}"
    store.add_user(name, "admin", "default", acc.hash_password(acc.new_secret()))
    token = acc.new_api_token()
    store.add_token(name, "tests", list(acc.SCOPES), acc.digest(token))
    return token
