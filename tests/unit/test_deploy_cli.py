"""`isletops deploy|rollback|releases` over the fake engine and registry: what the CLI injects
(the alert silence, the gate switch, the retain policy) and what it prints."""

import dataclasses

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import deploy as deploy_cli
from isletops.cli import main
from isletops.deploy import run
from tests.fakes.engine import FakeEngine
from tests.unit.conftest import FAKE_REGISTRY, RELEASES

T1, T2, _T3 = RELEASES


@pytest.fixture
def site(tmp_path, monkeypatch, registry):
    engine = FakeEngine(FAKE_REGISTRY)
    monkeypatch.setattr(deploy_cli, "engine_for", lambda *_args: engine)
    monkeypatch.setattr(run, "RegistryClient", lambda *_args, **_kwargs: registry)
    monkeypatch.setattr(deploy_cli, "RegistryClient", lambda *_args, **_kwargs: registry)
    options = deploy_cli._options
    monkeypatch.setattr(deploy_cli, "_options", lambda *args: dataclasses.replace(options(*args), resolver_ttl_s=0))
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"registry": FAKE_REGISTRY, "instances_root": str(tmp_path / "instances"),
                                      "retain_releases": 2, "instances": {"prod": {}}}))
    return config, engine


def cli(config, *args):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_dry_run_prints_the_plan_and_changes_nothing(site):
    config, engine = site
    result = cli(config, "deploy", "--tag", T1, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"deploy on instance 'prod' (fake): nothing deployed -> {T1}" in result.stdout
    assert "level 2: backend: start the new version beside the old" in result.stdout
    assert engine.calls == []


def test_deploy_silences_the_alerts_prunes_and_rolls_back_by_hand(site, tmp_path):
    config, engine = site
    first = cli(config, "deploy", "--tag", T1, "--no-e2e")
    assert first.exit_code == 0, first.output
    assert f"deploy of {T1} to instance 'prod': ok" in first.stdout
    assert engine.method_calls("prune_releases") == [(FAKE_REGISTRY, 2)]
    silences = tmp_path / "instances" / "prod" / "state"
    assert any("silence" in path.name for path in silences.iterdir())  # the monitor's hook ran
    assert cli(config, "deploy", "--tag", T2, "--no-e2e").exit_code == 0
    back = cli(config, "rollback", "--no-e2e")
    assert back.exit_code == 0, back.output
    assert engine.tags()["backend"] == [T1]


def test_a_broken_release_prints_the_failing_containers_output_and_releases_marks_it(site):
    config, engine = site
    assert cli(config, "deploy", "--tag", T1, "--no-e2e").exit_code == 0
    engine.broken = {T2: {"backend"}}
    broken = cli(config, "deploy", "--tag", T2, "--no-e2e", "--failed-checks", "2")
    assert broken.exit_code == 2
    assert f"failed and was rolled back to {T1}: backend did not become healthy" in broken.stderr
    assert f"backend on {T2} does not answer" in broken.stderr
    listed = cli(config, "releases")
    assert listed.exit_code == 0, listed.output
    assert f"! {T2}   FAILED" in listed.stdout and f"* {T1}   deployed" in listed.stdout
