"""Accounts of an IsletNet instance, kept in its PostgreSQL: teams, users (role, argon2id password
hash, disabled flag), browser sessions, API tokens, login attempts and which team owns a job.

Secrets are never stored: a password is kept as its argon2id hash (argon2-cffi); session ids and
API tokens are random (256 bits) and kept as their SHA-256 (enough for random values, and a
lookup by hash needs no scan). A disabled user's sessions and tokens stop working at once
because every lookup joins the user row and checks `disabled`.

Roles and what they may do (`PERMISSIONS`):

- `technician`: upload, see the team's jobs and their results, mark images for training.
- `admin`: every job, statistics, the training export, accounts.

An API token carries scopes; what it may do is its scopes' permissions *and* its owner's role's.
The `probe` scope is what the monitor's e2e probe and the deploy gate need.

The schema is created like the queue's (`CREATE ... IF NOT EXISTS` under an advisory lock), on
the connections of the job database (`services.common.database.JobDatabase`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg import sql

from services.common.errors import ServiceError
from services.common.jobs import Job

log = logging.getLogger(__name__)

ROLES = ("technician", "admin")
# Permissions (also the scopes a token may carry).
JOBS_READ = "jobs:read"
JOBS_SUBMIT = "jobs:submit"
QUEUE_READ = "queue:read"
STATISTICS = "statistics"
TRAINING_EXPORT = "training:export"
ACCOUNTS = "accounts"
ALL_PERMISSIONS = (JOBS_READ, JOBS_SUBMIT, QUEUE_READ, STATISTICS, TRAINING_EXPORT, ACCOUNTS)
PERMISSIONS: dict[str, frozenset[str]] = {
    "technician": frozenset({JOBS_READ, JOBS_SUBMIT, QUEUE_READ}),
    "admin": frozenset(ALL_PERMISSIONS),
}
# Scope names a token may be created with, and the permissions each grants.
SCOPES: dict[str, frozenset[str]] = {
    **{permission: frozenset({permission}) for permission in ALL_PERMISSIONS},
    "probe": frozenset({JOBS_READ, JOBS_SUBMIT, QUEUE_READ}),
}
PROBE_USER = "probe"
PROBE_TEAM = "monitoring"
PROBE_TOKEN_NAME = "probe"  # noqa: S105 - a name
DEFAULT_TEAM = "default"
TOKEN_PREFIX = "isk_"  # noqa: S105 - a prefix
SESSION_LIFETIME_S = 12 * 3600
_SCHEMA_LOCK_KEY = 0x15_1E_7_AC
_USERNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-@")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS teams (
    name       text PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS users (
    id            bigserial PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('technician', 'admin')),
    team          text NOT NULL REFERENCES teams (name),
    password_hash text,
    disabled      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    password_changed_at timestamptz
);
CREATE TABLE IF NOT EXISTS sessions (
    id_hash    text PRIMARY KEY,
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user_id);
CREATE TABLE IF NOT EXISTS api_tokens (
    id           bigserial PRIMARY KEY,
    user_id      bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         text NOT NULL,
    token_hash   text NOT NULL UNIQUE,
    scopes       text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS api_tokens_live_name ON api_tokens (user_id, name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS login_attempts (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL DEFAULT now(),
    username text NOT NULL,
    address  text NOT NULL,
    success  boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS login_attempts_user ON login_attempts (username, at);
CREATE INDEX IF NOT EXISTS login_attempts_address ON login_attempts (address, at);
CREATE TABLE IF NOT EXISTS job_teams (
    job_id  text PRIMARY KEY,  -- written just before the job row, so no foreign key
    team    text NOT NULL,
    user_id bigint REFERENCES users (id) ON DELETE SET NULL
);
CREATE INDEX IF NOT EXISTS job_teams_team ON job_teams (team);
"""

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
# Verified against when the account does not exist, so an unknown name takes as long as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class AccountError(ServiceError):
    """An account operation is not possible (unknown user, bad name, bad role or scope)."""


class Database(Protocol):
    def connection(self) -> AbstractContextManager[psycopg.Connection[dict[str, Any]]]: ...


@dataclass(frozen=True)
class Principal:
    """Who is making a request: the user, its role and team, and what it may do."""

    user_id: int
    username: str
    role: str
    team: str
    permissions: frozenset[str]
    via: str  # session | token | proxy
    csrf_token: str | None = None  # sessions only
    token_name: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    def to_dict(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role, "team": self.team,
                "permissions": sorted(self.permissions), "via": self.via}


# -- pure helpers (unit-tested) -------------------------------------------------------------------


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when `password` matches; a missing hash (unknown user, probe account) costs the same time."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_secret() -> str:
    """A random secret of 256 bits, URL-safe."""
    return secrets.token_urlsafe(32)


def new_api_token() -> str:
    return TOKEN_PREFIX + new_secret()


def digest(secret: str) -> str:
    """SHA-256 of a random secret (session id, API token): what the database keeps."""
    return hashlib.sha256(secret.encode()).hexdigest()


def check_username(username: str) -> str:
    name = (username or "").strip().lower()
    if not 1 <= len(name) <= 64 or not set(name) <= _USERNAME_CHARS:
        raise AccountError(f"{username[:64]!r} is not a valid user name; use 1-64 letters, digits, '.', '_', '-', '@'.")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise AccountError(f"Unknown role {role!r}; use {' or '.join(ROLES)}.")
    return role


def check_scopes(scopes: Iterable[str]) -> list[str]:
    chosen = sorted({scope.strip() for scope in scopes if scope.strip()})
    unknown = [scope for scope in chosen if scope not in SCOPES]
    if unknown or not chosen:
        raise AccountError(f"Unknown or missing token scope {', '.join(unknown) or '(none)'}; "
                           f"use one or more of {', '.join(SCOPES)}.")
    return chosen


def token_permissions(role: str, scopes: Sequence[str]) -> frozenset[str]:
    """What a token may do: its scopes' permissions, never more than its owner's role."""
    granted: set[str] = set()
    for scope in scopes:
        granted |= SCOPES.get(scope, frozenset())
    return frozenset(granted) & PERMISSIONS.get(role, frozenset())


def retry_after_s(failure_ages_s: Sequence[float], limit: int, window_s: float) -> int | None:
    """Seconds until another attempt is allowed, given the ages of recent failed attempts; None
    while fewer than `limit` failures fall inside the window."""
    inside = sorted(age for age in failure_ages_s if 0 <= age < window_s)
    if len(inside) < limit:
        return None
    # Allowed again once fewer than `limit` remain: when the limit-th most recent failure leaves.
    return max(1, math.ceil(window_s - inside[limit - 1]))


# -- storage ----------------------------------------------------------------------------------------


class Accounts:
    """Teams, users, sessions, tokens and login attempts in the instance's PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._schema_ready = False
        self._lock = threading.Lock()

    def connection(self) -> AbstractContextManager[psycopg.Connection[dict[str, Any]]]:
        if not self._schema_ready:
            self.ensure_schema()
        return self.database.connection()

    def ensure_schema(self) -> None:
        with self._lock:
            if self._schema_ready:
                return
            with self.database.connection() as conn:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK_KEY,))
                conn.execute(_SCHEMA)
            self._schema_ready = True

    # -- users ----------------------------------------------------------------------------------

    def add_user(self, username: str, role: str, team: str = DEFAULT_TEAM, password_hash: str | None = None) -> dict:
        name, role, team = check_username(username), check_role(role), check_username(team)
        with self.connection() as conn:
            conn.execute("INSERT INTO teams (name) VALUES (%s) ON CONFLICT DO NOTHING", (team,))
            row = conn.execute(
                """INSERT INTO users (username, role, team, password_hash, password_changed_at)
                   VALUES (%s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE now() END)
                   ON CONFLICT (username) DO NOTHING RETURNING id""",
                (name, role, team, password_hash, password_hash),
            ).fetchone()
        if row is None:
            raise AccountError(f"There is already a user {name!r}; choose another name or reset its password.")
        log.info("account %s added (role %s, team %s)", name, role, team)
        return {"username": name, "role": role, "team": team}

    def list_users(self) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return conn.execute(
                """SELECT username, role, team, disabled, created_at, password_hash IS NOT NULL AS has_password,
                          (SELECT count(*) FROM api_tokens t WHERE t.user_id = u.id AND t.revoked_at IS NULL)
                              AS tokens
                   FROM users u ORDER BY username"""
            ).fetchall()

    def set_disabled(self, username: str, disabled: bool = True) -> None:
        """Disable (or enable) an account; its sessions end at once."""
        name = check_username(username)
        with self.connection() as conn:
            row = conn.execute("UPDATE users SET disabled = %s WHERE username = %s RETURNING id",
                               (disabled, name)).fetchone()
            if row is None:
                raise AccountError(f"There is no user {name!r}; `isletops users list` shows them.")
            if disabled:
                conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
        log.info("account %s %s", name, "disabled" if disabled else "enabled")

    def set_password_hash(self, username: str, password_hash: str) -> None:
        """New password; every session of the account ends."""
        name = check_username(username)
        with self.connection() as conn:
            row = conn.execute(
                "UPDATE users SET password_hash = %s, password_changed_at = now() WHERE username = %s RETURNING id",
                (password_hash, name),
            ).fetchone()
            if row is None:
                raise AccountError(f"There is no user {name!r}; `isletops users list` shows them.")
            conn.execute("DELETE FROM sessions WHERE user_id = %s", (row["id"],))
        log.info("password of account %s reset", name)

    def password_hash_of(self, username: str) -> tuple[int, str | None] | None:
        """(user id, hash) of an enabled account, or None."""
        with self.connection() as conn:
            row = conn.execute("SELECT id, password_hash FROM users WHERE username = %s AND NOT disabled",
                               (username.strip().lower(),)).fetchone()
        return (row["id"], row["password_hash"]) if row else None

    def principal_for_user(self, username: str, via: str) -> Principal | None:
        """The enabled account `username` (proxy sign-on), or None."""
        with self.connection() as conn:
            row = conn.execute("SELECT id, username, role, team FROM users WHERE username = %s AND NOT disabled",
                               (username.strip().lower(),)).fetchone()
        if row is None:
            return None
        return Principal(row["id"], row["username"], row["role"], row["team"], PERMISSIONS[row["role"]], via)

    # -- sessions -------------------------------------------------------------------------------

    def create_session(self, user_id: int, replaces: str | None = None) -> tuple[str, str]:
        """A new session (id, csrf token) for the user; the session id in `replaces` ends."""
        session_id, csrf = new_secret(), new_secret()
        with self.connection() as conn:
            if replaces:
                conn.execute("DELETE FROM sessions WHERE id_hash = %s", (digest(replaces),))
            conn.execute("DELETE FROM sessions WHERE expires_at < now()")
            conn.execute(
                """INSERT INTO sessions (id_hash, user_id, csrf_token, expires_at)
                   VALUES (%s, %s, %s, now() + make_interval(secs => %s))""",
                (digest(session_id), user_id, csrf, SESSION_LIFETIME_S),
            )
        return session_id, csrf

    def session_principal(self, session_id: str) -> Principal | None:
        with self.connection() as conn:
            row = conn.execute(
                """SELECT u.id, u.username, u.role, u.team, s.csrf_token
                   FROM sessions s JOIN users u ON u.id = s.user_id
                   WHERE s.id_hash = %s AND s.expires_at > now() AND NOT u.disabled""",
                (digest(session_id),),
            ).fetchone()
        if row is None:
            return None
        return Principal(row["id"], row["username"], row["role"], row["team"], PERMISSIONS[row["role"]], "session",
                         csrf_token=row["csrf_token"])

    def end_session(self, session_id: str) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM sessions WHERE id_hash = %s", (digest(session_id),))

    # -- tokens ---------------------------------------------------------------------------------

    def add_token(self, username: str, name: str, scopes: Iterable[str], token_hash: str) -> dict[str, Any]:
        """Store a token (by its hash) for `username`."""
        user, chosen = check_username(username), check_scopes(scopes)
        label = (name or "").strip()
        if not 1 <= len(label) <= 64:
            raise AccountError("A token needs a name of 1-64 characters saying what uses it.")
        with self.connection() as conn:
            owner = conn.execute("SELECT id FROM users WHERE username = %s", (user,)).fetchone()
            if owner is None:
                raise AccountError(f"There is no user {user!r}; `isletops users list` shows them.")
            row = conn.execute(
                """INSERT INTO api_tokens (user_id, name, token_hash, scopes) VALUES (%s, %s, %s, %s)
                   ON CONFLICT DO NOTHING RETURNING id""",
                (owner["id"], label, token_hash, chosen),
            ).fetchone()
        if row is None:
            raise AccountError(f"User {user!r} already has a token named {label!r}; revoke it or choose another name.")
        log.info("token %r of %s created (scopes %s)", label, user, ",".join(chosen))
        return {"id": row["id"], "username": user, "name": label, "scopes": chosen}

    def list_tokens(self, username: str | None = None) -> list[dict[str, Any]]:
        with self.connection() as conn:
            return conn.execute(
                """SELECT t.id, u.username, t.name, t.scopes, t.created_at, t.last_used_at, t.revoked_at
                   FROM api_tokens t JOIN users u ON u.id = t.user_id
                   WHERE %(user)s::text IS NULL OR u.username = %(user)s ORDER BY u.username, t.name, t.id""",
                {"user": check_username(username) if username else None},
            ).fetchall()

    def revoke_token(self, username: str, name: str) -> None:
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE api_tokens t SET revoked_at = now() FROM users u
                   WHERE u.id = t.user_id AND u.username = %s AND t.name = %s AND t.revoked_at IS NULL
                   RETURNING t.id""",
                (check_username(username), name),
            ).fetchone()
        if row is None:
            raise AccountError(
                f"User {username!r} has no live token named {name!r}; `isletops tokens list` shows them."
            )
        log.info("token %r of %s revoked", name, username)

    def token_principal(self, token: str) -> Principal | None:
        with self.connection() as conn:
            row = conn.execute(
                """UPDATE api_tokens t SET last_used_at = now() FROM users u
                   WHERE u.id = t.user_id AND t.token_hash = %s AND t.revoked_at IS NULL AND NOT u.disabled
                   RETURNING u.id, u.username, u.role, u.team, t.scopes, t.name""",
                (digest(token),),
            ).fetchone()
        if row is None:
            return None
        return Principal(row["id"], row["username"], row["role"], row["team"],
                         token_permissions(row["role"], row["scopes"]), "token", token_name=row["name"])

    def ensure_probe_token(self, token: str) -> None:
        """The monitoring account `probe` (technician of team `monitoring`, no password) with exactly
        one live token, `probe`, whose hash is that of `token` (from $ISLETNET_PROBE_TOKEN): a new
        value in the env file rotates it at the next backend start."""
        token_hash = digest(token)
        with self.connection() as conn:
            conn.execute("INSERT INTO teams (name) VALUES (%s) ON CONFLICT DO NOTHING", (PROBE_TEAM,))
            user = conn.execute(
                """INSERT INTO users (username, role, team) VALUES (%s, 'technician', %s)
                   ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id""",
                (PROBE_USER, PROBE_TEAM),
            ).fetchone()
            live = conn.execute(
                "SELECT token_hash FROM api_tokens WHERE user_id = %s AND name = %s AND revoked_at IS NULL",
                (user["id"], PROBE_TOKEN_NAME),
            ).fetchone()
            if live and live["token_hash"] == token_hash:
                return
            conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND name = %s "
                         "AND revoked_at IS NULL", (user["id"], PROBE_TOKEN_NAME))
            conn.execute("INSERT INTO api_tokens (user_id, name, token_hash, scopes) VALUES (%s, %s, %s, %s)",
                         (user["id"], PROBE_TOKEN_NAME, token_hash, ["probe"]))
        log.info("probe token %s", "rotated" if live else "created")

    # -- login attempts -------------------------------------------------------------------------

    def record_login(self, username: str, address: str, success: bool) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO login_attempts (username, address, success) VALUES (%s, %s, %s)",
                         (username[:64], address[:64], success))
            conn.execute("DELETE FROM login_attempts WHERE at < now() - interval '1 day'")

    def failure_ages(self, column: str, value: str, window_s: float) -> list[float]:
        """Ages in seconds of the failed logins for one account (`username`) or address (`address`)
        within the window, since the last success of that account or address."""
        if column not in ("username", "address"):
            raise AccountError(f"Unknown login attempt column {column!r}.")
        with self.connection() as conn:
            query = sql.SQL(
                """SELECT extract(epoch FROM now() - at)::float AS age FROM login_attempts
                    WHERE {column} = %(value)s AND NOT success AND at > now() - make_interval(secs => %(window)s)
                    AND at > coalesce((SELECT max(at) FROM login_attempts
                                       WHERE {column} = %(value)s AND success), '-infinity')"""
            ).format(column=sql.Identifier(column))
            rows = conn.execute(
                query,
                {"value": value[:64], "window": window_s},
            ).fetchall()
        return [row["age"] for row in rows]

    # -- jobs of a team ---------------------------------------------------------------------------

    def assign_job(self, job_id: str, principal: Principal) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO job_teams (job_id, team, user_id) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                         (job_id, principal.team, principal.user_id))

    def team_of_job(self, job_id: str) -> str | None:
        with self.connection() as conn:
            row = conn.execute("SELECT team FROM job_teams WHERE job_id = %s", (job_id,)).fetchone()
        return row["team"] if row else None

    def team_jobs(self, team: str, limit: int, offset: int, state: str | None, include_synthetic: bool) -> list[Job]:
        """The team's jobs, newest first (the same order and filters as the job list)."""
        with self.connection() as conn:
            rows = conn.execute(
                """SELECT j.* FROM jobs j JOIN job_teams o ON o.job_id = j.id
                   WHERE o.team = %(team)s AND (%(state)s::text IS NULL OR j.state = %(state)s)
                   AND (%(synthetic)s OR NOT j.synthetic)
                   ORDER BY j.created_at DESC, j.id LIMIT %(limit)s OFFSET %(offset)s""",
                {"team": team, "state": state, "synthetic": include_synthetic, "limit": limit, "offset": offset},
            ).fetchall()
        return [Job.from_row(row) for row in rows]

