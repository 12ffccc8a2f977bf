"""The whole stack for real: seven images built from this tree, started by `isletops.stack` with
the real compose CLI, one synthetic DTZ image through the REST API, and the CLI commands an
admin uses (`up`, `ps`, `status --json`, `logs`, `restart`, `down`). Two instances run side by
side on one host."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time

import pytest
import requests
from click.testing import CliRunner

from isletops import images, release, stack
from isletops.cli import main
from isletops.config import memory_bytes
from isletops.docker_engine import DockerEngine, detect_compose, parse_compose_version
from isletops.engines import engine_for
from services.islets import encode_png, make_dtz_image
from tests.fixtures.stack import TEST_TAG, StackInstances

pytestmark = pytest.mark.integration

# Mid-class diameters (µm): a measurement off by a few µm stays in its Ricordi class.
DIAMETERS_UM = (75.0, 125.0, 175.0, 225.0, 275.0)
PIXEL_SIZE_UM = 0.843
# Tolerances: equivalent diameter within 5 % per islet, so sphere IEQ (∝ d³) within 16 %;
# Ricordi IEQ exact up to rounding because no islet is near a class boundary.
DIAMETER_TOLERANCE = 0.05
SPHERE_IEQ_TOLERANCE = 0.16
JOB_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def running(service_images, tmp_path_factory):
    instances = StackInstances(tmp_path_factory)
    try:
        yield instances.make("main")
    finally:
        instances.close()
        detect_compose.cache_clear()


def states_of(made) -> list:
    """Every component's container, as `isletops status` reads them (through the engine)."""
    return engine_for(made.site, made.instance).service_states(release.COMPONENTS)


def _cli(made, *args: str):
    result = CliRunner().invoke(main, ["--config", str(made.config_path), "--instance", made.project, *args])
    return result


def _last_line(text: str) -> str:
    """The error line (progress lines come before it on stderr)."""
    return text.strip().splitlines()[-1]


def _wait_for_job(api_url: str, job_id: str, headers: dict[str, str]) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = requests.get(f"{api_url}/api/jobs/{job_id}", headers=headers, timeout=30).json()
        assert job["state"] != "failed", job
        if job["state"] == "done":
            return requests.get(f"{api_url}/api/jobs/{job_id}/result", headers=headers, timeout=30).json()
        time.sleep(1)
    raise AssertionError(f"job {job_id} not done within {JOB_TIMEOUT_S} s: {job}")


def test_the_stack_comes_up_healthy_as_non_root_on_loopback_only(running):
    states = states_of(running)
    assert [s.service for s in states] == list(release.COMPONENTS)
    assert all(s.state == "running" and s.health == "healthy" for s in states), states
    assert {s.image for s in states} == {f"isletnet-{c}:{TEST_TAG}" for c in release.COMPONENTS}
    client = DockerEngine().client
    for container in client.containers.list(filters={"label": f"com.docker.compose.project={running.project}"}):
        service = container.labels["com.docker.compose.service"]
        assert container.attrs["Config"]["User"] == ("10002:10002" if service == "queue" else "10001:10001"), service
        assert container.labels["org.isletnet.test"] == "1"
        for bindings in (container.attrs["HostConfig"]["PortBindings"] or {}).values():
            assert all(binding["HostIp"] == "127.0.0.1" for binding in bindings), service
        # Only the edge holds a host port (publish_api_port is off by default): the frontend and
        # backend behind it can run twice side by side during a deploy.
        assert bool(container.attrs["HostConfig"]["PortBindings"]) == (service == "edge"), service
        # Every service is bounded: the memory limit of the config's defaults reached Docker.
        limit = running.instance.limits[service]
        assert container.attrs["HostConfig"]["Memory"] == memory_bytes(limit.memory), service
        expected_cpus = min(limit.cpus, os.cpu_count()) if limit.cpus else 0
        assert container.attrs["HostConfig"]["NanoCpus"] == int(expected_cpus * 1e9), service
    health = requests.get(f"{running.api_url}/api/health", timeout=10)
    assert health.status_code == 200 and health.json()["status"] == "ok"
    # The frontend serves the UI and proxies /api/ to the backend.
    page = requests.get(running.frontend_url, timeout=10)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert requests.get(f"{running.frontend_url}/api/health", timeout=10).json()["status"] == "ok"


def test_the_edge_image_id_is_the_same_when_its_recipe_is_unchanged(service_images):
    """Deploys keep the edge running because a new release's edge image has the same id: a
    rebuild of an unchanged recipe (labels from its inputs only, its own narrow build context) gives it."""
    engine = DockerEngine()
    rebuilt = f"itest-edge-rebuild:{secrets.token_hex(3)}"
    try:
        image_id = stack.build_component("edge", rebuilt, engine)
        assert image_id == engine.image_id(service_images["edge"])
    finally:
        engine.remove_image(rebuilt)


@pytest.mark.parametrize("component", ["edge", "backend", "queue"])
def test_every_image_carries_its_oci_labels_and_a_numeric_user(service_images, component):
    engine = DockerEngine()
    labels = engine.image_labels(service_images[component])
    base_id = engine.image_id(stack.BASE_IMAGE)
    assert labels["org.opencontainers.image.title"] == f"isletnet-{component}"
    assert labels["org.opencontainers.image.base.digest"] == base_id
    assert labels["org.opencontainers.image.base.name"].startswith("isletnet-base:")
    assert labels["org.isletnet.base.security-index"]  # inherited from the base
    rec = images.recipe(component)
    origin = images.provenance(images.input_paths(rec), images.excluded_patterns(rec))
    assert labels["org.opencontainers.image.revision"] == origin.revision
    assert labels["org.opencontainers.image.created"] == origin.created
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", origin.revision)  # this checkout is a git repository
    user = engine.client.images.get(service_images[component]).attrs["Config"]["User"]
    assert user == ("10002:10002" if component == "queue" else "10001:10001")


def test_a_synthetic_image_gives_the_known_count_and_ieq(running):
    rgb, truth = make_dtz_image(seed=11, diameters_um=DIAMETERS_UM, pixel_size_um=PIXEL_SIZE_UM)
    response = requests.post(
        f"{running.frontend_url}/api/jobs",  # through the frontend's proxy, as a browser does
        files={"images": ("known.png", encode_png(rgb), "image/png")},
        data={"pixel_size_um": str(PIXEL_SIZE_UM)},
        headers=running.auth,
        timeout=60,
    )
    assert response.status_code == 201, response.text
    result = _wait_for_job(running.api_url, response.json()["id"], running.auth)
    summary = result["summary"]
    assert summary["islet_count"] == truth["islet_count"] == len(DIAMETERS_UM)
    measured = sorted(i["equivalent_diameter_um"] for i in result["images"][0]["islets"])
    for got, expected in zip(measured, sorted(DIAMETERS_UM), strict=True):
        assert got == pytest.approx(expected, rel=DIAMETER_TOLERANCE)
    assert summary["ieq_ricordi"] == pytest.approx(truth["ieq_ricordi"], rel=1e-6)
    assert summary["ieq_sphere"] == pytest.approx(truth["ieq_sphere"], rel=SPHERE_IEQ_TOLERANCE)
    overlay = requests.get(f"{running.api_url}/api/jobs/{response.json()['id']}/overlay.png", headers=running.auth,
                           timeout=30)
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")


def test_cli_ps_status_and_logs(running):
    ps = _cli(running, "ps")
    assert ps.exit_code == 0, ps.output
    for component in release.COMPONENTS:
        assert component in ps.output
    status = _cli(running, "status", "--json")
    assert status.exit_code == 0, status.output
    document = json.loads(status.stdout)
    assert document["healthy"] is True and document["tag"] == TEST_TAG and document["project"] == running.project
    assert sorted(c["service"] for c in document["containers"]) == sorted(release.COMPONENTS)
    logs = _cli(running, "logs", "--tail", "5", "queue")
    assert logs.exit_code == 0, logs.output
    assert "queue" in logs.stdout and 0 < len(logs.stdout.strip().splitlines()) <= 5
    unknown = _cli(running, "logs", "web")
    assert unknown.exit_code == 2
    assert _last_line(unknown.stderr) == (
        "isletops: error: Unknown service(s): web. Services: " + ", ".join(release.COMPONENTS) + ".")


def test_cli_restart_one_service_comes_back_healthy(running):
    before = {s.service: s for s in states_of(running)}
    result = _cli(running, "restart", "pruner")
    assert result.exit_code == 0, result.output
    after = {s.service: s for s in states_of(running)}
    assert after["pruner"].started_at > before["pruner"].started_at and after["pruner"].is_ready
    assert after["backend"].started_at == before["backend"].started_at  # the others were left alone


def test_cli_up_with_a_tag_that_was_never_built_changes_nothing(running):
    env_before = running.instance.env_file.read_text()
    states_before = {s.name: s.started_at for s in states_of(running)}
    result = _cli(running, "up", "--tag", "2001-01-01_01")
    assert result.exit_code == 2
    assert _last_line(result.stderr).startswith("isletops: error: Image(s) isletnet-storage:2001-01-01_01, ")
    assert running.instance.env_file.read_text() == env_before
    assert {s.name: s.started_at for s in states_of(running)} == states_before


def test_two_instances_side_by_side_and_cli_up_down(running, service_images, tmp_path_factory, monkeypatch):
    """The second instance is driven by Debian's Compose v1 where the host has it (no `up --wait`:
    isletops polls health itself), so the fallback is proven on real containers too."""
    legacy = shutil.which("docker-compose")
    if legacy:
        output = subprocess.run([legacy, "version"], capture_output=True, text=True, check=False).stdout
        if (parse_compose_version(output) or (0, 0, 0)) < (2, 0, 0):
            monkeypatch.setenv("ISLETOPS_COMPOSE", legacy)
    detect_compose.cache_clear()
    instances = StackInstances(tmp_path_factory)
    try:
        staging = instances.make("staging", up=False)
        assert staging.project != running.project
        assert {staging.instance.http_port, staging.instance.api_port}.isdisjoint(
            {running.instance.http_port, running.instance.api_port})
        up = _cli(staging, "up", "--tag", TEST_TAG)
        assert up.exit_code == 0, up.output
        for made in (running, staging):
            assert requests.get(f"{made.api_url}/api/health", timeout=10).json()["status"] == "ok"
            assert requests.get(made.frontend_url, timeout=10).status_code == 200
            assert all(s.is_ready for s in states_of(made))
        # Each instance has its own secrets, data and network.
        assert staging.env["DB_PASSWORD"] != running.env["DB_PASSWORD"]
        assert staging.env["LOCAL_DATA_DIR"] != running.env["LOCAL_DATA_DIR"]
        data = staging.instance.local_data_dir
        assert any((data / "queue").iterdir())

        refused = _cli(staging, "down", "--volumes")
        assert refused.exit_code == 2
        assert "--volumes deletes every stored image, result and job" in refused.stderr
        assert all(s.is_ready for s in states_of(staging))  # nothing was touched
        assert any((data / "queue").iterdir())

        down = _cli(staging, "down", "--volumes", "--yes")
        assert down.exit_code == 0, down.output
        assert all(s.state == "missing" for s in states_of(staging))
        assert not (data / "queue").exists() and not (data / "storage").exists()
        assert not DockerEngine().client.networks.list(
            filters={"label": f"com.docker.compose.project={staging.project}"})
        # The other instance did not notice.
        assert all(s.is_ready for s in states_of(running))
    finally:
        instances.close()
        detect_compose.cache_clear()


def test_a_burst_of_30_uploads_is_accepted_and_analysed_without_a_restart(running):
    """A technician uploads a whole sample at once: 30 images of 3 Mpx (5 MB PNGs) through the
    public port at the same moment. Every upload is accepted, every job is done, and no container
    restarted on the way (storage was once killed for memory by such a burst). No timing is
    asserted: bench/burst.py measures the speed."""
    from concurrent.futures import ThreadPoolExecutor

    from bench.burst import Client, make_images

    client = Client(running.frontend_url, running.env["ISLETNET_PROBE_TOKEN"])
    blobs = make_images(3, 2048, 1536)
    with ThreadPoolExecutor(30) as uploads:
        ids = list(uploads.map(lambda n: client.upload(blobs[n % 3], f"burst-{n}.png"), range(30)))
    finished = client.wait_done(ids, timeout_s=JOB_TIMEOUT_S)
    assert sorted(job["state"] for job in finished.values()) == ["done"] * 30
    engine = DockerEngine()
    restarted = {c.name: c.attrs["RestartCount"] for c in engine.client.containers.list(
        filters={"label": f"com.docker.compose.project={running.project}"}) if c.attrs["RestartCount"]}
    assert restarted == {}, f"containers restarted during the burst: {restarted}"
