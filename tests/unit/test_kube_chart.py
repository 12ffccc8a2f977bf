"""`isletops render kubernetes`: golden files of the chart and manifests, the same images,
environment, ports and health checks as compose (compose's own `config` interpolates them), numeric
non-root users in the images, secrets never in values, and the objects the issue asks for.

Regenerate the golden files after an intended change:
    ISLETOPS_UPDATE_GOLDEN=1 PYTHONPATH=$PWD/ops:$PWD .venv/bin/pytest -p no:cacheprovider -q \
        tests/unit/test_kube_chart.py -k golden
and review the diff (git diff tests/golden) like code.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.config import InstanceConfig, ensure_env_file, read_env_file
from isletops.docker_engine import detect_compose
from isletops.kube.chart import SECRETS_FILE, render_kubernetes
from isletops.kube.source import KUBERNETES_COMPONENTS, image_config
from isletops.render import PROJECT_ROOT
from isletops.stack import managed_env, render_compose_files

GOLDEN = PROJECT_ROOT / "tests" / "golden" / "kubernetes" / "demo"
TAG = "2026-11-23_01"
FIXED_SECRETS = {"S3_ACCESS_KEY": "golden-access", "S3_SECRET_KEY": "golden-secret", "DB_PASSWORD": "golden-db",
                 "ISLETNET_PROBE_TOKEN": "golden-probe-token"}


def make_instance(tmp_path: Path, name: str = "demo", **settings: Any) -> InstanceConfig:
    instance = InstanceConfig(name=name, directory=tmp_path / "instances" / name, **settings)
    ensure_env_file(instance, {**managed_env(instance, TAG), **FIXED_SECRETS})
    return instance


def plain_objects(manifests: Path) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for name in yaml.safe_load((manifests / "kustomization.yaml").read_text())["resources"]:
        docs += [doc for doc in yaml.safe_load_all((manifests / name).read_text()) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def workloads(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] in ("Deployment", "StatefulSet", "CronJob")}


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[InstanceConfig, Path]:
    instance = make_instance(tmp_path)
    render_kubernetes(instance, TAG, tmp_path / "out")
    return instance, tmp_path / "out"


def golden_files(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): path.read_text() for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != SECRETS_FILE}


def test_golden_files(rendered: tuple[InstanceConfig, Path]) -> None:
    _, out = rendered
    actual = golden_files(out)
    if os.environ.get("ISLETOPS_UPDATE_GOLDEN"):
        for relative, text in actual.items():
            (GOLDEN / relative).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / relative).write_text(text)
        for stale in set(golden_files(GOLDEN)) - set(actual):
            (GOLDEN / stale).unlink()
    expected = golden_files(GOLDEN)
    assert sorted(actual) == sorted(expected)
    for relative, text in actual.items():
        assert text == expected[relative], f"{relative} differs from tests/golden (see this module's docstring)"


def test_chart_templates_have_no_leftover_tokens_and_balanced_blocks(rendered: tuple[InstanceConfig, Path]) -> None:
    _, out = rendered
    for path in (out / "chart" / "templates").glob("*.yaml"):
        text = path.read_text()
        assert "HELMTOKEN" not in text, path.name
        opened = len(re.findall(r"\{\{-? (if|with|range) ", text))
        assert opened == len(re.findall(r"\{\{-? end \}\}", text)), path.name


def compose_config(instance: InstanceConfig, gpu: bool) -> dict[str, Any]:
    """Compose's own view of the instance: both files, interpolated from the instance's .env."""
    for name, text in render_compose_files(instance, gpu).items():
        (instance.directory / name).write_text(text)
    result = subprocess.run(  # noqa: S603 - fixed arguments
        [*detect_compose().command, "--project-directory", str(instance.directory), "-p", instance.name,
         "-f", "docker-compose.yml", "-f", "docker-compose.production.yml", "config", "--format", "json"],
        cwd=instance.directory, capture_output=True, text=True, timeout=60, check=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(instance.directory)},
    )
    return json.loads(result.stdout)["services"]


def resolved_env(container: dict[str, Any], config: dict[str, str], secrets: dict[str, str]) -> dict[str, str]:
    env = {}
    for item in container.get("env", []):
        ref = item["valueFrom"]
        if "configMapKeyRef" in ref:
            env[item["name"]] = config[ref["configMapKeyRef"]["key"]]
        else:
            env[item["name"]] = secrets[ref["secretKeyRef"]["key"]]
    return env


@pytest.mark.parametrize("gpu", [True, False])
def test_images_environment_ports_and_checks_match_compose(tmp_path: Path, gpu: bool) -> None:
    instance = make_instance(tmp_path, gpu="yes" if gpu else "no", max_upload_mb=321, retention_days=2)
    compose = compose_config(instance, gpu)
    render_kubernetes(instance, TAG, tmp_path / "out")
    manifests = tmp_path / "out" / "manifests"
    docs = plain_objects(manifests)
    config = by_kind(docs, "ConfigMap")["isletnet-config"]["data"]
    secrets = read_env_file(manifests / SECRETS_FILE)
    assert set(workloads(docs)) == set(KUBERNETES_COMPONENTS) == set(compose) - {"edge"}
    for component, workload in workloads(docs).items():
        service = compose[component]
        (container,) = pod_spec(workload)["containers"]
        assert container["image"] == service["image"], component
        assert resolved_env(container, config, secrets) == service.get("environment", {}), component
        ports = [port["containerPort"] for port in container.get("ports", [])]
        test = service["healthcheck"]["test"]
        url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*)", " ".join(test))
        if url:
            assert int(url[1]) in ports, component
        published = [int(port["target"]) for port in service.get("ports", [])]
        assert set(published) <= set(ports), component
        if workload["kind"] != "CronJob":
            probe = container["readinessProbe"]
            if url:
                assert probe["httpGet"] == {"path": url[2], "port": int(url[1])}, component
            else:
                assert probe["exec"]["command"] == test[1:], component
    assert config["SHEPHERD_DEVICE"] == ("gpu" if gpu else "cpu")
    assert config["MAX_UPLOAD_MB"] == "321" and config["RETENTION_SECONDS"] == str(2 * 86400)


@pytest.mark.parametrize("component", KUBERNETES_COMPONENTS)
def test_every_image_has_a_numeric_non_root_user_matching_the_pod(rendered: tuple[InstanceConfig, Path],
                                                                 component: str) -> None:
    """runAsNonRoot needs a numeric USER: the kubelet cannot tell whether a user name is root."""
    user = image_config(component).user
    assert re.fullmatch(r"\d+(:\d+)?", user), f"the {component} image's USER {user} is not numeric"
    uid, _, gid = user.partition(":")
    spec = pod_spec(workloads(plain_objects(rendered[1] / "manifests"))[component])
    assert int(uid) != 0
    assert spec["securityContext"]["runAsUser"] == int(uid)
    if gid:
        assert spec["securityContext"]["runAsGroup"] == int(gid)


def test_pods_are_locked_down(rendered: tuple[InstanceConfig, Path]) -> None:
    docs = plain_objects(rendered[1] / "manifests")
    for name, workload in workloads(docs).items():
        spec = pod_spec(workload)
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["readOnlyRootFilesystem"] is True, name
        assert {"/tmp"} <= {mount["mountPath"] for mount in container["volumeMounts"]}, name
        assert container["resources"]["requests"] and container["resources"]["limits"], name
        if workload["kind"] != "CronJob":
            assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container), name


def test_the_objects_the_issue_asks_for(rendered: tuple[InstanceConfig, Path]) -> None:
    docs = plain_objects(rendered[1] / "manifests")
    kinds = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    assert {("Namespace", "isletnet-demo"), ("ConfigMap", "isletnet-config"), ("Deployment", "frontend"),
            ("Deployment", "backend"), ("Deployment", "shepherd"), ("CronJob", "pruner"),
            ("StatefulSet", "queue"), ("StatefulSet", "storage"), ("Ingress", "isletnet"),
            ("HorizontalPodAutoscaler", "shepherd")} <= kinds
    assert {name for kind, name in kinds if kind == "PodDisruptionBudget"} == {"frontend", "backend", "shepherd"}
    shepherd = pod_spec(by_kind(docs, "Deployment")["shepherd"])
    assert shepherd["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert shepherd["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert "replicas" not in by_kind(docs, "Deployment")["shepherd"]["spec"]  # the HPA owns it
    assert pod_spec(by_kind(docs, "CronJob")["pruner"])["containers"][0]["args"][-1] == "--once"
    for name in ("queue", "storage"):
        claim = by_kind(docs, "StatefulSet")[name]["spec"]["volumeClaimTemplates"][0]
        assert "storageClassName" not in claim["spec"]  # empty value: the cluster's default class
    rules = by_kind(docs, "Ingress")["isletnet"]["spec"]
    paths = {p["path"]: p["backend"]["service"]["name"] for p in rules["rules"][0]["http"]["paths"]}
    assert paths == {"/": "frontend", "/api": "backend"} and rules["tls"][0]["secretName"] == "demo-tls"


def test_only_backend_shepherd_and_pruner_reach_queue_and_storage(rendered: tuple[InstanceConfig, Path]) -> None:
    policies = by_kind(plain_objects(rendered[1] / "manifests"), "NetworkPolicy")
    assert set(policies) == {"queue-clients", "storage-clients"}
    for policy in policies.values():
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        assert peer["podSelector"]["matchExpressions"] == [
            {"key": "app.kubernetes.io/component", "operator": "In", "values": ["backend", "shepherd", "pruner"]}]


def test_secrets_live_only_in_the_private_file(rendered: tuple[InstanceConfig, Path]) -> None:
    instance, out = rendered
    secret_file = out / "manifests" / SECRETS_FILE
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert read_env_file(secret_file) == {**FIXED_SECRETS,
                                          "DATABASE_URL": "postgresql://isletnet:golden-db@queue:5432/isletnet"}
    everything_else = "".join(golden_files(out).values())
    for value in FIXED_SECRETS.values():
        assert value not in everything_else
    helm_secret = (out / "chart" / "templates" / "secret.yaml").read_text()
    assert "lookup" in helm_secret and "randAlphaNum" in helm_secret


def variant(tmp_path: Path, values: dict[str, Any], kube_version: str = "1.33") -> list[dict[str, Any]]:
    instance = make_instance(tmp_path)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    render_kubernetes(instance, TAG, tmp_path / "out", kube_version=kube_version, values_files=[path])
    return plain_objects(tmp_path / "out" / "manifests")


def test_keda_replaces_the_hpa_with_a_postgresql_trigger(tmp_path: Path) -> None:
    docs = variant(tmp_path, {"shepherd": {"autoscaling": {"keda": {"enabled": True}, "targetPerWorker": 3}}})
    assert "HorizontalPodAutoscaler" not in {doc["kind"] for doc in docs}
    (trigger,) = by_kind(docs, "ScaledObject")["shepherd"]["spec"]["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metadata"]["targetQueryValue"] == "3"
    assert trigger["metadata"]["query"] == "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"
    auth = by_kind(docs, "TriggerAuthentication")["shepherd-queue"]["spec"]
    assert auth["secretTargetRef"][0]["key"] == "DB_PASSWORD"
    assert "queue-keda" in by_kind(docs, "NetworkPolicy")


def test_external_database_and_s3_drop_the_statefulsets(tmp_path: Path) -> None:
    docs = variant(tmp_path, {"queue": {"enabled": False}, "storage": {"enabled": False},
                              "secrets": {"existingSecret": "hospital-db"},
                              "config": {"S3_ENDPOINT_URL": "https://s3.example.org"}})
    assert not by_kind(docs, "StatefulSet") and not by_kind(docs, "NetworkPolicy")
    (container,) = pod_spec(by_kind(docs, "Deployment")["backend"])["containers"]
    refs = {item["valueFrom"].get("secretKeyRef", {}).get("name") for item in container["env"]}
    assert refs == {None, "hospital-db"}
    kustomization = yaml.safe_load((tmp_path / "out" / "manifests" / "kustomization.yaml").read_text())
    assert "secretGenerator" not in kustomization and not (tmp_path / "out" / "manifests" / SECRETS_FILE).exists()


def test_kubernetes_1_20_gets_the_older_api_versions(tmp_path: Path) -> None:
    docs = variant(tmp_path, {}, kube_version="1.20")
    versions = {doc["kind"]: doc["apiVersion"] for doc in docs}
    assert versions["CronJob"] == "batch/v1beta1" and versions["HorizontalPodAutoscaler"] == "autoscaling/v2beta2"
    assert versions["PodDisruptionBudget"] == "policy/v1beta1" and versions["Ingress"] == "networking.k8s.io/v1"


def test_cli_renders_and_says_what_it_wrote(tmp_path: Path) -> None:
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"instances_root": str(tmp_path / "instances"), "instances": {"lab": {}}}))
    runner = CliRunner()
    result = runner.invoke(main, ["--config", str(config), "render", "kubernetes", "--instance", "lab",
                                  "--tag", TAG, "--out", str(tmp_path / "k8s")])
    assert result.exit_code == 0, result.output
    assert "objects to" in result.output and (tmp_path / "k8s" / "chart" / "Chart.yaml").exists()
    missing = runner.invoke(main, ["--config", str(config), "render", "kubernetes", "--instance", "lab",
                                   "--out", str(tmp_path / "k8s")])
    assert missing.exit_code == 2 and "no release tag" in missing.output
    bad = runner.invoke(main, ["--config", str(config), "render", "kubernetes", "--instance", "lab", "--tag", TAG,
                               "--kube-version", "1.19", "--out", str(tmp_path / "k8s")])
    assert bad.exit_code == 2 and "too old" in bad.output


def test_a_storage_class_is_named_only_when_set(tmp_path: Path) -> None:
    docs = variant(tmp_path, {"queue": {"storage": {"storageClassName": "fast-ssd", "size": "20Gi"}}})
    claims = {name: sts["spec"]["volumeClaimTemplates"][0]["spec"]
              for name, sts in by_kind(docs, "StatefulSet").items()}
    assert claims["queue"]["storageClassName"] == "fast-ssd"
    assert claims["queue"]["resources"]["requests"]["storage"] == "20Gi"
    assert "storageClassName" not in claims["storage"]
