"""The pure parts of accounts and authorisation, without servers: password hashing, tokens,
scopes, the login rate limit, CSRF and the auth settings."""

from __future__ import annotations

import pytest

from services.backend import auth
from services.common import accounts as acc
from services.common.settings import ConfigError


def principal(via: str = "session", role: str = "technician", csrf: str | None = "t" * 43) -> acc.Principal:
    return acc.Principal(1, "u", role, "lab", acc.PERMISSIONS[role], via, csrf_token=csrf)


def test_passwords_are_argon2id_hashes_and_verify_only_the_right_password() -> None:
    hashed = acc.hash_password("s3cret words")
    assert hashed.startswith("$argon2id$") and "s3cret" not in hashed
    assert acc.verify_password(hashed, "s3cret words")
    assert not acc.verify_password(hashed, "s3cret word")
    assert not acc.verify_password(None, "anything")  # unknown account
    assert not acc.verify_password("not a hash", "anything")
    assert acc.hash_password("same") != acc.hash_password("same")  # salted


def test_tokens_are_random_256_bits_and_stored_as_their_digest() -> None:
    token = acc.new_api_token()
    assert token.startswith("isk_") and len(token) >= 4 + 43
    assert acc.new_api_token() != token
    assert acc.digest(token) == acc.digest(token) != token
    assert len(acc.digest(token)) == 64


def test_a_tokens_permissions_are_its_scopes_within_its_owners_role() -> None:
    assert acc.token_permissions("technician", ["probe"]) == {"jobs:read", "jobs:submit", "queue:read"}
    assert acc.token_permissions("technician", ["statistics", "jobs:read"]) == {"jobs:read"}
    assert acc.token_permissions("admin", ["statistics"]) == {"statistics"}
    assert acc.token_permissions("nobody", ["jobs:read"]) == frozenset()


@pytest.mark.parametrize("bad", [[], [""], ["jobs:delete"], ["probe", "root"]])
def test_unknown_or_missing_scopes_are_refused(bad: list[str]) -> None:
    with pytest.raises(acc.AccountError, match="scope"):
        acc.check_scopes(bad)


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "ünï", "a/b"])
def test_bad_user_names_are_refused(bad: str) -> None:
    with pytest.raises(acc.AccountError, match="not a valid user name"):
        acc.check_username(bad)


def test_roles_are_technician_and_admin() -> None:
    assert acc.check_role("admin") == "admin"
    with pytest.raises(acc.AccountError, match="Unknown role"):
        acc.check_role("root")


def test_rate_limit_waits_until_enough_failures_left_the_window() -> None:
    assert acc.retry_after_s([], 3, 900) is None
    assert acc.retry_after_s([10, 20], 3, 900) is None
    assert acc.retry_after_s([10, 20, 1000], 3, 900) is None  # one is outside the window
    assert acc.retry_after_s([10, 20, 30], 3, 900) == 870  # the oldest leaves in 870 s
    assert acc.retry_after_s([10, 20, 30, 40], 3, 900) == 870  # the third most recent counts
    assert acc.retry_after_s([899.9, 1, 2], 3, 900) == 1


def test_csrf_needs_the_sessions_token_for_state_changes_only() -> None:
    session = principal()
    assert auth.csrf_ok(session, "GET", None, None, "h")
    assert not auth.csrf_ok(session, "POST", None, None, "h")
    assert not auth.csrf_ok(session, "POST", "x" * 43, None, "h")
    assert auth.csrf_ok(session, "POST", "t" * 43, None, "h")
    assert auth.csrf_ok(session, "POST", "t" * 43, "https://h", "h")
    assert not auth.csrf_ok(session, "POST", "t" * 43, "https://evil.example", "h")
    assert auth.csrf_ok(session, "POST", "t" * 43, "http://h:8080", "h")  # the proxies drop the port
    assert auth.csrf_ok(session, "POST", "t" * 43, "https://islets.example", "backend:8000", "islets.example")
    assert not auth.csrf_ok(session, "POST", "t" * 43, "https://h.evil.example", "h")
    assert not auth.csrf_ok(session, "POST", "t" * 43, "null", "h")
    assert not auth.csrf_ok(principal(csrf=None), "POST", "", None, "h")
    assert auth.csrf_ok(principal(via="token", csrf=None), "POST", None, None, "h")


def test_auth_settings_default_to_passwords_and_check_the_proxy_keys() -> None:
    assert auth.AuthConfig.from_env({}).mode == "password"
    proxy = auth.AuthConfig.from_env({"AUTH_MODE": "proxy", "AUTH_PROXY_ADDRESSES": "10.0.0.5, 192.168.0.0/24"})
    assert auth.from_trusted_proxy("192.168.0.77", proxy.proxy_addresses)
    assert not auth.from_trusted_proxy("10.0.0.6", proxy.proxy_addresses)
    assert not auth.from_trusted_proxy(None, proxy.proxy_addresses)
    with pytest.raises(ConfigError, match="AUTH_MODE=proxy needs AUTH_PROXY_ADDRESSES"):
        auth.AuthConfig.from_env({"AUTH_MODE": "proxy"})
    with pytest.raises(ConfigError, match="not an IP address"):
        auth.AuthConfig.from_env({"AUTH_MODE": "proxy", "AUTH_PROXY_ADDRESSES": "proxy.example"})
    with pytest.raises(ConfigError, match="AUTH_MODE='ldap'"):
        auth.AuthConfig.from_env({"AUTH_MODE": "ldap"})
    with pytest.raises(ConfigError, match="not an HTTP header"):
        auth.AuthConfig.from_env({"AUTH_PROXY_USER_HEADER": "X User: x"})
    with pytest.raises(ConfigError, match="too short"):
        auth.AuthConfig.from_env({"ISLETNET_PROBE_TOKEN": "abc"})


def test_every_operation_needs_a_known_permission_or_is_public() -> None:
    spec = {"components": {}, "paths": {"/api/x": {"get": {"operationId": "mystery", "responses": {}}}}}
    with pytest.raises(RuntimeError, match="mystery declares no known permission"):
        auth.secure_spec(spec)
