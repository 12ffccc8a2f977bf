"""Who may call what: sign-in (session cookie), API tokens (`Authorization: Bearer`), the optional
reverse-proxy sign-on, CSRF, login rate limits, and the one authorisation check every `/api`
request passes through (`install`).

Every operation's permission is declared once, in `OPERATION_PERMISSIONS` (by OpenAPI
operationId); the OpenAPI document's per-operation `security` is built from the same table, and a
route whose operation is not in it is refused (fail closed). `PUBLIC_OPERATIONS` need no
credentials: health, sign-in, sign-out and the session/CSRF bootstrap. Outside the API, Prometheus'
`/metrics` (`METRICS_RULE`, the queue's load) needs none either: the edge, the frontend and the
Kubernetes Ingress send only /api to the backend, so only the instance's own network reaches it.

- Session cookie `isletnet_session`: HttpOnly, SameSite=Strict, Secure when the request came over
  TLS (directly or `X-Forwarded-Proto: https`); a new session id at every sign-in.
- CSRF: a request that changes state with a session cookie must carry the session's token in
  `X-CSRF-Token` (from `/api/auth/session` or the sign-in answer), and an `Origin`, when sent,
  must be this host.
- Login attempts: at most `LOGIN_LIMIT_PER_ACCOUNT` failures per account and
  `LOGIN_LIMIT_PER_ADDRESS` per client address in `LOGIN_WINDOW_SECONDS`, then 429 with
  Retry-After. Every attempt is logged and recorded.
- `AUTH_MODE=proxy`: a user name in `AUTH_PROXY_USER_HEADER`, accepted only from an address in
  `AUTH_PROXY_ADDRESSES`; the account must exist and be enabled (its role decides).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Flask, Response, current_app, g, jsonify, request

from services.backend.errors import ApiError
from services.backend.openapi import error, json_response
from services.common import accounts as acc
from services.common import queue_metrics
from services.common.accounts import Accounts, Principal
from services.common.jobs import Job
from services.common.settings import ConfigError, read_number, read_secret

log = logging.getLogger(__name__)

blueprint = Blueprint("auth", __name__, url_prefix="/api/auth")

SESSION_COOKIE = "isletnet_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_FAILED = "The user name or password is wrong."  # the same for unknown accounts
SIGN_IN_NEEDED = "Sign in first (or send an API token as 'Authorization: Bearer <token>')."

PUBLIC_OPERATIONS = frozenset({"health", "login", "logout", "currentSession"})
METRICS_RULE = queue_metrics.PATH
OPERATION_PERMISSIONS: dict[str, str] = {
    "openapiSpec": acc.JOBS_READ,
    "listModels": acc.JOBS_READ,
    "listJobs": acc.JOBS_READ,
    "getJob": acc.JOBS_READ,
    "getResult": acc.JOBS_READ,
    "getOverlay": acc.JOBS_READ,
    "jobReportPdf": acc.JOBS_READ,
    "jobIsletsCsv": acc.JOBS_READ,
    "jobIsletsXlsx": acc.JOBS_READ,
    "jobArchiveZip": acc.JOBS_READ,
    "submitJob": acc.JOBS_SUBMIT,
    "queueStats": acc.QUEUE_READ,
    "statistics": acc.STATISTICS,
    "accessStatisticsXlsx": acc.STATISTICS,
    "trainingExport": acc.TRAINING_EXPORT,
}


@dataclass(frozen=True)
class AuthConfig:
    mode: str = "password"  # password | proxy
    proxy_addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    proxy_user_header: str = "X-Forwarded-User"
    limit_per_account: int = 5
    limit_per_address: int = 30
    window_s: float = 900.0
    probe_token: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthConfig:
        env = os.environ if env is None else env
        mode = (env.get("AUTH_MODE") or "password").strip().lower()
        if mode not in ("password", "proxy"):
            raise ConfigError(f"AUTH_MODE={mode!r} is not known; use password (the default) or proxy.")
        networks = parse_networks(env.get("AUTH_PROXY_ADDRESSES", ""))
        if mode == "proxy" and not networks:
            raise ConfigError("AUTH_MODE=proxy needs AUTH_PROXY_ADDRESSES: the reverse proxy's address(es).")
        header = (env.get("AUTH_PROXY_USER_HEADER") or cls.proxy_user_header).strip()
        if not header.replace("-", "").isalnum():
            raise ConfigError(f"AUTH_PROXY_USER_HEADER={header!r} is not an HTTP header name.")
        probe_token = read_secret(env, "ISLETNET_PROBE_TOKEN")
        if probe_token and len(probe_token) < 22:
            raise ConfigError("ISLETNET_PROBE_TOKEN is too short; use at least 128 random bits (32 hex digits).")
        return cls(
            mode=mode, proxy_addresses=networks, proxy_user_header=header,
            limit_per_account=int(read_number(env, "LOGIN_LIMIT_PER_ACCOUNT", cls.limit_per_account, 1)),
            limit_per_address=int(read_number(env, "LOGIN_LIMIT_PER_ADDRESS", cls.limit_per_address, 1)),
            window_s=read_number(env, "LOGIN_WINDOW_SECONDS", cls.window_s, 1),
            probe_token=probe_token,
        )  # fmt: skip


def parse_networks(raw: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in raw.replace(";", ",").split(","):
        if item.strip():
            try:
                networks.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"AUTH_PROXY_ADDRESSES: {item.strip()!r} is not an IP address or network.") from None
    return tuple(networks)


def from_trusted_proxy(address: str | None, networks: tuple[Any, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    return any(ip in network for network in networks)


def _hostname(netloc: str) -> str:
    return (urlsplit(f"//{netloc.strip()}").hostname or "") if netloc else ""


def same_origin(origin: str | None, hosts: Iterable[str]) -> bool:
    """No Origin (not a browser's cross-site request), or one whose host name is one of ours.
    Ports are not compared: the proxies in front pass `Host` without the public port."""
    if not origin:
        return True
    return (urlsplit(origin).hostname or "") in {_hostname(host) for host in hosts} - {""}


def csrf_ok(principal: Principal, method: str, header_token: str | None, origin: str | None, *hosts: str) -> bool:
    """A state-changing request with a session cookie needs the session's CSRF token and, when the
    browser sends an Origin, one whose host is ours."""
    if principal.via != "session" or method in SAFE_METHODS:
        return True
    if not same_origin(origin, hosts):
        return False
    expected = principal.csrf_token or ""
    return bool(header_token) and hmac.compare_digest(expected.encode(), (header_token or "").encode())


# -- request plumbing -------------------------------------------------------------------------------


def accounts() -> Accounts:
    return current_app.extensions["isletnet.accounts"]


def settings() -> AuthConfig:
    return current_app.extensions["isletnet.auth"]


def principal() -> Principal:
    """The caller of this request (set by the authorisation hook)."""
    found = g.get("principal")
    if found is None:  # a route reached without the hook: never serve it
        raise ApiError(401, SIGN_IN_NEEDED)
    return found


def _secure_request() -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "")
    return request.is_secure or "https" in [part.strip().lower() for part in forwarded.split(",")]


def _authenticate() -> Principal | None:
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "The Authorization header must be 'Bearer <token>'.", _challenge())
        found = accounts().token_principal(token.strip())
        if found is None:
            raise ApiError(401, "The API token is unknown, revoked, or its account is disabled.", _challenge())
        return found
    config = settings()
    if config.mode == "proxy":
        user = request.headers.get(config.proxy_user_header, "").strip()
        if user and from_trusted_proxy(request.remote_addr, config.proxy_addresses):
            found = accounts().principal_for_user(user, "proxy")
            if found is None:
                log.warning("proxy sign-on refused: no enabled account %r", user[:64])
                raise ApiError(403, "Your sign-on name has no enabled IsletNet account; ask an administrator.")
            return found
        if user:
            log.warning("ignored %s from %s: not a trusted proxy", config.proxy_user_header, request.remote_addr)
    session_id = request.cookies.get(SESSION_COOKIE)
    return accounts().session_principal(session_id) if session_id else None


def _our_hosts() -> list[str]:
    """The host names this request was addressed to: Host, and what the proxies in front saw."""
    forwarded = request.headers.get("X-Forwarded-Host", "")
    return [request.host, *(part.strip() for part in forwarded.split(","))]


def _challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Bearer realm="isletnet"'}


def _operation_index(spec: Mapping[str, Any]) -> dict[tuple[str, str], str | None]:
    """(Flask rule, method) -> the permission it needs (None: public), from the secured document."""
    index = {}
    for path, operations in spec["paths"].items():
        rule = path.replace("{", "<").replace("}", ">")
        for method, operation in operations.items():
            index[(rule, method.upper())] = operation.get("x-permission")
    return index


def install(app: Flask, spec: Mapping[str, Any], accounts_store: Accounts, config: AuthConfig) -> None:
    """Register the auth routes' hook: every `/api` request is authorised before its view runs."""
    app.extensions["isletnet.accounts"] = accounts_store
    app.extensions["isletnet.auth"] = config
    app.extensions["isletnet.spec"] = spec
    operations = _operation_index(spec)

    @app.before_request
    def _authorise() -> None:
        if request.url_rule is None or request.method == "OPTIONS":
            return  # 404 / 405 answer on their own
        if request.url_rule.rule == METRICS_RULE:
            return  # Prometheus' scrape, not part of the API (see the module docstring)
        method = "GET" if request.method == "HEAD" else request.method
        key = (request.url_rule.rule, method)
        if key in operations and operations[key] is None:
            return  # public: health, sign-in, sign-out, session
        needed = operations.get(key)
        if not app.extensions.get("isletnet.auth_ready"):  # the database was down at start
            prepare(config, accounts_store)
            app.extensions["isletnet.auth_ready"] = True
        found = _authenticate()
        if found is None:
            raise ApiError(401, SIGN_IN_NEEDED, _challenge())
        if not csrf_ok(found, request.method, request.headers.get(CSRF_HEADER), request.headers.get("Origin"),
                       *_our_hosts()):
            raise ApiError(403, "The request lacks this session's CSRF token (X-CSRF-Token); reload the page.")
        if needed is None:
            log.error("route %s %s has no declared permission; refused", method, request.url_rule.rule)
            raise ApiError(403, "This operation is not open to anyone.")
        if not found.may(needed):
            raise ApiError(403, f"Your account ({found.role}) may not do this; it needs the permission {needed}.")
        g.principal = found


# -- teams ----------------------------------------------------------------------------------------


def check_job_access(job: Job) -> None:
    """403 unless the caller is an admin or of the team that owns the job."""
    caller = principal()
    if caller.is_admin:
        return
    if accounts().team_of_job(job.id) != caller.team:
        raise ApiError(403, f"Job {job.id} belongs to another team.")


def record_job_owner(job_id: str) -> None:
    accounts().assign_job(job_id, principal())


def visible_jobs(limit: int, offset: int, state: str | None, include_synthetic: bool,
                 list_all: Any) -> list[Job]:
    """The job list the caller may see: all of them for an admin, the team's otherwise."""
    caller = principal()
    if caller.is_admin:
        return list_all(limit=limit, offset=offset, state=state, include_synthetic=include_synthetic)
    return accounts().team_jobs(caller.team, limit, offset, state, include_synthetic)


# -- sign-in routes -------------------------------------------------------------------------------


def _client_address() -> str:
    return request.remote_addr or "unknown"


def _check_rate(username: str, address: str) -> None:
    config = settings()
    for column, value, limit in (("username", username, config.limit_per_account),
                                 ("address", address, config.limit_per_address)):
        wait = acc.retry_after_s(accounts().failure_ages(column, value, config.window_s), limit, config.window_s)
        if wait is not None:
            log.warning("login refused (too many failures for %s %s) from %s", column, username[:64], address)
            raise ApiError(429, f"Too many failed sign-ins; try again in {wait} seconds.", {"Retry-After": str(wait)})


def _session_body(found: Principal, csrf: str | None) -> dict[str, Any]:
    return {**found.to_dict(), "csrf_token": csrf}


@blueprint.post("/login")
def login() -> Response:
    body = request.get_json(silent=True) if request.is_json else request.form
    if not isinstance(body, Mapping):
        raise ApiError(400, "Send the user name and password as JSON {\"username\": ..., \"password\": ...}.")
    username = str(body.get("username") or "").strip().lower()[:64]
    password = str(body.get("password") or "")
    if not username or not password:
        raise ApiError(400, "Give both a user name and a password.")
    if not same_origin(request.headers.get("Origin"), _our_hosts()):
        raise ApiError(403, "Sign-in from another site is refused.")
    address = _client_address()
    _check_rate(username, address)
    account = accounts().password_hash_of(username)
    # Verified even for an unknown account (against a dummy hash): the same time and answer.
    verified = acc.verify_password(account[1] if account else None, password)
    if account is None or not verified:
        accounts().record_login(username, address, False)
        log.warning("login failed for %r from %s", username, address)
        raise ApiError(401, LOGIN_FAILED)
    accounts().record_login(username, address, True)
    session_id, csrf = accounts().create_session(account[0], replaces=request.cookies.get(SESSION_COOKIE))
    found = accounts().session_principal(session_id)
    assert found is not None  # noqa: S101 - just created
    log.info("login of %r from %s", username, address)
    response = jsonify(_session_body(found, csrf))
    response.set_cookie(SESSION_COOKIE, session_id, max_age=acc.SESSION_LIFETIME_S, httponly=True,
                        samesite="Strict", secure=_secure_request(), path="/")
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.post("/logout")
def logout() -> Response:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        accounts().end_session(session_id)
    response = Response(status=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict", secure=_secure_request())
    return response


@blueprint.get("/session")
def current_session() -> Response:
    found = _authenticate()
    if found is None:
        raise ApiError(401, SIGN_IN_NEEDED)
    response = jsonify(_session_body(found, found.csrf_token))
    response.headers["Cache-Control"] = "no-store"
    return response


# -- OpenAPI ----------------------------------------------------------------------------------------

SECURITY_SCHEMES: dict[str, Any] = {
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE,
                      "description": "Set by POST /api/auth/login. Requests that change state also need the "
                                     f"session's CSRF token in the {CSRF_HEADER} header."},
    "bearerToken": {"type": "http", "scheme": "bearer",
                    "description": "An API token (`isletops tokens create`), scoped; no CSRF token needed."},
}

_SESSION = {"type": "object", "properties": {
    "username": {"type": "string"}, "role": {"type": "string", "enum": list(acc.ROLES)}, "team": {"type": "string"},
    "permissions": {"type": "array", "items": {"type": "string"}}, "via": {"type": "string"},
    "csrf_token": {"type": "string", "nullable": True}}}

OPENAPI_PATHS: dict[str, Any] = {
    "/api/auth/login": {"post": {
        "summary": "Sign in; sets the session cookie",
        "operationId": "login",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["username", "password"],
            "properties": {"username": {"type": "string"}, "password": {"type": "string", "format": "password"}}}}}},
        "responses": {"200": json_response("Signed in.", _SESSION), "400": error("User name or password missing."),
                      "401": error("Wrong user name or password (the same answer for both)."),
                      "403": error("Sign-in from another site."),
                      "429": error("Too many failed sign-ins; see Retry-After.")},
    }},
    "/api/auth/logout": {"post": {
        "summary": "Sign out; ends the session", "operationId": "logout",
        "responses": {"204": {"description": "Signed out."}},
    }},
    "/api/auth/session": {"get": {
        "summary": "Who is signed in, and the session's CSRF token", "operationId": "currentSession",
        "responses": {"200": json_response("The signed-in account.", _SESSION), "401": error("Not signed in.")},
    }},
}


def secure_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """Add the security schemes and each operation's `security` (with 401/403) to the document."""
    spec["components"] = {**spec["components"], "securitySchemes": SECURITY_SCHEMES}
    spec["security"] = [{"sessionCookie": []}, {"bearerToken": []}]
    for operations in spec["paths"].values():
        for operation in operations.values():
            name = operation.get("operationId", "")
            if name in PUBLIC_OPERATIONS:
                operation["security"] = []
                continue
            permission = OPERATION_PERMISSIONS.get(name) or operation.get("x-permission")
            if permission not in acc.ALL_PERMISSIONS:
                raise RuntimeError(f"operation {name} declares no known permission (services.backend.auth)")
            operation["security"] = [{"sessionCookie": []}, {"bearerToken": []}]
            operation["x-permission"] = permission
            operation["responses"].setdefault("401", error("No valid session or API token."))
            operation["responses"].setdefault("403", error("Signed in, but not allowed (role, scope, team or CSRF)."))
    return spec


def prepare(config: AuthConfig, store: Accounts) -> None:
    """At start: the schema, and the probe account's token from $ISLETNET_PROBE_TOKEN."""
    store.ensure_schema()
    if config.probe_token:
        store.ensure_probe_token(config.probe_token)
