import dataclasses
import stat
from pathlib import Path

import pytest

from isletops.config import ensure_env_file, load_config, parse_config, read_env_file
from isletops.errors import ConfigError


def test_missing_default_config_gives_a_local_demo_instance(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ISLETOPS_CONFIG", raising=False)
    config = load_config()
    instance = config.instance()
    assert instance.name == "demo"
    assert instance.project_name == "demo"


def test_explicit_missing_config_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yml")


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "isletops.yml"
    path.write_text("registry: x\ninstances:\n  prod: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_config(path)


def test_two_instances_with_their_own_folders_and_ports(tmp_path):
    path = tmp_path / "isletops.yml"
    path.write_text(
        "registry: 127.0.0.1:5000\ninstances_root: inst\ninstances:\n"
        "  prod: {http_port: 8080, api_port: 8081}\n  staging: {http_port: 8090, api_port: 8091}\n"
    )
    config = load_config(path)
    assert config.instance("prod").directory == tmp_path / "inst" / "prod"
    assert config.instance("staging").api_url == "http://127.0.0.1:8090"  # /api/ through the public port
    assert not config.instance("staging").publish_api_port
    assert config.default_instance == "prod"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"instances": {"Prod": {}}}, "not a valid instance name"),
        ({"instances": {"prod": {"http_port": "eighty"}}}, "http_port must be a whole number"),
        ({"instances": {"prod": {"colour": "red"}}}, "unknown setting"),
        ({"nonsense": 1}, "unknown setting"),
        ({"instances": {"a": {"http_port": 1, "api_port": 2}, "b": {"http_port": 2, "api_port": 3}}}, "port 2"),
        ({"mail": {"security": "tls9"}}, "mail.security"),
        ({"instances": {"prod": {"engine": "nomad"}}},
         r"instances.prod.engine must be one of compose, kubernetes, swarm, not 'nomad'\."),
        ({"instances": {"prod": {"health_failed_checks": 0}}}, "health_failed_checks must be 1 or more"),
        ({"instances": {"prod": {"proxy_timeout_s": 0}}}, "proxy_timeout_s must be at least 1 second"),
        ({"instances": {"prod": {"proxy_timeout_s": "15m"}}}, "proxy_timeout_s must be a whole number"),
        ({"instances": {"prod": {"auth": "ldap"}}}, r"instances.prod.auth must be password or proxy, not 'ldap'\."),
        ({"instances": {"prod": {"auth": "proxy"}}}, "auth is proxy but auth_proxy_addresses is empty"),
        ({"instances": {"prod": {"auth": "proxy", "auth_proxy_addresses": ["sso.example"]}}},
         r"auth_proxy_addresses: 'sso.example' is not an IP address or network\."),
        ({"instances": {"prod": {"auth_proxy_header": "X User"}}}, "is not an HTTP header name"),
    ],
)
def test_invalid_settings_are_named(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, Path("isletops.yml"))


def test_env_file_generated_0600_and_secrets_kept_on_rerun(tmp_path):
    config = parse_config({"instances_root": str(tmp_path), "instances": {"prod": {}}}, None)
    instance = config.instance("prod")
    first = ensure_env_file(instance, {"TAG": "2026-11-23_01"})
    assert stat.S_IMODE(instance.env_file.stat().st_mode) == 0o600
    assert len(first["S3_SECRET_KEY"]) >= 32
    assert len(first["ISLETNET_PROBE_TOKEN"]) >= 32  # the probe account's token: 160 random bits
    second = ensure_env_file(instance, {"TAG": "2026-11-23_01"})
    assert second["S3_SECRET_KEY"] == first["S3_SECRET_KEY"]
    assert read_env_file(instance.env_file)["TAG"] == "2026-11-23_01"


def test_engine_defaults_to_compose_and_an_unknown_one_is_refused_where_it_is_picked():
    from isletops.engines import engine_for
    from isletops.engines.compose import ComposeEngine

    config = parse_config({"instances": {"prod": {}}}, Path("isletops.yml"))
    assert config.instance("prod").engine == "compose"
    assert isinstance(engine_for(config, config.instance("prod")), ComposeEngine)
    odd = dataclasses.replace(config.instance("prod"), engine="nomad")
    with pytest.raises(ConfigError, match="asks for engine 'nomad', which isletops does not have"):
        engine_for(config, odd)


def test_proxy_sign_on_reaches_the_env_file_as_the_backend_reads_it(tmp_path):
    from isletops.stack import managed_env

    config = parse_config({"instances_root": str(tmp_path), "instances": {"prod": {
        "auth": "proxy", "auth_proxy_addresses": ["10.0.0.5", "192.168.7.0/24"],
        "auth_proxy_header": "X-Remote-User"}}})
    env = managed_env(config.instance("prod"), "2026-11-23_01")
    assert env["AUTH_MODE"] == "proxy"
    assert env["AUTH_PROXY_ADDRESSES"] == "10.0.0.5,192.168.7.0/24"
    assert env["AUTH_PROXY_USER_HEADER"] == "X-Remote-User"
    assert managed_env(parse_config({"instances": {"x": {}}}).instance("x"), "t")["AUTH_MODE"] == "password"
