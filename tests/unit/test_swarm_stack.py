"""The Swarm stack file: structure rendered from the compose templates, checked variables, secrets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.config import InstanceConfig, SwarmConfig, parse_config
from isletops.errors import ConfigError
from isletops.swarm_stack import interpolate, stack_for_instance

ENV = (
    "TAG=2026-11-23_01\nS3_ACCESS_KEY=ak\nS3_SECRET_KEY=sk\nDB_PASSWORD=pw$1\nREPOSITORY=10.0.0.1:5000/\n"
    "ISLETNET_PROBE_TOKEN=0123456789abcdef0123456789abcdef\n"
)


def make_instance(tmp_path: Path, env: str = ENV, **swarm: object) -> InstanceConfig:
    directory = tmp_path / "prod"
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".env").write_text(env)
    return InstanceConfig(name="prod", directory=directory, http_port=18080, swarm=SwarmConfig(**swarm))  # type: ignore[arg-type]


def services(instance: InstanceConfig, **kwargs: object) -> dict:
    return stack_for_instance(instance, **kwargs).document["services"]  # type: ignore[arg-type]


def test_version_update_config_and_health(tmp_path: Path) -> None:
    rendered = stack_for_instance(make_instance(tmp_path))
    assert rendered.document["version"] == "3.8"
    for name, spec in rendered.document["services"].items():
        update = spec["deploy"]["update_config"]
        assert update["failure_action"] == "pause"
        assert int(update["monitor"].rstrip("s")) >= 10
        expected = "stop-first" if name in ("queue", "storage", "edge") else "start-first"
        assert update["order"] == expected, name
        assert spec["healthcheck"]["test"][0] == "CMD"
        assert spec["deploy"]["restart_policy"]["condition"] == "any"
        assert spec["deploy"]["endpoint_mode"] == "dnsrr"
        assert not {"depends_on", "restart"} & set(spec)
        assert spec["image"] == f"10.0.0.1:5000/isletnet-{name}:2026-11-23_01"
        assert spec["deploy"]["labels"]["org.isletnet.tag"] == "2026-11-23_01"


def test_monitor_covers_a_task_turning_unhealthy_after_its_start(tmp_path: Path) -> None:
    """Swarm's monitor clock starts when a task is `running` (healthy once): it must outlast the
    health check's retries."""
    spec = services(make_instance(tmp_path))
    assert spec["backend"]["deploy"]["update_config"]["monitor"] == "30s"  # (5 retries + 1) x 5 s
    assert spec["pruner"]["deploy"]["update_config"]["monitor"] == "90s"  # (5 retries + 1) x 15 s


def test_slots_wait_two_health_intervals_and_rollbacks_move_the_same_way(tmp_path: Path) -> None:
    """A task that exits 0 at once counts as started: the next slot must wait until its failure
    has paused the update, or both old backends are stopped (seen on the nested swarm)."""
    spec = services(make_instance(tmp_path))
    assert spec["backend"]["deploy"]["update_config"]["delay"] == "10s"  # 2 x 5 s interval
    assert spec["shepherd"]["deploy"]["update_config"]["delay"] == "20s"  # 2 x 10 s interval
    for name, service in spec.items():
        update, rollback = service["deploy"]["update_config"], service["deploy"]["rollback_config"]
        assert int(update["delay"].rstrip("s")) >= 5, name
        assert update["parallelism"] == 1 and update["max_failure_ratio"] == 0, name
        assert {k: rollback[k] for k in ("parallelism", "delay", "order", "monitor")} == {
            k: update[k] for k in ("parallelism", "delay", "order", "monitor")}, name
        assert rollback["failure_action"] == "pause"


def test_placement_replicas_volumes_and_edge(tmp_path: Path) -> None:
    spec = services(make_instance(tmp_path, backend_replicas=3))
    assert spec["backend"]["deploy"]["replicas"] == 3
    assert spec["frontend"]["deploy"]["replicas"] == 2
    for name in ("queue", "storage"):
        assert spec[name]["deploy"]["placement"]["constraints"] == ["node.labels.isletnet.storage == true"]
        assert spec[name]["volumes"] == [f"{name}-data:/data"]
    assert spec["shepherd"]["deploy"]["placement"]["constraints"] == ["node.labels.isletnet.gpu == true"]
    assert "reservations" not in spec["shepherd"]["deploy"]["resources"]  # no generic resources unless asked
    for name, service in spec.items():  # compose's mem_limit/cpus become the stack's deploy limits
        assert "mem_limit" not in service and "cpus" not in service, name
        assert service["deploy"]["resources"]["limits"]["memory"], name
    edge = spec["edge"]
    assert edge["deploy"]["mode"] == "global" and "replicas" not in edge["deploy"]
    assert edge["deploy"]["placement"]["constraints"] == ["node.labels.isletnet.edge == true"]
    assert edge["ports"] == [{"target": 8080, "published": 18080, "protocol": "tcp", "mode": "host"}]
    assert all("ports" not in spec[name] for name in spec if name != "edge")


def test_gpu_generic_resources_one_per_task(tmp_path: Path) -> None:
    shepherd = services(make_instance(tmp_path, gpu_generic_resources=True, shepherd_replicas=2))["shepherd"]
    assert shepherd["deploy"]["replicas"] == 2
    assert shepherd["deploy"]["resources"]["reservations"]["generic_resources"] == [
        {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]


def test_secrets_are_swarm_secrets_not_environment(tmp_path: Path) -> None:
    rendered = stack_for_instance(make_instance(tmp_path))
    text = rendered.text()
    assert "pw$$1" not in text and "pw$1" not in text and "\nS3_SECRET_KEY: sk" not in text
    backend = rendered.document["services"]["backend"]
    assert backend["environment"]["DATABASE_URL_FILE"] == "/run/secrets/DATABASE_URL"
    assert "DATABASE_URL" not in backend["environment"] and "S3_SECRET_KEY" not in backend["environment"]
    assert {s["source"] for s in backend["secrets"]} == {
        "S3_ACCESS_KEY", "S3_SECRET_KEY", "DATABASE_URL", "ISLETNET_PROBE_TOKEN"
    }
    assert "ISLETNET_PROBE_TOKEN" not in backend["environment"]
    assert "0123456789abcdef0123456789abcdef" not in text
    assert rendered.document["services"]["queue"]["environment"] == {"DB_PASSWORD_FILE": "/run/secrets/DB_PASSWORD"}
    secrets = {s.variable: s for s in rendered.secrets}
    assert secrets["DATABASE_URL"].value == "postgresql://isletnet:pw$1@queue:5432/isletnet"
    assert all(rendered.document["secrets"][v]["external"] for v in secrets)
    # a new value is a new (immutable) secret
    other = stack_for_instance(make_instance(tmp_path, env=ENV.replace("S3_SECRET_KEY=sk", "S3_SECRET_KEY=new")))
    assert {s.variable: s.name for s in other.secrets}["S3_SECRET_KEY"] != secrets["S3_SECRET_KEY"].name
    assert {s.variable: s.name for s in other.secrets}["S3_ACCESS_KEY"] == secrets["S3_ACCESS_KEY"].name


def test_dollar_in_values_reaches_docker_escaped(tmp_path: Path) -> None:
    env = ENV + "MAX_IMAGE_PIXELS=12$3\n"
    backend = services(make_instance(tmp_path, env=env))["backend"]
    assert backend["environment"]["MAX_IMAGE_PIXELS"] == "12$$3"


def test_external_database_and_s3(tmp_path: Path) -> None:
    env = ENV + "DATABASE_URL=postgresql://u:p@db.example:5432/islets\nS3_ENDPOINT_URL=https://s3.example\n"
    rendered = stack_for_instance(make_instance(tmp_path, env=env, external_database=True, external_s3=True))
    assert set(rendered.document["services"]) == {"backend", "shepherd", "pruner", "frontend", "edge"}
    assert "volumes" not in rendered.document
    assert {s.variable: s.value for s in rendered.secrets}["DATABASE_URL"] == "postgresql://u:p@db.example:5432/islets"
    assert rendered.document["services"]["backend"]["environment"]["S3_ENDPOINT_URL"] == "https://s3.example"
    assert rendered.levels[0] == ("backend", "pruner", "shepherd")


def test_external_s3_without_endpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="S3_ENDPOINT_URL"):
        stack_for_instance(make_instance(tmp_path, external_s3=True))


def test_external_database_without_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        stack_for_instance(make_instance(tmp_path, external_database=True))


def test_dependency_levels(tmp_path: Path) -> None:
    assert stack_for_instance(make_instance(tmp_path)).levels == (
        ("queue", "storage"), ("backend", "pruner", "shepherd"), ("frontend",), ("edge",))


def test_encrypted_overlay_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The integration fixtures label everything they render through $ISLETOPS_EXTRA_LABELS.
    monkeypatch.delenv("ISLETOPS_EXTRA_LABELS", raising=False)
    plain = stack_for_instance(make_instance(tmp_path)).document["networks"]["default"]
    assert plain["driver"] == "overlay" and "driver_opts" not in plain
    assert plain["labels"] == {"org.isletnet.instance": "prod"}
    encrypted = stack_for_instance(make_instance(tmp_path, encrypted_overlay=True)).document["networks"]["default"]
    assert encrypted["driver_opts"] == {"encrypted": ""}


@pytest.mark.parametrize("missing", ["S3_ACCESS_KEY", "DB_PASSWORD", "S3_SECRET_KEY"])
def test_missing_variable_is_named(tmp_path: Path, missing: str) -> None:
    env = "".join(line + "\n" for line in ENV.splitlines() if not line.startswith(missing + "="))
    with pytest.raises(ConfigError, match=missing):
        stack_for_instance(make_instance(tmp_path, env=env))


def test_no_env_and_no_tag_are_refused(tmp_path: Path) -> None:
    instance = make_instance(tmp_path)
    instance.env_file.unlink()
    with pytest.raises(ConfigError, match="no .env"):
        stack_for_instance(instance)
    instance = make_instance(tmp_path, env=ENV.replace("TAG=2026-11-23_01\n", ""))
    with pytest.raises(ConfigError, match="no release tag"):
        stack_for_instance(instance)
    assert services(instance, tag="2026-12-01_02")["edge"]["image"].endswith(":2026-12-01_02")


@pytest.mark.parametrize(("text", "env", "expected"), [
    ("${A}", {"A": "x"}, "x"),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""),
    ("${A-d}", {}, "d"),
    ("$$A", {}, "$A"),
    ("$A/b", {"A": "x"}, "x/b"),
])
def test_interpolation(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env, "x") == expected


@pytest.mark.parametrize(("text", "env"), [("${A:?e}", {"A": ""}), ("${A?e}", {}), ("${A}", {}), ("$A", {})])
def test_interpolation_refuses_unset(text: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="variable A"):
        interpolate(text, env, "x")


def test_swarm_settings_are_validated() -> None:
    site = parse_config({"instances": {"prod": {"swarm": {"backend_replicas": 4, "encrypted_overlay": True}}}})
    assert dataclasses.asdict(site.instances["prod"].swarm)["backend_replicas"] == 4
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config({"instances": {"prod": {"swarm": {"replicas": 4}}}})
    with pytest.raises(ConfigError, match="backend_replicas must be at least 1"):
        parse_config({"instances": {"prod": {"swarm": {"backend_replicas": 0}}}})
    with pytest.raises(ConfigError, match="true or false"):
        parse_config({"instances": {"prod": {"swarm": {"encrypted_overlay": "yes"}}}})


def test_cli_prints_the_stack(tmp_path: Path) -> None:
    make_instance(tmp_path / "instances")
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"instances_root": str(tmp_path / "instances"),
                                      "instances": {"prod": {"http_port": 18080}}}))
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "render", "stack"])
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.output)["version"] == "3.8"
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "render", "stack", "--tag", "bad tag"])
    assert result.exit_code != 0 and "cannot be an image tag" in result.output
