"""What `helm lint` checks, checked without Helm (it is in neither Debian nor PyPI): Chart.yaml's
required fields for apiVersion v2 and a SemVer 2 version, and the values against the chart's
values.schema.json (draft 7, as Helm validates it), with jsonschema. `isletops render kubernetes`
applies the same schema to the values it renders, so a bad value fails there with one sentence.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.errors import ConfigError
from isletops.kube.chart import SCHEMA_FILE, chart_version, check_values, merge_values, render_kubernetes
from tests.unit.test_kube_chart import TAG, make_instance
from tests.unit.test_kube_validate import VARIANTS

# semver.org's regular expression for a SemVer 2.0.0 version, which Helm requires of `version`.
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
                    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
                    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$")


@pytest.fixture(scope="module")
def chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("lint")
    render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out")
    return tmp_path / "out" / "chart"


def defaults(chart: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((chart / "values.yaml").read_text())
    return values


def test_chart_yaml_has_what_helm_requires_of_a_v2_chart(chart: Path) -> None:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    assert meta["apiVersion"] == "v2" and meta["type"] in ("application", "library")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"])
    assert SEMVER.match(meta["version"]) and meta["appVersion"] == TAG
    assert meta["description"] and re.fullmatch(r">=\d+\.\d+\.\d+-0", meta["kubeVersion"])
    assert (chart / "templates").is_dir() and (chart / SCHEMA_FILE).exists()


@pytest.mark.parametrize("tag", [TAG, "2026-01-02_10", "pr-17", "v1.2_rc.3", "latest"])
def test_chart_versions_are_semver_2(tag: str) -> None:
    assert SEMVER.match(chart_version(tag)), chart_version(tag)


def test_the_schema_is_a_valid_draft_7_schema(chart: Path) -> None:
    jsonschema.Draft7Validator.check_schema(json.loads((chart / SCHEMA_FILE).read_text()))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_default_values_and_the_tested_variants_pass(chart: Path, variant: str) -> None:
    schema = json.loads((chart / SCHEMA_FILE).read_text())
    jsonschema.validate(merge_values(defaults(chart), VARIANTS[variant]), schema, cls=jsonschema.Draft7Validator)


def test_the_schema_knows_every_setting_of_values_yaml(chart: Path) -> None:
    """The schema refuses unknown keys, so every setting of values.yaml must be in it (and a
    misspelt one fails instead of being ignored)."""
    values = defaults(chart)
    values["shepherd"]["autoscalling"] = {"enabled": False}
    with pytest.raises(ConfigError, match=r"at shepherd: Additional properties .*'autoscalling' was unexpected"):
        check_values(values)


@pytest.mark.parametrize("override, message", [
    ({"shepherd": {"autoscaling": {"targetPerWorker": 0}}},
     r"at shepherd\.autoscaling\.targetPerWorker: 0 is less than or equal to the minimum of 0"),
    ({"config": {"MAX_UPLOAD_MB": 300}}, r"at config\.MAX_UPLOAD_MB: 300 is not of type 'string'"),
    ({"image": {"pullPolicy": "Sometimes"}}, r"at image\.pullPolicy: 'Sometimes' is not one of"),
    ({"metrics": {"serviceMonitor": {"interval": "often"}}}, r"at metrics\.serviceMonitor\.interval: 'often'"),
    ({"backend": {"resources": {"limits": {"memory": "lots"}}}}, r"at backend\.resources\.limits\.memory: 'lots'"),
])
def test_a_bad_value_is_refused_naming_the_setting(tmp_path: Path, override: dict[str, Any], message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(override))
    with pytest.raises(ConfigError, match=message):
        render_kubernetes(make_instance(tmp_path), TAG, tmp_path / "out", values_files=[path])


def test_the_cli_says_which_value_is_bad_in_one_sentence(tmp_path: Path) -> None:
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"instances_root": str(tmp_path / "instances"), "instances": {"lab": {}}}))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"shepherd": {"autoscaling": {"maxReplicas": "four"}}}))
    result = CliRunner().invoke(main, ["--config", str(config), "render", "kubernetes", "--instance", "lab",
                                       "--tag", TAG, "--out", str(tmp_path / "k8s"), "-f", str(bad)])
    assert result.exit_code == 2
    assert "The chart values are invalid at shepherd.autoscaling.maxReplicas: 'four' is not of type 'integer'" \
        in result.output
    assert "Traceback" not in result.output
