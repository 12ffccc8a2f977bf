"""Deploys that must stop before touching anything: bad tags, missing images, unreachable
registry, not enough disk, a held lock, Ctrl-C before the switch; and a corrupt history file.

Real registry (docker-registry), real Docker Engine, the real `isletops` CLI; the release's images
are tiny FROM-scratch images, since none of these deploys may get as far as starting them.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from isletops.docker_engine import DockerEngine
from isletops.lock import LockDetails
from isletops.release import COMPONENTS, image_name
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

TAG = "2026-03-01_01"
PARTIAL_TAG = "2026-03-01_02"  # every component but the shepherd


@pytest.fixture(scope="module")
def tiny_release(registry_url, tmp_path_factory):
    """Release TAG (complete) and PARTIAL_TAG (shepherd missing) of tiny images in the registry."""
    engine = DockerEngine()
    context = tmp_path_factory.mktemp("tiny")
    (context / "marker").write_text("h4")
    made = []
    for component in COMPONENTS:
        (context / "Dockerfile").write_text(f"FROM scratch\nCOPY marker /{component}\n")
        for tag in (TAG, PARTIAL_TAG):
            if tag == PARTIAL_TAG and component == "shepherd":
                continue
            ref = image_name(component, tag, registry_url)
            engine.build_image(context, context / "Dockerfile", ref, labels={"org.isletnet.test": "1"})
            engine.push_image(ref)
            engine.remove_image(ref, force=True)  # a deploy must pull it
            made.append(ref)
    yield registry_url
    for ref in made:
        engine.remove_image(ref, force=True)


def write_site(tmp_path: Path, registry: str, instances_root: Path | None = None) -> tuple[Path, str]:
    name = f"h4d{uuid.uuid4().hex[:6]}"
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "registry": registry,
        "instances_root": str(instances_root or tmp_path / "instances"),
        "default_instance": name,
        "instances": {name: {"http_port": free_port(), "api_port": free_port(), "health_timeout_s": 60}},
    }))
    return config, name


def cli(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args])


def untouched(instance_dir: Path) -> None:
    """Nothing of the stack was rendered, no lock is left, no image was pulled."""
    assert not (instance_dir / "docker-compose.yml").exists()
    assert not (instance_dir / ".env").exists()
    assert not (instance_dir / "state" / "lock").exists()


def history(instance_dir: Path) -> list[dict]:
    path = instance_dir / "state" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("bad", ["2026-13-45_1", "latest", "../x"])
def test_malformed_tag_changes_nothing(tmp_path, tiny_release, bad):
    config, name = write_site(tmp_path, tiny_release)
    result = cli(config, "deploy", "--tag", bad)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "not a release tag" in result.output
    untouched(tmp_path / "instances" / name)
    assert history(tmp_path / "instances" / name) == []


def test_absent_tag_names_every_missing_image_and_changes_nothing(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    result = cli(config, "deploy", "--tag", "2026-03-09_01")
    assert result.exit_code == 2, result.output
    assert "Release 2026-03-09_01 is incomplete" in result.output and "Nothing was changed" in result.output
    for component in COMPONENTS:
        assert image_name(component, "2026-03-09_01", tiny_release) in result.output
    untouched(tmp_path / "instances" / name)
    [entry] = history(tmp_path / "instances" / name)
    assert entry["result"] == "failed" and entry["to_tag"] == "2026-03-09_01" and entry["from_tag"] == ""


def test_one_missing_component_is_named_and_nothing_pulled(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    result = cli(config, "deploy", "--tag", PARTIAL_TAG)
    assert result.exit_code == 2, result.output
    assert f"missing {image_name('shepherd', PARTIAL_TAG, tiny_release)}." in result.output
    assert "isletnet-backend" not in result.output
    assert not DockerEngine().image_exists(image_name("backend", PARTIAL_TAG, tiny_release))
    untouched(tmp_path / "instances" / name)


def test_dry_run_prints_the_plan_and_marks_the_missing_image(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    result = cli(config, "deploy", "--tag", PARTIAL_TAG, "--dry-run")
    assert result.exit_code == 2
    assert f"{image_name('shepherd', PARTIAL_TAG, tiny_release)}   MISSING" in result.output
    assert "roll over in dependency order" in result.output
    untouched(tmp_path / "instances" / name)
    assert history(tmp_path / "instances" / name) == []  # a dry run is not an attempt
    ok = cli(config, "deploy", "--tag", TAG, "--dry-run")
    assert ok.exit_code == 0 and "MISSING" not in ok.output


def test_unreachable_registry_changes_nothing(tmp_path, unreachable_registry):
    config, name = write_site(tmp_path, unreachable_registry)
    result = cli(config, "deploy", "--tag", TAG)
    assert result.exit_code == 2
    assert f"Registry {unreachable_registry} is unreachable" in result.output
    untouched(tmp_path / "instances" / name)
    assert history(tmp_path / "instances" / name)[0]["result"] == "failed"


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MiB tmpfs for the instances folder: a real file system that is nearly full."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)], check=True,
                       capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_not_enough_disk_for_the_instance_fails_before_pulling(tmp_path, tiny_release, small_disk):
    config, name = write_site(tmp_path, tiny_release, instances_root=small_disk)
    result = cli(config, "deploy", "--tag", TAG, "--min-free-mb", "32")
    assert result.exit_code == 2, result.output
    assert "Not enough free disk space on" in result.output and str(small_disk) in result.output
    assert "Nothing was changed" in result.output
    assert not DockerEngine().image_exists(image_name("backend", TAG, tiny_release))
    untouched(small_disk / name)


def test_not_enough_disk_on_the_docker_data_root_fails_before_pulling(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    result = cli(config, "deploy", "--tag", TAG, "--min-free-mb", str(64 * 2**20))  # 64 TiB
    assert result.exit_code == 2, result.output
    assert "Not enough free disk space on /var/lib/docker" in result.output
    assert not DockerEngine().image_exists(image_name("backend", TAG, tiny_release))
    untouched(tmp_path / "instances" / name)


def test_hand_taken_lock_refuses_deploys_naming_who_and_since(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    assert cli(config, "lock", "acquire", "-m", "database maintenance").exit_code == 0
    status = cli(config, "lock", "status")
    assert status.exit_code == 1 and "database maintenance" in status.output
    details = json.loads((tmp_path / "instances" / name / "state" / "lock" / "details").read_text())
    for command in (["deploy", "--tag", TAG], ["rollback", "--to", TAG], ["deploy", "--tag", TAG, "--force"]):
        refused = cli(config, *command)
        assert refused.exit_code == 2
        assert f"is locked by {details['user']}@" in refused.output and details["acquired_at"] in refused.output
    assert history(tmp_path / "instances" / name) == []
    assert cli(config, "lock", "release").exit_code == 0
    assert cli(config, "lock", "status").exit_code == 0


def test_stale_lock_is_reported_then_broken_with_force(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_dir = tmp_path / "instances" / name / "state" / "lock"
    lock_dir.mkdir(parents=True)
    stale = LockDetails.for_this_process("deploy", TAG, "crashed deploy")
    stale = LockDetails(**{**stale.__dict__, "pid": dead.pid})
    (lock_dir / "details").write_text(stale.to_json())
    refused = cli(config, "deploy", "--tag", "2026-03-09_01")
    assert refused.exit_code == 2 and "stale lock" in refused.output and "--force" in refused.output
    assert "STALE" in cli(config, "lock", "status").output
    forced = cli(config, "deploy", "--tag", "2026-03-09_01", "--force")
    assert "broke a stale lock" in forced.output and f"pid {dead.pid}" in forced.output
    assert "is incomplete" in forced.output  # it went on, to the next check
    assert not lock_dir.exists()


def test_ctrl_c_releases_the_lock_records_it_and_the_next_command_says_so(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    instance_dir = tmp_path / "instances" / name
    hooks = instance_dir / "hooks"
    hooks.mkdir(parents=True)
    started = tmp_path / "hook-started"
    (hooks / "pre-deploy").write_text(f"#!/bin/sh\ntouch {started}\nexec sleep 60\n")
    (hooks / "pre-deploy").chmod(0o755)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "isletops"), "--config", str(config), "deploy", "--tag", TAG],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    deadline = time.monotonic() + 60
    while not started.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the pre-deploy hook never ran"
        time.sleep(0.1)
    assert (instance_dir / "state" / "lock").exists()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "interrupted" in err
    assert not (instance_dir / "state" / "lock").exists()
    [entry] = history(instance_dir)
    assert entry["result"] == "interrupted" and "nothing had been changed" in entry["message"]
    shown = cli(config, "history")
    assert shown.exit_code == 0 and "interrupted" in shown.output and "note: The last deploy" in shown.output


def test_corrupt_history_keeps_readable_lines_and_reports_the_rest(tmp_path, tiny_release):
    config, name = write_site(tmp_path, tiny_release)
    state = tmp_path / "instances" / name / "state"
    state.mkdir(parents=True)
    good = {"command": "deploy", "from_tag": "", "to_tag": TAG, "result": "ok", "duration_s": 3,
            "time": "2026-03-01T10:00:00+00:00", "user": "alice", "host": "h"}
    text = json.dumps(good) + "\n\x00\x00garbage\n" + '{"command": "deploy"}\n'
    (state / "history.jsonl").write_text(text)
    result = cli(config, "history")
    assert result.exit_code == 1
    assert "2 unreadable line(s) (2, 3)" in result.output and "line 2: not JSON" in result.output
    assert TAG in result.output and "alice" in result.output
    as_json = cli(config, "history", "--json")
    assert [json.loads(line)["to_tag"] for line in as_json.stdout.splitlines()] == [TAG]
    assert (state / "history.jsonl").read_text() == text  # reading never rewrites it
    # and a deploy still works from what was readable (refused here at the image check, recorded)
    cli(config, "deploy", "--tag", "2026-03-09_01")
    lines = (state / "history.jsonl").read_text().splitlines()
    assert len(lines) == 4 and json.loads(lines[-1])["from_tag"] == TAG
