"""Accounts and authorisation of the REST API against a real PostgreSQL and SeaweedFS.

The walk over /api/spec.json takes every operation the document lists (not a hand-written list)
and proves: 401 without credentials, 403 for the wrong role, scope or team, and that the right
credentials get past authorisation.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from services.backend.app import create_app
from services.backend.tests.images import dtz_rgb, encode
from services.common import accounts as acc
from tests.fixtures.accounts import bearer, grant

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery staple"  # noqa: S105 - a test account's


@pytest.fixture
def env(isolated_service_env: dict[str, str]) -> dict[str, str]:
    return {**isolated_service_env, "ISLETNET_PROBE_TOKEN": "p" * 40, "LOGIN_LIMIT_PER_ACCOUNT": "3",
            "LOGIN_LIMIT_PER_ADDRESS": "6"}


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[Flask]:
    made = create_app(env)
    yield made
    made.extensions["isletnet.access"].stop()


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode(dtz_rgb(), "PNG")


def store(app: Flask) -> acc.Accounts:
    return app.extensions["isletnet.accounts"]


def add_user(app: Flask, name: str, role: str = "technician", team: str = "lab-a") -> None:
    store(app).add_user(name, role, team, acc.hash_password(PASSWORD))


def login(client: FlaskClient, name: str, password: str = PASSWORD, **headers: str) -> Any:
    return client.post("/api/auth/login", json={"username": name, "password": password}, headers=headers)


def submit(client: FlaskClient, png: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.post("/api/jobs", data={"images": [(io.BytesIO(png), "a.png")]},
                       content_type="multipart/form-data", headers=headers or {})


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def call(client: FlaskClient, method: str, path: str, job_id: str, headers: dict[str, str]) -> Any:
    url = re.sub(r"{job_id}", job_id, path)
    return client.open(url, method=method.upper(), headers=headers)


# -- the spec walk ----------------------------------------------------------------------------------


def test_every_operation_in_the_spec_refuses_without_and_with_wrong_credentials(app: Flask, png: bytes) -> None:
    client = app.test_client()
    admin = grant(app, "admin")
    own_team = grant(app, "technician", team="lab-a")
    other_team = grant(app, "technician", team="lab-b")
    job_id = submit(client, png, bearer(own_team)).get_json()["id"]
    spec = client.get("/api/spec.json", headers=bearer(admin)).get_json()
    assert spec["components"]["securitySchemes"]["bearerToken"] == {
        "type": "http", "scheme": "bearer", "description": spec["components"]["securitySchemes"]["bearerToken"][
            "description"]}
    assert spec["components"]["securitySchemes"]["sessionCookie"]["in"] == "cookie"
    walked = 0
    for path, method, operation in operations(spec):
        if operation["security"] == []:
            assert operation["operationId"] in {"health", "login", "logout", "currentSession"}, path
            continue
        walked += 1
        where = f"{method.upper()} {path}"
        permission = operation["x-permission"]
        assert operation["security"] == [{"sessionCookie": []}, {"bearerToken": []}], where
        assert {"401", "403"} <= set(operation["responses"]), where
        # No credentials, and credentials that are not ours.
        assert call(client, method, path, job_id, {}).status_code == 401, where
        assert call(client, method, path, job_id, bearer("isk_" + "x" * 43)).status_code == 401, where
        # The wrong role: a technician where the role lacks the permission; otherwise a token whose
        # scopes lack it, and for one job's routes a technician of another team.
        if permission not in acc.PERMISSIONS["technician"]:
            assert call(client, method, path, job_id, bearer(own_team)).status_code == 403, where
        else:
            narrow = grant(app, "technician", team="lab-a",
                           scopes=[scope for scope, grants in acc.SCOPES.items() if permission not in grants])
            assert call(client, method, path, job_id, bearer(narrow)).status_code == 403, where
            if "{job_id}" in path:
                assert call(client, method, path, job_id, bearer(other_team)).status_code == 403, where
                assert call(client, method, path, job_id, bearer(own_team)).status_code not in (401, 403), where
        # The right credentials pass authorisation (the answer itself is the route's business).
        assert call(client, method, path, job_id, bearer(admin)).status_code not in (401, 403), where
    assert walked >= 15


def test_a_route_missing_from_the_spec_is_refused(app: Flask) -> None:
    @app.get("/api/undocumented")
    def undocumented() -> str:  # pragma: no cover - must never run
        return "leak"

    response = app.test_client().get("/api/undocumented", headers=bearer(grant(app, "admin")))
    assert response.status_code == 403
    assert b"leak" not in response.data


# -- teams ----------------------------------------------------------------------------------------


def test_jobs_belong_to_the_uploaders_team_and_admins_see_all(app: Flask, png: bytes) -> None:
    client = app.test_client()
    alice, bob, admin = grant(app, "technician", team="lab-a"), grant(app, "technician", team="lab-b"), grant(app)
    job_a = submit(client, png, bearer(alice)).get_json()["id"]
    job_b = submit(client, png, bearer(bob)).get_json()["id"]
    ids = lambda token: [job["id"] for job in client.get("/api/jobs", headers=bearer(token)).get_json()["jobs"]]  # noqa: E731
    assert ids(alice) == [job_a]
    assert ids(bob) == [job_b]
    assert set(ids(admin)) == {job_a, job_b}
    refused = client.get(f"/api/jobs/{job_a}", headers=bearer(bob))
    assert refused.status_code == 403
    assert refused.get_json() == {"error": f"Job {job_a} belongs to another team."}


# -- sign-in, sessions, CSRF ------------------------------------------------------------------------


def test_login_sets_a_strict_http_only_session_and_a_new_id_each_time(app: Flask) -> None:
    add_user(app, "carol")
    client = app.test_client()
    first = login(client, "carol")
    assert first.status_code == 200
    assert first.get_json()["role"] == "technician" and first.get_json()["csrf_token"]
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    old_id = client.get_cookie("isletnet_session").value
    second = login(client, "carol", **{"X-Forwarded-Proto": "https"})
    assert "Secure" in second.headers["Set-Cookie"]
    new_id = client.get_cookie("isletnet_session").value
    assert new_id != old_id
    # The replaced session is over.
    other = app.test_client()
    other.set_cookie("isletnet_session", old_id)
    assert other.get("/api/jobs").status_code == 401
    assert client.get("/api/jobs").status_code == 200


def test_state_changes_with_a_session_need_the_csrf_token_and_our_origin(app: Flask, png: bytes) -> None:
    add_user(app, "dave")
    client = app.test_client()
    csrf = login(client, "dave").get_json()["csrf_token"]
    assert submit(client, png).status_code == 403
    assert submit(client, png, {"X-CSRF-Token": "wrong"}).status_code == 403
    assert submit(client, png, {"X-CSRF-Token": csrf, "Origin": "https://evil.example"}).status_code == 403
    assert submit(client, png, {"X-CSRF-Token": csrf, "Origin": "http://localhost"}).status_code == 201
    assert client.get("/api/auth/session").get_json()["csrf_token"] == csrf
    assert login(client, "dave", Origin="https://evil.example").status_code == 403


def test_wrong_password_and_unknown_account_get_the_same_answer(app: Flask) -> None:
    add_user(app, "erin")
    client = app.test_client()
    wrong = login(client, "erin", "not it")
    unknown = login(client, "nobody-here", "not it")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json() == {"error": "The user name or password is wrong."}


def test_login_failures_are_limited_per_account_and_per_address_and_logged(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    add_user(app, "frank")
    client = app.test_client()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            assert login(client, "frank", "guess").status_code == 401
        limited = login(client, "frank")  # even the right password waits
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 900
    assert "login failed for 'frank' from 127.0.0.1" in caplog.text
    # Per address: other names from the same address, up to LOGIN_LIMIT_PER_ADDRESS failures.
    for index in range(3):
        assert login(client, f"ghost{index}", "guess").status_code == 401
    assert login(client, "ghost9", "guess").status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "127.0.0.2"
    add_user(app, "gina")
    assert login(other, "gina").status_code == 200


def test_disabling_an_account_ends_its_sessions_and_tokens_at_once(app: Flask) -> None:
    add_user(app, "hank")
    token = acc.new_api_token()
    store(app).add_token("hank", "script", ["jobs:read"], acc.digest(token))
    client = app.test_client()
    login(client, "hank")
    assert client.get("/api/jobs").status_code == 200
    assert client.get("/api/jobs", headers=bearer(token)).status_code == 200
    store(app).set_disabled("hank")
    assert client.get("/api/jobs").status_code == 401
    assert app.test_client().get("/api/jobs", headers=bearer(token)).status_code == 401
    assert login(app.test_client(), "hank").status_code == 401


def test_logout_ends_the_session_and_revoked_tokens_stop(app: Flask) -> None:
    add_user(app, "iris")
    client = app.test_client()
    login(client, "iris")
    session_id = client.get_cookie("isletnet_session").value
    assert client.post("/api/auth/logout").status_code == 204
    replay = app.test_client()
    replay.set_cookie("isletnet_session", session_id)
    assert replay.get("/api/jobs").status_code == 401
    token = acc.new_api_token()
    store(app).add_token("iris", "script", ["jobs:read"], acc.digest(token))
    store(app).revoke_token("iris", "script")
    assert app.test_client().get("/api/jobs", headers=bearer(token)).status_code == 401


# -- the probe token and the proxy sign-on ----------------------------------------------------------


def test_probe_token_from_the_env_submits_and_reads_but_nothing_else_and_rotates(
    app: Flask, env: dict[str, str], png: bytes
) -> None:
    client = app.test_client()
    probe = bearer(env["ISLETNET_PROBE_TOKEN"])
    created = submit(client, png, probe)
    assert created.status_code == 201
    assert client.get(f"/api/jobs/{created.get_json()['id']}", headers=probe).status_code == 200
    assert client.get("/api/queue", headers=probe).status_code == 200
    assert client.get("/api/statistics", headers=probe).status_code == 403
    rotated = create_app({**env, "ISLETNET_PROBE_TOKEN": "q" * 40})
    rotated.extensions["isletnet.access"].stop()
    assert client.get("/api/queue", headers=probe).status_code == 401
    assert client.get("/api/queue", headers=bearer("q" * 40)).status_code == 200


def test_proxy_sign_on_is_accepted_only_from_the_proxy(env: dict[str, str]) -> None:
    app = create_app({**env, "AUTH_MODE": "proxy", "AUTH_PROXY_ADDRESSES": "127.0.0.1/32",
                      "AUTH_PROXY_USER_HEADER": "X-Remote-User"})
    app.extensions["isletnet.access"].stop()
    add_user(app, "jane")
    client = app.test_client()
    assert client.get("/api/jobs", headers={"X-Remote-User": "jane"}).status_code == 200
    assert client.get("/api/jobs", headers={"X-Remote-User": "nobody"}).status_code == 403
    outsider = app.test_client()
    outsider.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert outsider.get("/api/jobs", headers={"X-Remote-User": "jane"}).status_code == 401
