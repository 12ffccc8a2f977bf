"""The pieces of the Kubernetes rendering: reading compose (env, probes, durations), the object
model (placeholders for Helm and plain manifests), API versions by server version, values files.
Every bad input is a ConfigError with a sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from isletops.config import InstanceConfig
from isletops.errors import ConfigError
from isletops.kube import model, objects, source
from isletops.kube.chart import chart_version, merge_values, namespace_for, read_values_file


def test_env_kinds_follow_the_compose_syntax() -> None:
    env = source.parse_env({
        "S3_BUCKET": "${S3_BUCKET:-isletnet}",
        "S3_ACCESS_KEY": "${S3_ACCESS_KEY:?missing-env}",
        "DATABASE_URL": "postgresql://isletnet:${DB_PASSWORD:?missing-env}@queue:5432/isletnet",
        "SHEPHERD_DEVICE": "gpu",
    })
    assert env == (
        source.EnvVar("S3_BUCKET", "config", default="isletnet"),
        source.EnvVar("S3_ACCESS_KEY", "secret"),
        source.EnvVar("DATABASE_URL", "secret",
                      pattern="postgresql://isletnet:${DB_PASSWORD:?missing-env}@queue:5432/isletnet"),
        source.EnvVar("SHEPHERD_DEVICE", "config", default="gpu"),
    )


@pytest.mark.parametrize("environment, words", [
    ({"X": "${TAG:?missing-env}"}, "TAG"),  # required but not a generated secret
    ({"X": "${Y:-1}"}, "${Y}"),  # a default under another name
    ({"X": "a${Y}b"}, "does not know"),
])
def test_env_the_chart_cannot_supply_is_an_error(environment: dict[str, str], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace("$", r"\$").replace("{", r"\{").replace("}", r"\}")):
        source.parse_env(environment)


def test_derived_secret_as_value_and_as_printf() -> None:
    pattern = "postgresql://u:${DB_PASSWORD:?x}@h/100%"
    assert source.secret_value(pattern, {"DB_PASSWORD": "pw"}) == "postgresql://u:pw@h/100%"
    assert source.secret_format(pattern) == ("postgresql://u:%s@h/100%%", ["DB_PASSWORD"])


@pytest.mark.parametrize("text, seconds", [("5s", 5), ("1m30s", 90), ("500ms", 0.5), (7, 7), ("2h", 7200)])
def test_compose_durations(text: str | int, seconds: float) -> None:
    assert source.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "5", "5 s", "s5", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ConfigError, match="compose duration"):
        source.duration_seconds(text)


def test_curl_healthcheck_becomes_http_get_and_start_period_a_startup_budget() -> None:
    probe = source.parse_probe({"test": ["CMD", "curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8000/api/health"],
                                "interval": "5s", "timeout": "20s", "retries": 5, "start_period": "60s"})
    assert probe is not None
    probes = probe.probes()
    assert probes["readinessProbe"] == {"httpGet": {"path": "/api/health", "port": 8000}, "periodSeconds": 5,
                                        "timeoutSeconds": 20, "failureThreshold": 5}
    assert probes["startupProbe"]["failureThreshold"] == 60 // 5 + 5


def test_other_healthchecks_are_exec_probes() -> None:
    probe = source.parse_probe({"test": ["CMD", "pg_isready", "--quiet"], "interval": "5s"})
    assert probe is not None and probe.handler == {"exec": {"command": ["pg_isready", "--quiet"]}}
    shell = source.parse_probe({"test": ["CMD-SHELL", "test -f /x"]})
    assert shell is not None and shell.handler == {"exec": {"command": ["sh", "-c", "test -f /x"]}}
    assert source.parse_probe(None) is None
    with pytest.raises(ConfigError, match="CMD"):
        source.parse_probe({"test": ["NONE"]})


@pytest.mark.parametrize("version, cronjob, pdb, hpa", [
    ("1.20", "batch/v1beta1", "policy/v1beta1", "autoscaling/v2beta2"),
    ("v1.21.3", "batch/v1", "policy/v1", "autoscaling/v2beta2"),
    ("1.23", "batch/v1", "policy/v1", "autoscaling/v2"),
    ("1.37", "batch/v1", "policy/v1", "autoscaling/v2"),
])
def test_api_versions_follow_the_server(version: str, cronjob: str, pdb: str, hpa: str) -> None:
    kube = objects.parse_kube_version(version)
    chosen = [objects.api_version(kind, kube).plain for kind in ("CronJob", "PodDisruptionBudget",
                                                                   "HorizontalPodAutoscaler")]
    assert chosen == [cronjob, pdb, hpa]
    assert '.Capabilities.APIVersions.Has "batch/v1/CronJob"' in objects.api_version("CronJob", kube).template


@pytest.mark.parametrize("version, words", [("1.19", "too old"), ("one", "not a Kubernetes version"),
                                            ("1", "not a Kubernetes version")])
def test_bad_kube_versions(version: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        objects.parse_kube_version(version)


def test_placeholders_resolve_for_plain_and_become_go_templates_for_helm() -> None:
    values = {"a": {"n": 3, "flag": False}, "tag": 2026}
    tree = {"replicas": model.Value("a.n"), "tag": model.Value("tag", text=True),
            "maybe": model.OnlyIf(".Values.a.flag", False, model.Value("a.n")),
            "api": model.Helm("{{ .Release.Namespace | toJson }}", lambda v: f"ns-{v['tag']}")}
    assert model.to_plain(tree, values) == {"replicas": 3, "tag": "2026", "api": "ns-2026"}
    text = model.to_helm_yaml([tree])
    assert text == ("replicas: {{ .Values.a.n | toJson }}\n"
                    "tag: {{ .Values.tag | toString | toJson }}\n"
                    "{{- if .Values.a.flag }}\nmaybe: {{ .Values.a.n | toJson }}\n{{- end }}\n"
                    "api: {{ .Release.Namespace | toJson }}\n")


def test_a_missing_value_is_named() -> None:
    with pytest.raises(ConfigError, match="'a.b'"):
        model.lookup({"a": {}}, "a.b")


def test_values_merge_like_helm() -> None:
    base = {"a": {"x": 1, "y": [1, 2]}, "b": 1}
    assert merge_values(base, {"a": {"y": [3]}, "c": 2}) == {"a": {"x": 1, "y": [3]}, "b": 1, "c": 2}
    assert base["a"]["y"] == [1, 2]


@pytest.mark.parametrize("text, words", [("a: [", "not valid YAML"), ("- 1", "mapping")])
def test_bad_values_files(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words):
        read_values_file(path)
    with pytest.raises(ConfigError, match="Cannot read"):
        read_values_file(tmp_path / "missing.yaml")


@pytest.mark.parametrize("tag, version", [("2026-11-23_02", "2026.11.23-2"), ("2026-01-05_11", "2026.1.5-11"),
                                          ("itest_1", "0.0.0-itest-1")])
def test_chart_version_is_semver(tag: str, version: str) -> None:
    assert chart_version(tag) == version


def test_namespace_is_a_dns_label() -> None:
    assert namespace_for(InstanceConfig(name="lab_2", directory=Path("/x"))) == "isletnet-lab-2"


def test_dockerfile_ports_are_the_expose_lines(tmp_path: Path) -> None:
    (tmp_path / "services" / "x").mkdir(parents=True)
    (tmp_path / "services" / "x" / "Dockerfile").write_text("FROM a\nEXPOSE 8000 9000/tcp\nexpose 7\n")
    assert source.dockerfile_ports("x", tmp_path) == (8000, 9000, 7)
    assert yaml.safe_load(model.dump_yaml([{"a": "b"}])) == {"a": "b"}


def test_image_config_follows_the_stages_of_a_shared_dockerfile(tmp_path: Path) -> None:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "python.Dockerfile").write_text(
        "ARG BASE_IMAGE=b\nFROM ${BASE_IMAGE} AS user\nRUN useradd \\\n  x\n"
        "FROM user AS python\nUSER 10001:10001\n"
        "FROM python AS backend\nEXPOSE 8000\n"
        "FROM user AS storage\nUSER 10001:10001\nEXPOSE 8333\n")
    assert source.image_config("backend", tmp_path) == source.ImageConfig((8000,), "10001:10001")
    assert source.image_config("storage", tmp_path) == source.ImageConfig((8333,), "10001:10001")
    with pytest.raises(ConfigError, match="No stage 'pruner'"):
        source.image_config("pruner", tmp_path)
    with pytest.raises(ConfigError, match="No Dockerfile builds the x image"):
        source.image_config("x", tmp_path / "nowhere")


def test_image_config_of_an_own_dockerfile_is_its_last_stage(tmp_path: Path) -> None:
    (tmp_path / "services" / "q").mkdir(parents=True)
    (tmp_path / "services" / "q" / "Dockerfile").write_text(
        "FROM a AS wheels\nUSER root\nFROM b\nUSER 10002:10002\nEXPOSE 5432\n")
    assert source.image_config("q", tmp_path) == source.ImageConfig((5432,), "10002:10002")
