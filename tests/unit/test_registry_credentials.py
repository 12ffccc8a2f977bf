"""Registry credentials: where they come from, what a 401 challenge says, and that the password
stays out of repr() (and so out of logs and tracebacks)."""

import pytest

from isletops.errors import RegistryError
from isletops.registry import (
    PASSWORD_ENV_VAR,
    USERNAME_ENV_VAR,
    RegistryCredentials,
    credentials_for_registry,
    credentials_from_env,
    parse_challenge,
)


def test_challenges_are_parsed_like_docker_does():
    assert parse_challenge(
        'Bearer realm="https://auth.example.org/token",service="registry.example.org",'
        'scope="repository:team/isletnet-backend:pull,push"'
    ) == ("bearer", {
        "realm": "https://auth.example.org/token",
        "service": "registry.example.org",
        "scope": "repository:team/isletnet-backend:pull,push",
    })
    assert parse_challenge('Basic realm="isletops-test"') == ("basic", {"realm": "isletops-test"})
    assert parse_challenge("bearer realm=http://127.0.0.1:1/token, service=reg") == (
        "bearer", {"realm": "http://127.0.0.1:1/token", "service": "reg"}
    )
    assert parse_challenge("") == ("", {})


def test_credentials_come_from_config_user_and_env_password():
    env = {PASSWORD_ENV_VAR: "s3cret", USERNAME_ENV_VAR: "from-env"}
    assert credentials_from_env("deployer", env) == RegistryCredentials("deployer", "s3cret")
    assert credentials_from_env("", env) == RegistryCredentials("from-env", "s3cret")
    assert credentials_from_env("", {}) is None


@pytest.mark.parametrize(("username", "env", "says"), [
    ("deployer", {}, "is empty"),
    ("", {PASSWORD_ENV_VAR: "s3cret"}, "no registry user is configured"),
])
def test_half_given_credentials_are_an_error(username, env, says):
    with pytest.raises(RegistryError, match=says) as excinfo:
        credentials_from_env(username, env)
    assert "s3cret" not in str(excinfo.value)


def test_password_is_not_in_repr_and_basic_header_is_standard():
    credentials = RegistryCredentials("deployer", "s3cret")
    assert "s3cret" not in repr(credentials) and "deployer" in repr(credentials)
    assert credentials.basic_authorization() == "Basic ZGVwbG95ZXI6czNjcmV0"  # base64("deployer:s3cret")


def test_credentials_go_only_to_the_sites_registry_host():
    site = RegistryCredentials("deployer", "s3cret")
    assert credentials_for_registry("http://127.0.0.1:1/prefix", "127.0.0.1:1", site) == site
    assert credentials_for_registry("127.0.0.1:1", "127.0.0.1:2", site) is None
    assert credentials_for_registry("127.0.0.1:1", "127.0.0.1:1", None) is None
    assert credentials_for_registry("", "127.0.0.1:2", site) == site  # no site registry: --registry is the home
