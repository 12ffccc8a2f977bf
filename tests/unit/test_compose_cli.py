"""Stack commands refuse bad input with one plain line before touching Docker or the instance."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from isletops import stack
from isletops.cli import main


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.setattr(stack, "detect_gpu", lambda: False)
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"instances_root": str(tmp_path / "instances"),
                                      "instances": {"prod": {"http_port": 8180, "api_port": 8181}}}))
    return config


def _error_line(result) -> str:
    """The last line on stderr (progress lines come before it)."""
    return result.stderr.strip().splitlines()[-1]


def _run(config, *args):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def test_down_volumes_needs_yes_and_deletes_nothing(site, tmp_path):
    from isletops.config import load_config

    loaded = load_config(site)
    stack.prepare_instance(loaded, "prod", "2026-11-23_01")
    marker = loaded.instance("prod").local_data_dir / "queue" / "PG_VERSION"
    marker.write_text("15\n")
    result = _run(site, "down", "--volumes")
    assert result.exit_code == 2
    assert _error_line(result) == ("isletops: error: --volumes deletes every stored image, result and job of "
                                   "instance 'prod'. Add --yes to confirm.")
    assert marker.read_text() == "15\n"


def test_up_with_a_malformed_tag_changes_nothing(site):
    from isletops.config import load_config

    loaded = load_config(site)
    stack.prepare_instance(loaded, "prod", "2026-11-23_01")
    env_file = loaded.instance("prod").env_file
    before = env_file.read_text()
    result = _run(site, "up", "--tag", "not a tag")
    assert result.exit_code == 2
    assert _error_line(result).startswith("isletops: error: 'not a tag' cannot be an image tag.")
    assert env_file.read_text() == before


@pytest.mark.parametrize("command", [["logs"], ["restart"]])
def test_commands_on_an_instance_never_set_up_say_what_to_do(site, command):
    result = _run(site, *command)
    assert result.exit_code == 2
    assert "Instance 'prod' has not been set up yet" in result.stderr
    assert "isletops up --tag TAG" in result.stderr


def test_up_without_any_tag_says_how_to_get_one(site):
    result = _run(site, "up")
    assert result.exit_code == 2
    assert _error_line(result) == ("isletops: error: Instance 'prod' has no release tag yet. Pass --tag "
                                     "(see 'isletops build' or 'isletops releases').")


def test_unknown_component_to_build(site):
    result = _run(site, "build", "database")
    assert result.exit_code == 2
    assert "Unknown component(s): database." in result.stderr


@pytest.mark.parametrize("command", ["build", "up", "down", "restart", "logs", "ps", "status", "demo"])
def test_every_stack_command_has_an_example_in_its_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    assert "Example" in result.output and f"isletops {command}" in result.output


def test_status_shows_the_release_history_and_the_deploy_lock(site, monkeypatch):
    import json

    from isletops.cli import stack as stack_cli
    from tests.fakes.engine import FakeEngine

    engine = FakeEngine()
    engine.run_release("2026-11-20_01")
    monkeypatch.setattr(stack_cli, "engine_for", lambda *_: engine)  # no Docker: the fake's containers
    plain = _run(site, "status")
    assert plain.exit_code == 0, plain.output
    assert "instance 'prod', release 2026-11-20_01" in plain.stdout  # read from the containers
    assert "  history: nothing recorded deployed (previous good: none)" in plain.stdout.splitlines()
    locked = _run(site, "lock", "acquire", "-m", "maintenance")
    assert locked.exit_code == 0, locked.output
    lines = _run(site, "status").stdout.splitlines()
    assert any(line.startswith("  locked: ") and line.endswith(": maintenance") for line in lines)
    document = json.loads(_run(site, "status", "--json").stdout)
    assert document["deployment"]["deployed"] == ""
    assert document["deployment"]["lock"]["held"] is True
    assert document["deployment"]["lock"]["details"]["message"] == "maintenance"


def test_status_calls_a_mixed_release_critical_and_names_who_runs_what(site, monkeypatch):
    import json

    from isletops.cli import stack as stack_cli
    from tests.fakes.engine import FakeEngine

    engine = FakeEngine()
    engine.run_release("2026-11-20_01")
    engine.run_release("2026-11-21_01", ["backend"])
    monkeypatch.setattr(stack_cli, "engine_for", lambda *_: engine)
    shown = _run(site, "status")
    assert shown.exit_code == 2
    assert "release MIXED" in shown.stdout
    assert "MIXED release: backend runs 2026-11-21_01; storage, queue, shepherd, pruner, frontend, edge run " \
        "2026-11-20_01" in shown.stdout
    document = json.loads(_run(site, "status", "--json").stdout)
    assert document["mixed"] is True and document["healthy"] is False and document["tag"] is None


def test_build_passes_the_configured_base_age_and_prints_its_warning(tmp_path, monkeypatch):
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"base_image_max_age_days": 7, "instances_root": str(tmp_path)}))
    seen = {}

    def fake_build(components, **kwargs):
        seen.update(kwargs)
        return stack.BuildResult("2026-12-04_01", {"edge": "isletnet-edge:2026-12-04_01"}, False,
                                 warnings=("The base image isletnet-base:latest is 9 days old.",))

    monkeypatch.setattr(stack, "build_images", fake_build)
    result = _run(config, "build", "edge")
    assert result.exit_code == 0, result.output
    assert seen["base_max_age_days"] == 7
    assert "warning: The base image isletnet-base:latest is 9 days old." in result.stderr
    assert "release 2026-12-04_01" in result.stdout


def test_logs_and_restart_go_through_the_instance_s_engine(site, monkeypatch):
    """`isletops logs|restart` ask the engine (compose, swarm or kubernetes), never compose directly."""
    from isletops.cli import stack as stack_cli
    from tests.fakes.engine import FakeEngine

    engine = FakeEngine()
    engine.run_release("2026-11-20_01")
    monkeypatch.setattr(stack_cli, "engine_for", lambda *_: engine)
    one = _run(site, "logs", "backend", "--tail", "7")
    assert one.exit_code == 0 and one.stdout == "backend | log of backend\n", one.output
    every = _run(site, "logs", "-n", "3")
    assert every.exit_code == 0 and every.stdout.count(" | log of ") == len(stack.release.COMPONENTS)
    assert engine.method_calls("show_logs") == [(("backend",), 7, False), (stack.release.COMPONENTS, 3, False)]
    restarted = _run(site, "restart", "shepherd")
    assert restarted.exit_code == 0, restarted.output
    assert engine.method_calls("restart") == [(("shepherd",),)]
    unknown = _run(site, "logs", "web")
    assert unknown.exit_code == 2 and _error_line(unknown).startswith("isletops: error: Unknown service(s): web.")
    assert len(engine.method_calls("show_logs")) == 2


def test_logs_and_restart_of_a_compose_instance_never_set_up_say_so(site):
    for args in (("logs", "backend"), ("restart", "backend")):
        result = _run(site, *args)
        assert result.exit_code == 2, result.output
        assert "Instance 'prod' has not been set up yet" in _error_line(result)
