"""`engine: swarm` on a real nested 3-node swarm (one per module; the first deploy proves its
nodes, labels, registry and overlay network), the cluster lock as a Swarm config, then through
the real CLI: refusals that change
nothing (not a manager, a missing node label), the first deploy of a release (every task healthy
on the new image, the edge answering in host mode), T1 -> T2 under load through the edge with no
failed request, a broken release rolled back stack-wide with exit 2 -- under the same load, so a
broken task never takes the old ones down. `isletops rollback` takes the path of that automatic
rollback (the deploy logic is the same for every engine; its own tests run on compose and over
the fake engine), so it has no separate, 2-minute run here.

The load is bench/deploy_under_load.py's generator (GET /, /api/jobs, /api/models and an
image-less POST /api/jobs through the edge); each measured step prints its bench row (run with
-s to read them; the README's Swarm section quotes them)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
import yaml

from bench.deploy_under_load import Load, LoadReport
from isletops.config import InstanceConfig, SiteConfig
from isletops.engines.swarm import SwarmEngine
from isletops.errors import LockError
from isletops.release import COMPONENTS
from tests.fixtures.swarm import NestedSwarm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

T1, T2, T3 = "2026-12-04_01", "2026-12-04_02", "2026-12-04_03"
# T2 changes the backend, 2 tasks rolled one slot at a time behind the frontends' nginx (the
# frontends' own roll behind the edge is the same DNS mechanism; on compose both are rolled). The
# others keep their image and are left running.
CHANGED_IN_T2 = ("backend",)
HTTP_PORT = 18080
LOAD_RATE = 10.0  # requests per second through the edge, in all
REPORTS: list[LoadReport] = []


def _variant(base: str, target: str, line: str) -> None:
    """Build `target` as `base` plus one Dockerfile line (a new image id, so a new release)."""
    subprocess.run(["docker", "build", "--quiet", "--label", "org.isletnet.test=1", "-t", target, "-"],
                   input=f"FROM {base}\n{line}\n", text=True, check=True, capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def releases(nested_swarm: NestedSwarm, service_images: dict[str, str]) -> dict[str, str]:
    """T1: the built images; T2: backend and frontend with one more label; T3: T1 with a backend
    that exits 0 at once (the base image: Swarm counts it as started)."""
    for component in COMPONENTS:
        nested_swarm.push(service_images[component], f"isletnet-{component}:{T1}")
        if component in CHANGED_IN_T2:
            variant = f"isletnet-{component}:swarm-test-{T2}"
            _variant(service_images[component], variant, f"LABEL org.isletnet.test.release={T2}")
            nested_swarm.push(variant, f"isletnet-{component}:{T2}")
            subprocess.run(["docker", "rmi", variant], capture_output=True)
        else:
            nested_swarm.push(service_images[component], f"isletnet-{component}:{T2}")
        source = "isletnet-base:latest" if component == "backend" else service_images[component]
        nested_swarm.push(source, f"isletnet-{component}:{T3}")
    return {"T1": T1, "T2": T2, "T3": T3}


@pytest.fixture(scope="module")
def site(nested_swarm: NestedSwarm, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("swarm-site")
    config = root / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "registry": f"http://{nested_swarm.node_registry}",
        "instances_root": str(root / "instances"),
        "instances": {"prod": {"engine": "swarm", "http_port": HTTP_PORT,
                               "bind_address": nested_swarm.manager.address, "health_timeout_s": 240,
                               "swarm": {"backend_replicas": 2, "frontend_replicas": 2}}},
    }))
    yield config


def isletops(config: Path, cli: str, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "ISLETOPS_SWARM_DOCKER": cli}
    return subprocess.run(
        [str(Path(".venv/bin/isletops").resolve()), "--config", str(config), "-i", "prod", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def under_load(swarm: NestedSwarm, site: Path, name: str, operation: Callable[[], subprocess.CompletedProcess]
               ) -> tuple[subprocess.CompletedProcess, LoadReport]:
    """Run `operation` while the bench's load, signed in as the probe account, goes through the
    edge; print the bench row."""
    address = swarm.manager.address
    load = Load(f"http://{address}:{HTTP_PORT}", LOAD_RATE, headers=probe_auth(site), also_allowed=(address,))
    done: list[subprocess.CompletedProcess] = []
    report = load.measure(name, lambda: done.append(operation()))
    REPORTS.append(report)
    latency = f"{report.get_p50_s:.2f}/{report.get_p99_s:.2f}/{report.get_max_s:.2f}s"
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(report.errors.items())) or "-"
    print(f"\nswarm bench: {name}: {report.duration_s:.0f} s, failed/total {report.failed}/{report.total}, "  # noqa: T201
          f"GET p50/p99/max {latency}, load {report.load_average:.2f} ({os.cpu_count()} cores), errors {errors}")
    return done[0], report


def manager_cli(swarm: NestedSwarm) -> str:
    return f"docker exec -i {swarm.manager.name} docker"


def services(swarm: NestedSwarm) -> dict[str, str]:
    rows = swarm.manager.docker("service", "ls", "--format", "{{.Name}} {{.Image}}").stdout.split("\n")
    return dict(row.split(" ", 1) for row in rows if row)


def test_the_cluster_lock_is_a_swarm_config_one_operator_holds(nested_swarm: NestedSwarm, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ISLETOPS_SWARM_DOCKER", f"docker exec -i {nested_swarm.manager.name} docker")
    instance = InstanceConfig(name="locktest", directory=tmp_path, engine="swarm")
    alice, bob = SwarmEngine(SiteConfig(source=None), instance), SwarmEngine(SiteConfig(source=None), instance)
    release = alice.take_cluster_lock("deploy T2 by alice@node-1")
    with pytest.raises(LockError, match="holds the swarm's lock isletops-lock-locktest: deploy T2 by alice@node-1"):
        bob.take_cluster_lock("deploy T3 by bob@node-2")
    release()
    bob.take_cluster_lock("deploy T3 by bob@node-2")()
    assert "isletops-lock" not in nested_swarm.manager.docker("config", "ls").stdout

    # A hold by hand is cluster-wide: two managers (two site configs, two state folders, one swarm).
    managers = {}
    for name in ("alice", "bob"):
        config = tmp_path / name / "isletops.yml"
        config.parent.mkdir()
        config.write_text(yaml.safe_dump({"instances_root": str(tmp_path / name / "instances"),
                                          "instances": {"locktest": {"engine": "swarm"}}}))
        managers[name] = config

    def lock(who: str, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(".venv/bin/isletops").resolve()), "--config", str(managers[who]), "-i",
                               "locktest", "lock", *args], capture_output=True, text=True, timeout=120)

    taken = lock("alice", "acquire", "-m", "database upgrade")
    assert taken.returncode == 0, taken.stderr
    assert "is locked (on every host of the swarm cluster): database upgrade" in taken.stdout
    seen = lock("bob", "status")
    assert seen.returncode == 1 and "cluster-wide lock held:" in seen.stdout and "database upgrade" in seen.stdout
    refused = lock("bob", "acquire", "-m", "mine")
    assert refused.returncode != 0 and "Another operator holds the swarm's lock" in refused.stderr
    assert "database upgrade" in refused.stderr and "Traceback" not in refused.stderr
    assert lock("bob", "status").returncode == 1  # bob's refused hold left his file lock free
    not_his = lock("bob", "release")
    assert not_his.returncode != 0 and "held from another host" in not_his.stderr
    released = lock("alice", "release")
    assert released.returncode == 0 and "the swarm lock" in released.stdout, released.stdout + released.stderr
    assert lock("bob", "status").returncode == 0
    assert "isletops-lock" not in nested_swarm.manager.docker("config", "ls").stdout


def test_a_worker_is_not_a_manager(nested_swarm: NestedSwarm, site: Path, releases: dict[str, str]) -> None:
    result = isletops(site, f"docker exec -i {nested_swarm.workers[0].name} docker", "deploy", "--tag", T1,
                      "--no-e2e")
    assert result.returncode != 0
    assert "This host is not a swarm manager" in result.stderr + result.stdout
    assert "isletops provision --inventory" in result.stderr + result.stdout
    assert services(nested_swarm) == {}


def test_missing_node_label_names_label_and_service(nested_swarm: NestedSwarm, site: Path,
                                                    releases: dict[str, str]) -> None:
    manager = nested_swarm.manager
    manager.docker("node", "update", "--label-rm", "isletnet.storage", manager.name)
    try:
        result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T1, "--no-e2e")
    finally:
        manager.docker("node", "update", "--label-add", "isletnet.storage=true", manager.name)
    output = result.stderr + result.stdout
    assert result.returncode != 0
    assert "Service storage cannot be placed: no ready node has the label isletnet.storage == true" in output
    assert services(nested_swarm) == {}


def test_first_deploy_converges_and_the_edge_answers(nested_swarm: NestedSwarm, site: Path,
                                                     releases: dict[str, str]) -> None:
    started = time.monotonic()
    result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T1, "--no-e2e")
    took = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    images = services(nested_swarm)
    assert set(images) == {f"prod_{c}" for c in COMPONENTS}
    assert all(image.endswith(f":{T1}") for image in images.values()), images
    response = requests.get(f"http://{nested_swarm.manager.address}:{HTTP_PORT}/api/health", timeout=10)
    assert response.status_code == 200
    print(f"first swarm deploy took {took:.0f} s")  # noqa: T201 - the figure for the README


def test_status_logs_restart_and_doctor_work_on_the_swarm(nested_swarm: NestedSwarm, site: Path,
                                                          releases: dict[str, str]) -> None:
    """The day-to-day commands, unchanged, read and act through the swarm engine."""
    cli = manager_cli(nested_swarm)
    status = isletops(site, cli, "status")
    assert status.returncode == 0 and f"release {T1}" in status.stdout, status.stdout + status.stderr
    logs = isletops(site, cli, "logs", "backend", "--tail", "5")
    assert logs.returncode == 0 and "prod_backend." in logs.stdout, logs.stdout + logs.stderr
    # The edge: one task, a 5 s health interval (Swarm's update monitor is 30 s; the pruner's, 90 s).
    before = nested_swarm.manager.docker("service", "ps", "-q", "--filter", "desired-state=running",
                                         "prod_edge").stdout.split()
    restart = isletops(site, cli, "restart", "edge")
    assert restart.returncode == 0, restart.stdout + restart.stderr
    after = nested_swarm.manager.docker("service", "ps", "-q", "--filter", "desired-state=running",
                                        "prod_edge").stdout.split()
    assert after and set(after).isdisjoint(before), (before, after)  # a new task, running
    healthy = isletops(site, cli, "doctor", "--area", "containers", "--area", "drift", "--json")
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert json.loads(healthy.stdout)["status"] == "OK", healthy.stdout


def test_a_registry_the_nodes_cannot_reach_is_refused_before_any_change(
        nested_swarm: NestedSwarm, site: Path, releases: dict[str, str]) -> None:
    """The host reaches the registry on its 127.0.0.1 (the release is complete there); the nodes
    cannot (127.0.0.1 is each node itself): one sentence, no service changed, no check left."""
    before = services(nested_swarm)
    result = isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T2, "--registry",
                      nested_swarm.push_registry, "--no-e2e")
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert (f"The swarm's nodes cannot pull {nested_swarm.push_registry}/isletnet-edge:{T2} from the registry "
            f"{nested_swarm.push_registry} (node ") in output, output
    assert "nothing was changed on the swarm" in output and "Traceback" not in output
    assert services(nested_swarm) == before


def test_deploy_t2_under_load_fails_no_request(nested_swarm: NestedSwarm, site: Path,
                                               releases: dict[str, str]) -> None:
    result, report = under_load(nested_swarm, site, f"isletops deploy --tag {T2}",
                                lambda: isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T2, "--no-e2e"))
    assert result.returncode == 0, result.stdout + result.stderr
    images = services(nested_swarm)
    assert all(images[f"prod_{c}"].endswith(f":{T2}") for c in CHANGED_IN_T2), images
    assert report.total > 0 and report.failed == 0, report


def test_broken_release_is_rolled_back_stack_wide_and_no_request_fails(
        nested_swarm: NestedSwarm, site: Path, releases: dict[str, str]) -> None:
    """T3's backend exits 0 at once, which Swarm counts as a started task: its update must pause
    before a second old backend is stopped, so the edge keeps answering throughout."""
    result, report = under_load(nested_swarm, site, f"isletops deploy --tag {T3} (broken, rolled back)",
                                lambda: isletops(site, manager_cli(nested_swarm), "deploy", "--tag", T3, "--no-e2e"))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "backend did not become healthy on the swarm" in output
    images = services(nested_swarm)
    assert all(images[f"prod_{c}"].endswith(f":{T2}") for c in CHANGED_IN_T2), images
    assert all(image.rsplit(":", 1)[-1] in (T1, T2) for image in images.values()), images  # queue, storage too
    history = isletops(site, manager_cli(nested_swarm), "history", "--json")
    entries = [json.loads(line) for line in history.stdout.splitlines() if line.strip()]
    attempt = next(e for e in reversed(entries) if e["to_tag"] == T3)
    assert attempt["result"] != "success", attempt
    assert report.total > 0 and report.failed == 0, report


def probe_containers(site: Path, swarm: NestedSwarm) -> tuple[int, dict]:
    result = isletops(site, manager_cli(swarm), "probe", "--only", "containers", "--no-alert", "--json")
    assert result.stdout.strip(), result.stderr
    return result.returncode, json.loads(result.stdout)["results"][0]


def node_status(swarm: NestedSwarm, name: str) -> str:
    rows = swarm.manager.docker("node", "ls", "--format", "{{.Hostname}} {{.Status}}").stdout.split("\n")
    return dict(row.split(" ", 1) for row in rows if row).get(name, "")


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 2.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(poll_s)


def test_containers_probe_reads_tasks_and_alerts_on_a_down_node(nested_swarm: NestedSwarm, site: Path,
                                                                releases: dict[str, str]) -> None:
    """The GPU worker's engine stops: Swarm marks the node Down, and the shepherd, which only the
    GPU node may run, has no task running; the probe says both, then OK once the node is back."""
    code, result = probe_containers(site, nested_swarm)
    assert (code, result["status"]) == (0, "OK"), result
    gpu_node = nested_swarm.node("isletnet.gpu")
    subprocess.run(["docker", "exec", gpu_node.name, "systemctl", "stop", "docker.socket", "docker.service"],
                   check=True, capture_output=True, timeout=120)
    try:
        wait_for(lambda: node_status(nested_swarm, gpu_node.name) == "Down", 90, f"{gpu_node.name} Down")
        wait_for(lambda: "shepherd 0/1" in probe_containers(site, nested_swarm)[1]["message"], 90,
                 "the probe sees no shepherd task running")
        code, result = probe_containers(site, nested_swarm)
        assert code == 2 and result["status"] == "CRITICAL", result
        assert f"node {gpu_node.name} (worker) is down" in result["message"], result
        assert "shepherd 0/1 running (task " in result["message"], result
        doctor = isletops(site, manager_cli(nested_swarm), "doctor", "--area", "containers", "--json")
        titles = [finding["title"] for finding in json.loads(doctor.stdout)["findings"]]
        assert doctor.returncode == 2, doctor.stdout + doctor.stderr
        assert any(title.startswith(f"node {gpu_node.name} (worker) is down") for title in titles), titles
        assert "shepherd runs 0 of 1 task(s)" in titles, titles
    finally:
        subprocess.run(["docker", "exec", gpu_node.name, "systemctl", "start", "docker.service"],
                       check=True, capture_output=True, timeout=120)
    wait_for(lambda: probe_containers(site, nested_swarm)[0] == 0, 180, "the probe OK once the node is back")


def running_tasks(swarm: NestedSwarm, service: str) -> int:
    states = swarm.manager.docker("service", "ps", "--filter", "desired-state=running", "--format",
                                  "{{.CurrentState}}", f"prod_{service}").stdout.split("\n")
    return sum(1 for state in states if state.startswith("Running"))


def test_scale_waits_for_the_tasks_and_refuses_beyond_the_gpu_nodes(nested_swarm: NestedSwarm, site: Path,
                                                                    releases: dict[str, str]) -> None:
    cli = manager_cli(nested_swarm)
    up = isletops(site, cli, "scale", "backend", "3")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "backend: 2 -> 3 replicas, all running" in up.stdout
    assert running_tasks(nested_swarm, "backend") == 3
    refused = isletops(site, cli, "scale", "shepherd", "2")
    assert refused.returncode != 0
    assert "The GPU nodes hold 1 shepherd task(s); 2 asked." in refused.stderr + refused.stdout
    assert running_tasks(nested_swarm, "shepherd") == 1
    down = isletops(site, cli, "scale", "backend", "2")
    assert down.returncode == 0, down.stdout + down.stderr
    assert running_tasks(nested_swarm, "backend") == 2


def test_node_drain_waits_until_its_tasks_run_elsewhere(nested_swarm: NestedSwarm, site: Path,
                                                       releases: dict[str, str]) -> None:
    plain = next(node for node in nested_swarm.workers if not node.labels)
    try:
        result = isletops(site, manager_cli(nested_swarm), "node", "drain", plain.name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{plain.name}: drained;" in result.stdout and "no task" not in result.stdout, result.stdout
        left = nested_swarm.manager.docker("node", "ps", "--filter", "desired-state=running", "--format",
                                           "{{.CurrentState}}", plain.name).stdout.split("\n")
        assert not any(state.startswith("Running") for state in left), left
        for service in ("backend", "frontend"):
            assert running_tasks(nested_swarm, service) == 2, service
    finally:
        nested_swarm.manager.docker("node", "update", "--availability", "active", plain.name)


def probe_auth(site: Path) -> dict[str, str]:
    from isletops.config import load_config, read_env_file

    token = read_env_file(load_config(site).instance("prod").env_file)["ISLETNET_PROBE_TOKEN"]
    return {"Authorization": f"Bearer {token}"}


def submit_burst(swarm: NestedSwarm, site: Path, jobs: int, images: int = 1) -> list[str]:
    """`jobs` jobs of `images` small synthetic images each, through the edge, as the probe account."""
    from services.islets.images import encode_png
    from services.islets.synthetic import make_dtz_image

    rgb, _ = make_dtz_image(1, diameters_um=[80, 140, 200], touching_pairs=0)
    png = encode_png(rgb)
    from concurrent.futures import ThreadPoolExecutor

    def submit(index: int) -> str:
        files = [("images", (f"burst-{index}-{n}.png", png, "image/png")) for n in range(images)]
        response = requests.post(f"http://{swarm.manager.address}:{HTTP_PORT}/api/jobs", files=files,
                                 data={"priority": "0"}, headers=probe_auth(site), timeout=60)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    # All at once, as a lab uploads a sample: one after another, the overlapped shepherd finished
    # each small job before the next arrived, and the queue the autoscaler samples never grew.
    with ThreadPoolExecutor(min(jobs, 10)) as pool:
        return list(pool.map(submit, range(jobs)))


def test_autoscale_follows_a_burst_of_30_jobs_up_and_back_down(nested_swarm: NestedSwarm, site: Path,
                                                               releases: dict[str, str], tmp_path: Path) -> None:
    """A second GPU node gives room for two shepherd tasks; 30 queued jobs (target 2 per task)
    want 15: capped at 2; once the queue is empty and the cooldown passed: back to 1.

    The burst is queued while the shepherd is scaled to 0 (scale from zero, as KEDA does): a
    running shepherd drains small jobs as fast as they arrive, and twice in CI the queue the
    autoscaler samples every 3 s never held more than 4."""
    plain = next(node for node in nested_swarm.workers if not node.labels)
    manager = nested_swarm.manager
    manager.docker("node", "update", "--label-add", "isletnet.gpu=true", plain.name)
    log = tmp_path / "autoscale.log"
    env = {**os.environ, "ISLETOPS_SWARM_DOCKER": manager_cli(nested_swarm), "PYTHONUNBUFFERED": "1"}
    autoscaler: subprocess.Popen[bytes] | None = None
    try:
        manager.docker("service", "scale", "prod_shepherd=0")
        submit_burst(nested_swarm, site, 30)
        with log.open("w") as out:
            autoscaler = subprocess.Popen(
                [str(Path(".venv/bin/isletops").resolve()), "--config", str(site), "-i", "prod", "autoscale",
                 "--min", "1", "--max", "4", "--target-per-worker", "2", "--activation", "1", "--cooldown", "10",
                 "--interval", "3"], stdout=out, stderr=subprocess.STDOUT, env=env)
        wait_for(lambda: running_tasks(nested_swarm, "shepherd") == 2, 240, "two shepherd tasks under the burst")
        wait_for(lambda: running_tasks(nested_swarm, "shepherd") == 1 and "2 -> 1" in log.read_text(), 900,
                 "back to one shepherd task after the burst and the cooldown")
    finally:
        if autoscaler is not None:
            autoscaler.terminate()
            autoscaler.wait(timeout=60)
        manager.docker("node", "update", "--label-rm", "isletnet.gpu", plain.name, check=False)
        if running_tasks(nested_swarm, "shepherd") == 0:
            manager.docker("service", "scale", "prod_shepherd=1", check=False)
    decisions = log.read_text()
    print(f"\nautoscale decisions:\n{decisions}")  # noqa: T201 - the figures for the report
    assert "shepherd replicas 0 -> 2: scale up, ceil(30/2) = 15, capped at 2 (GPU capacity)" in decisions, decisions
    assert "shepherd replicas 2 -> 1:" in decisions, decisions


UNANSWERED: list[str] = []  # job polls that got no answer (a task on the killed node still in DNS)


def job_state(swarm: NestedSwarm, site: Path, job_id: str) -> dict:
    try:
        response = requests.get(f"http://{swarm.manager.address}:{HTTP_PORT}/api/jobs/{job_id}",
                                headers=probe_auth(site), timeout=10)
    except requests.RequestException as exc:
        UNANSWERED.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}")
        return {}
    if response.status_code != 200:
        UNANSWERED.append(f"{time.strftime('%H:%M:%S')} HTTP {response.status_code}")
        return {}
    return dict(response.json())


def job_events(swarm: NestedSwarm, job_id: str) -> list[str]:
    """`event worker attempt` lines of the job's history, read in the queue's database."""
    queue = swarm.manager.docker("ps", "-q", "--filter", "name=prod_queue").stdout.split()[0]
    rows = swarm.manager.docker("exec", queue, "psql", "--username", "postgres", "--dbname", "isletnet", "-tAc",
                                f"SELECT event || ' ' || coalesce(worker_id, '-') || ' ' || attempt FROM job_events "
                                f"WHERE job_id = '{job_id}' ORDER BY id").stdout
    return [row for row in rows.splitlines() if row.strip()]


def test_a_killed_gpu_node_s_job_is_done_once_by_another_shepherd(nested_swarm: NestedSwarm, site: Path,
                                                                  releases: dict[str, str]) -> None:
    """`docker kill` of the node whose shepherd task runs a job: Swarm marks it Down and starts the
    shepherd on the other GPU node; the job's lease expires and that shepherd completes it, once.
    Last in the module: the killed node stays dead until the swarm is swept."""
    plain = next(node for node in nested_swarm.workers if not node.labels)
    nested_swarm.manager.docker("node", "update", "--label-add", "isletnet.gpu=true", plain.name)

    def running_shepherds() -> list[tuple[str, str]]:
        """(node, desired state) of every shepherd task that runs, a task being stopped included."""
        rows = nested_swarm.manager.docker("service", "ps", "--format", "{{.Node}} {{.DesiredState}} {{.CurrentState}}",
                                           "prod_shepherd").stdout.splitlines()
        fields = [row.split() for row in rows]
        return [(field[0], field[1]) for field in fields if len(field) > 2 and field[2] == "Running"]

    # The autoscale test before scaled the shepherd down: its second task may still be draining
    # (its stop grace), and would take this job, on a node that is not killed.
    wait_for(lambda: [desired for _, desired in running_shepherds()] == ["Running"], 180,
             "one shepherd task running, none draining")
    running_on = [node for node, _ in running_shepherds()]
    victim = next(node for node in nested_swarm.nodes if node.name == running_on[0])
    # 96 small images: many seconds of work, so the kill lands in the middle of the job even when
    # the polls and `docker kill` are slow beside other test workers.
    job = submit_burst(nested_swarm, site, 1, images=96)[0]
    wait_for(lambda: job_state(nested_swarm, site, job).get("state") == "running", 120, "the job running",
             poll_s=0.2)
    subprocess.run(["docker", "kill", victim.name], check=True, capture_output=True, timeout=60)
    killed_at = time.monotonic()
    assert job_events(nested_swarm, job)[-1].startswith("claimed"), "the job ended before the kill landed"
    wait_for(lambda: job_state(nested_swarm, site, job).get("state") in ("done", "failed"), 600,
             "the job finished after the kill")
    took = time.monotonic() - killed_at
    state, events = job_state(nested_swarm, site, job), job_events(nested_swarm, job)
    print(f"\nnode kill: job {job} {state['state']} {took:.0f} s after the kill, attempts {state['attempts']}; "  # noqa: T201
          f"events: {events}; polls unanswered: {UNANSWERED}")
    assert state["state"] == "done", (state, events)
    assert [e.split()[0] for e in events].count("completed") == 1, events
    assert any(e.startswith("reclaimed") for e in events), events  # taken again after the lease expired
    claimers = {e.split()[1] for e in events if e.startswith(("claimed", "reclaimed"))}
    assert len(claimers) == 2, events  # the dead node's shepherd, then another one
    assert state["attempts"] == 2, state
