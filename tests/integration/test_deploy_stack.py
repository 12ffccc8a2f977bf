"""Deploy, upgrade, automatic rollback of a broken release, rollback, and Ctrl-C mid-switch — on
the real stack (H3's `service_images`/`stack_instance`), pulling from a real registry.

Three releases are pushed. T1 is the real images. T2 has the same storage, queue and edge images
(so a deploy must leave them running: the edge holds the public port) and new images for the other
four (the real ones plus a label, so their image ids differ). T3's backend is a variant FROM the
real one that dies at start with a message, so its health gate fails and the deploy must roll back
by itself, explaining why with the backend's own log line.
"""

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from isletops.cli import main
from isletops.docker_engine import DockerEngine
from isletops.release import COMPONENTS, image_name
from tests.fixtures.releases import push_release

pytestmark = pytest.mark.integration

T1, T2, T3 = "2026-04-01_01", "2026-04-01_02", "2026-04-02_01"
BROKEN_LINE = "h4-broken-release: backend cannot open its model"


CHANGED_IN_T2 = ("backend", "shepherd", "pruner", "frontend")


@pytest.fixture(scope="module")
def releases(service_images, registry_url, tmp_path_factory):
    engine = DockerEngine()
    context = tmp_path_factory.mktemp("variants")
    broken = f"ENTRYPOINT [\"/bin/sh\", \"-c\", \"echo '{BROKEN_LINE}' >&2; exit 3\"]\nCMD []"
    variants = {T1: {}, T2: {c: f"LABEL org.isletnet.test.release={T2}" for c in CHANGED_IN_T2},
                T3: {"backend": broken}}
    pushed = []
    for tag in (T1, T2, T3):
        pushed += push_release(service_images, registry_url, tag, context, variants[tag])
    for target in pushed:
        engine.remove_image(target)  # the deploy must pull it
    yield registry_url
    for target in pushed:
        engine.remove_image(target, force=True)


def runs_release(made, registry: str, tag: str) -> bool:
    """Every service runs one container, healthy, the very image (by id) that release `tag` names."""
    engine = DockerEngine()
    states = engine.project_containers(made.project, COMPONENTS)
    assert all(s.is_ready for s in states), [s.describe() for s in states]
    assert sorted(s.service for s in states) == sorted(COMPONENTS), [s.describe() for s in states]
    return all(engine.image_id(s.image) == engine.image_id(image_name(s.service, tag, registry)) for s in states)


def started(made, service: str):
    [state] = [s for s in DockerEngine().project_containers(made.project) if s.service == service]
    return state.name, state.started_at


def submit_job(made) -> str:
    from monitors.probes.e2e import DEFAULTS, synthetic_image

    png, _count = synthetic_image(DEFAULTS)
    response = requests.post(f"{made.frontend_url}/api/jobs", files={"images": ("during-deploy.png", png, "image/png")},
                             headers=made.auth, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_job(made, job_id: str, timeout_s: float = 240) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = requests.get(f"{made.frontend_url}/api/jobs/{job_id}", headers=made.auth, timeout=10).json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(1)


def history(made) -> list[dict]:
    path = made.instance.state_dir / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_deploy_upgrade_broken_release_rolls_back_by_itself_then_rollback(stack_instance, releases):
    made = stack_instance("h4deploy", up=False)

    def cli(*args):
        return CliRunner().invoke(main, ["--config", str(made.config_path), *args, "--registry", releases])

    first = cli("deploy", "--tag", T1, "-m", "first")  # with the end-to-end gate
    assert first.exit_code == 0, first.output
    assert "end-to-end gate: job" in first.output
    assert runs_release(made, releases, T1)
    kept_services = {service: started(made, service) for service in ("storage", "queue", "edge")}

    job_id = submit_job(made)  # queued right before the deploy: it must still finish
    second = cli("deploy", "--tag", T2, "--no-e2e")
    assert second.exit_code == 0, second.output
    assert runs_release(made, releases, T2)
    assert "storage, queue: same image as running, kept running" in second.output
    assert "edge: same image as running, kept running" in second.output
    assert "frontend: starting a new container beside" in second.output  # behind the edge: side by side
    assert {service: started(made, service) for service in ("storage", "queue", "edge")} == kept_services
    assert wait_job(made, job_id)["state"] == "done"

    broken = cli("deploy", "--tag", T3, "--no-e2e", "--health-timeout", "90")
    assert broken.exit_code == 2, broken.output
    assert f"failed and was rolled back to {T2}" in broken.output
    assert "backend did not become healthy" in broken.output
    assert BROKEN_LINE in broken.output  # the why: the failing service's own log tail
    assert runs_release(made, releases, T2)

    listed = cli("releases")
    assert listed.exit_code == 0
    assert f"* {T2}   deployed" in listed.output and f"- {T1}   previous" in listed.output

    back = cli("rollback")  # no argument: the previous good release, same gate as deploy
    assert back.exit_code == 0, back.output
    assert runs_release(made, releases, T1)

    entries = history(made)
    assert [(e["command"], e["from_tag"], e["to_tag"], e["result"]) for e in entries] == [
        ("deploy", "", T1, "ok"),
        ("deploy", T1, T2, "ok"),
        ("deploy", T2, T3, "rolled_back"),
        ("rollback", T2, T1, "ok"),
    ]
    assert "backend did not become healthy" in entries[2]["message"]
    assert not (made.instance.state_dir / "lock").exists()
    nothing_before = cli("rollback")
    assert nothing_before.exit_code == 2 and "no earlier successful release" in nothing_before.output


def test_ctrl_c_mid_switch_restores_the_previous_release(stack_instance, releases):
    """Ctrl-C after the new backend was started beside the old one: exactly one container per
    service is left, all on T1 (`runs_release`), the lock is released and the history says so."""
    made = stack_instance("h4sigint", up=False)
    deployed = CliRunner().invoke(
        main, ["--config", str(made.config_path), "deploy", "--tag", T1, "--no-e2e", "--registry", releases]
    )
    assert deployed.exit_code == 0, deployed.output

    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "isletops"), "--config", str(made.config_path),
         "deploy", "--tag", T2, "--no-e2e", "--registry", releases],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    # Mid-switch on level 2: shepherd and pruner were recreated on T2, and the new backend is being
    # started beside the old one (the signal is raised when that compose call ends: after the scale-up).
    while not any("backend: starting a new container beside" in line for line in lines):
        assert process.poll() is None, "".join(lines)
        assert time.monotonic() < deadline, "".join(lines)
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=400) == 130, "".join(lines)
    reader.join(timeout=5)
    output = "".join(lines)
    assert "interrupted" in output
    assert "backend: removing the new container" in output, output  # not left beside the old one

    assert runs_release(made, releases, T1)
    assert not (made.instance.state_dir / "lock").exists()
    last = history(made)[-1]
    assert (last["from_tag"], last["to_tag"], last["result"]) == (T1, T2, "interrupted")
    assert f"{T1} restored" in last["message"]
    shown = CliRunner().invoke(main, ["--config", str(made.config_path), "history"])
    assert "was interrupted" in shown.output and f"{T1} was restored" in shown.output
