"""The chart's Go templates rendered like `helm template` and compared with the plain manifests.

Helm is neither in Debian nor on PyPI, so tests/helmrender/main.go renders the chart's templates
with the same engine Helm uses: Go's text/template with the sprig functions. It also provides the
few things Helm adds that the chart uses: `lookup`, which finds nothing as in `helm template`,
`.Capabilities.APIVersions.Has` and `.Release`. It needs Debian's golang-go and
golang-github-masterminds-sprig-dev (scripts/bootstrap.sh installs them).

The chart's output for a set of values must equal the plain manifests for the same values, apart
from the `managed-by` label. It adds the generated Secret, which kustomize makes from secrets.env.
The output also passes `kubernetes-validate --strict`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from isletops.kube.chart import merge_values, render_kubernetes
from isletops.render import PROJECT_ROOT
from tests.unit.test_kube_chart import TAG, make_instance, plain_objects
from tests.unit.test_kube_validate import VARIANTS

GO = shutil.which("go")
SPRIG = Path("/usr/share/gocode/src/github.com/Masterminds/sprig")
pytestmark = pytest.mark.skipif(not (GO and SPRIG.exists()),
                                reason="golang-go and golang-github-masterminds-sprig-dev are not installed")
NEW_API = ["v1", "apps/v1", "batch/v1", "batch/v1/CronJob", "policy/v1", "policy/v1/PodDisruptionBudget",
           "autoscaling/v2", "autoscaling/v2/HorizontalPodAutoscaler", "networking.k8s.io/v1"]
API_1_20 = ["v1", "apps/v1", "batch/v1beta1", "batch/v1beta1/CronJob", "policy/v1beta1",
            "policy/v1beta1/PodDisruptionBudget", "autoscaling/v2beta2",
            "autoscaling/v2beta2/HorizontalPodAutoscaler", "networking.k8s.io/v1"]


@pytest.fixture(scope="module")
def helmrender(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("helmrender")
    binary = directory / "helmrender"
    subprocess.run(  # noqa: S603 - fixed arguments
        [str(GO), "build", "-o", str(binary), str(PROJECT_ROOT / "tests" / "helmrender" / "main.go")],
        check=True, capture_output=True, timeout=600,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(directory), "GO111MODULE": "off",
             "GOPATH": "/usr/share/gocode", "GOCACHE": str(directory / "cache")},
    )
    return binary


def helm_template(helmrender: Path, chart: Path, values: dict[str, Any], api_versions: list[str],
                  tmp_path: Path) -> list[dict[str, Any]]:
    values_json = tmp_path / "values.json"
    values_json.write_text(json.dumps(values))
    result = subprocess.run([str(helmrender), str(chart), str(values_json), "isletnet-demo", *api_versions],  # noqa: S603
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    (tmp_path / "helm-template.yaml").write_text(result.stdout)
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def normalised(docs: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """Objects by (kind, name), with Helm's managed-by label as isletops writes it."""
    label = '"app.kubernetes.io/managed-by": '
    text = json.dumps(docs).replace(label + '"Helm"', label + '"isletops"')
    return {(doc["kind"], doc["metadata"]["name"]): json.dumps(doc, sort_keys=True) for doc in json.loads(text)}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("kube_version, api_versions", [("1.33", NEW_API), ("1.20", API_1_20)])
def test_helm_renders_the_same_objects_as_the_plain_manifests(helmrender: Path, tmp_path: Path, variant: str,
                                                               kube_version: str, api_versions: list[str]) -> None:
    overrides = merge_values(VARIANTS[variant], {"namespace": {"create": True}})
    override_file = tmp_path / "override.yaml"
    override_file.write_text(yaml.safe_dump(overrides))
    rendering = render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out", kube_version=kube_version,
                                  values_files=[override_file])
    chart_values = merge_values(yaml.safe_load((rendering.chart_dir / "values.yaml").read_text()), overrides)
    helm_docs = helm_template(helmrender, rendering.chart_dir, chart_values, api_versions, tmp_path)
    helm = normalised([doc for doc in helm_docs if doc["kind"] != "Secret"])
    plain = normalised(plain_objects(rendering.manifests_dir))
    assert sorted(helm) == sorted(plain)
    for key, text in plain.items():
        assert helm[key] == text, key
    secrets = [doc for doc in helm_docs if doc["kind"] == "Secret"]
    assert len(secrets) == (0 if chart_values["secrets"]["existingSecret"] else 1)


def test_helm_generates_the_secrets_and_the_database_url_from_them(helmrender: Path, tmp_path: Path) -> None:
    rendering = render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out")
    values = yaml.safe_load((rendering.chart_dir / "values.yaml").read_text())
    docs = helm_template(helmrender, rendering.chart_dir, values, NEW_API, tmp_path)
    (secret,) = [doc for doc in docs if doc["kind"] == "Secret"]
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert set(data) == {"S3_ACCESS_KEY", "S3_SECRET_KEY", "DB_PASSWORD", "DATABASE_URL", "ISLETNET_PROBE_TOKEN"}
    generated = ("S3_ACCESS_KEY", "S3_SECRET_KEY", "DB_PASSWORD", "ISLETNET_PROBE_TOKEN")
    assert all(len(data[key]) == 40 and data[key].isalnum() for key in generated)
    assert data["DATABASE_URL"] == f"postgresql://isletnet:{data['DB_PASSWORD']}@queue:5432/isletnet"
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    again = helm_template(helmrender, rendering.chart_dir, values, NEW_API, tmp_path)
    assert [doc for doc in again if doc["kind"] == "Secret"][0]["data"] != secret["data"]  # random per install


def test_helm_output_passes_the_strict_schema(helmrender: Path, tmp_path: Path) -> None:
    validate = shutil.which("kubernetes-validate", path=str(Path(sys.executable).parent))
    if not validate:
        pytest.skip("kubernetes-validate (dev extra) is not installed")
    rendering = render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out")
    values = merge_values(yaml.safe_load((rendering.chart_dir / "values.yaml").read_text()),
                          {"namespace": {"create": True}})
    helm_template(helmrender, rendering.chart_dir, values, NEW_API, tmp_path)
    result = subprocess.run([validate, "--strict", "--quiet", "-k", "1.37.0", str(tmp_path / "helm-template.yaml")],  # noqa: S603
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_helm_notes_tell_how_to_check_the_hpas_metric_only_without_keda(helmrender: Path, tmp_path: Path) -> None:
    rendering = render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out")
    values = yaml.safe_load((rendering.chart_dir / "values.yaml").read_text())

    def notes(override: dict[str, Any]) -> str:
        (tmp_path / "values.json").write_text(json.dumps(merge_values(values, override)))
        result = subprocess.run([str(helmrender), "--notes", str(rendering.chart_dir), str(tmp_path / "values.json"),  # noqa: S603
                                 "isletnet-demo", *NEW_API], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    check = "kubectl get --raw /apis/external.metrics.k8s.io/v1beta1/namespaces/isletnet-demo/isletnet_queue_depth"
    assert check in notes({}) and "prometheus-adapter-values.yaml" in notes({})
    assert "external.metrics" not in notes({"shepherd": {"autoscaling": {"keda": {"enabled": True}}}})
    assert "external.metrics" not in notes({"shepherd": {"autoscaling": {"enabled": False}}})
