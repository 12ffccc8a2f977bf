"""SwarmEngine over a scripted docker CLI: refusals before any change, secrets on stdin, a stack
file naming only the level's services, the health wait on UpdateStatus and tasks."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from isletops.config import InstanceConfig, SiteConfig, read_env_file
from isletops.engines import engine_for
from isletops.engines.base import HealthPolicy
from isletops.engines.health import HealthFailed
from isletops.engines.swarm import SwarmEngine
from isletops.errors import ConfigError, DeployError, DockerError, LockError

MANAGER = {"LocalNodeState": "active", "ControlAvailable": True}
LABELS = {"isletnet.storage": "true", "isletnet.edge": "true", "isletnet.gpu": "true"}
ENV = "S3_ACCESS_KEY=ak\nS3_SECRET_KEY=sk\nDB_PASSWORD=pw\n"


class FakeDocker:
    """Answers the docker CLI lines the engine runs; records every call and its stdin."""

    def __init__(self, info: dict[str, Any] = MANAGER, labels: dict[str, str] = LABELS) -> None:
        self.info = info
        self.labels = labels
        self.calls: list[tuple[list[str], str | None]] = []
        self.secrets: set[str] = set()
        self.service: dict[str, Any] = {}
        self.tasks: list[dict[str, Any]] = []
        self.node_ps: list[str] = [""]
        self.configs: dict[str, str] = {}
        self.pull_check = ("complete", "")  # the one-shot pull task's state and error on node n1
        self.pruned: set[str] = set()  # task ids `service ps` lists but gone by `inspect` (history pruned)
        self.inspect_error = ""  # another failure of `docker inspect` on tasks

    def __call__(self, argv: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        self.calls.append((argv, stdin))
        args = argv[1:]
        out, rc = "", 0
        if args[:1] == ["info"]:
            out = json.dumps(self.info)
        elif args[:2] == ["config", "create"]:
            if args[-2] in self.configs:
                return subprocess.CompletedProcess(argv, 1, "", "Error response from daemon: rpc error: code = "
                                                   "AlreadyExists desc = config isletops-lock-prod already exists")
            self.configs[args[-2]] = stdin or ""
        elif args[:2] == ["config", "inspect"]:
            if args[-1] not in self.configs:  # as docker answers
                return subprocess.CompletedProcess(argv, 1, "[]\n", f"Error: no such config: {args[-1]}")
            data = base64.b64encode(self.configs[args[-1]].encode()).decode()
            out = json.dumps([{"Spec": {"Name": args[-1], "Data": data}}])
        elif args[:2] == ["config", "rm"]:
            self.configs.pop(args[-1], None)
        elif args[:2] == ["node", "ps"]:
            out = self.node_ps.pop(0) if len(self.node_ps) > 1 else self.node_ps[0]
        elif args[:2] == ["node", "ls"]:
            out = "n1\n"
        elif args[:2] == ["node", "inspect"]:
            out = json.dumps([{"ID": "n1", "Spec": {"Labels": self.labels, "Availability": "active"},
                               "Description": {"Hostname": "node-1"}, "Status": {"State": "ready"}}])
        elif args[:2] == ["secret", "inspect"]:
            rc = 0 if args[-1] in self.secrets else 1
        elif args[:2] == ["secret", "create"]:
            self.secrets.add(args[-2])
        elif args[:2] == ["service", "inspect"]:
            out, rc = (json.dumps([self.service]), 0) if self.service else ("", 1)
        elif args[:2] == ["service", "ps"] and args[-1].startswith("isletops-pull-check-"):
            out = "pull1"
        elif args[:1] == ["inspect"] and "pull1" in args:
            out = json.dumps([{"ID": "pull1", "NodeID": "n1", "DesiredState": "shutdown",
                               "Status": {"State": self.pull_check[0], "Err": self.pull_check[1]}}])
        elif args[:2] == ["service", "ps"]:
            out = "\n".join(t["ID"] for t in self.tasks)
        elif args[:1] == ["inspect"] and "task" in args:
            # as the docker CLI does: what exists on stdout, one "No such task" line per missing id, exit 1
            out = json.dumps([t for t in self.tasks if t["ID"] not in self.pruned])
            missing = "".join(f"Error: No such task: {t}\n" for t in args[3:] if t in self.pruned)
            if missing or self.inspect_error:
                return subprocess.CompletedProcess(argv, 1, out, missing + self.inspect_error)
        elif args[:1] == ["inspect"]:
            rc = 1  # the container is on another node
        elif args[:2] == ["service", "logs"]:
            out = "Traceback: boom\n"
        return subprocess.CompletedProcess(argv, rc, out, "")

    def ran(self, *prefix: str) -> list[tuple[list[str], str | None]]:
        return [(argv, stdin) for argv, stdin in self.calls if argv[1:1 + len(prefix)] == list(prefix)]


def make_engine(tmp_path: Path, docker: FakeDocker) -> SwarmEngine:
    directory = tmp_path / "prod"
    directory.mkdir(exist_ok=True)
    (directory / ".env").write_text(ENV)
    instance = InstanceConfig(name="prod", directory=directory, engine="swarm")
    return SwarmEngine(SiteConfig(source=None), instance, runner=docker, clock=iter(range(0, 10_000, 5)).__next__,
                       sleep=lambda _: None)


def task(state: str, image: str, desired: str = "running", err: str = "") -> dict[str, Any]:
    return {"ID": f"task-{state}-{image[-2:]}", "Slot": 1, "NodeID": "n1", "DesiredState": desired,
            "Status": {"State": state, "Err": err, "Timestamp": "2026-12-04T23:00:00.123456789Z",
                       "ContainerStatus": {"ContainerID": "c1"}},
            "Spec": {"ContainerSpec": {"Image": f"{image}@sha256:ab"}}}


def test_engine_for_picks_swarm(tmp_path: Path) -> None:
    instance = InstanceConfig(name="prod", directory=tmp_path, engine="swarm")
    assert engine_for(SiteConfig(source=None), instance).name == "swarm"


def test_not_a_manager_changes_nothing(tmp_path: Path) -> None:
    docker = FakeDocker(info={"LocalNodeState": "inactive"})
    with pytest.raises(ConfigError, match="This host is not a swarm manager"):
        make_engine(tmp_path, docker).prepare("2026-12-04_01", "reg:5000")
    assert [argv[1] for argv, _ in docker.calls] == ["info"]


def test_plan_refuses_first_so_a_deploy_touches_nothing(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, FakeDocker(labels={"isletnet.edge": "true", "isletnet.gpu": "true"}))
    engine.instance.env_file.unlink()  # a first deploy: no .env yet, and none is written by a plan
    with pytest.raises(ConfigError, match="Service queue cannot be placed.*Nothing was changed"):
        engine.plan("2026-12-04_01", "reg:5000")
    assert not engine.instance.env_file.exists()
    with pytest.raises(ConfigError, match="not a swarm manager"):
        make_engine(tmp_path, FakeDocker(info={"LocalNodeState": "inactive"})).plan("2026-12-04_01", "reg:5000")


def test_missing_label_refused_before_secrets(tmp_path: Path) -> None:
    docker = FakeDocker(labels={"isletnet.edge": "true", "isletnet.gpu": "true"})
    with pytest.raises(ConfigError, match="Service queue cannot be placed.*isletnet.storage"):
        make_engine(tmp_path, docker).prepare("2026-12-04_01", "reg:5000")
    assert not docker.ran("secret", "create") and not docker.ran("stack")


def test_no_gpu_node_refused(tmp_path: Path) -> None:
    docker = FakeDocker(labels={"isletnet.storage": "true", "isletnet.edge": "true"})
    with pytest.raises(ConfigError, match="Service shepherd cannot be placed.*isletnet.gpu"):
        make_engine(tmp_path, docker).prepare("2026-12-04_01", "reg:5000")


def test_secrets_created_once_on_stdin(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.prepare("2026-12-04_01", "reg:5000")
    created = docker.ran("secret", "create")
    probe_token = read_env_file(engine.instance.env_file)["ISLETNET_PROBE_TOKEN"]  # generated by prepare
    assert {stdin for _, stdin in created} == {"ak", "sk", "pw", "postgresql://isletnet:pw@queue:5432/isletnet",
                                               probe_token}
    assert all("pw" not in " ".join(argv) and argv[-1] != "sk" for argv, _ in created)
    engine.prepare("2026-12-04_01", "reg:5000")
    assert len(docker.ran("secret", "create")) == len(created)  # a second prepare creates none


def test_replace_deploys_only_the_named_services(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.prepare("2026-12-04_01", "reg:5000")
    engine.replace(["queue", "storage"], 30)
    (argv, stdin), = docker.ran("stack", "deploy")
    assert argv[-3:] == ["--compose-file", "-", "prod"] and "--prune" not in argv
    document = yaml.safe_load(stdin or "")
    assert set(document["services"]) == {"queue", "storage"}
    assert set(document["secrets"]) >= {"DB_PASSWORD"}


def test_plan_levels_and_recreate(tmp_path: Path) -> None:
    plan = make_engine(tmp_path, FakeDocker()).plan("2026-12-04_01", "reg:5000")
    assert plan.levels[0] == ("queue", "storage") and plan.levels[-1] == ("edge",)
    assert {step.strategy.value for step in plan.steps} == {"recreate"}


def test_wait_healthy_converges(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.prepare("2026-12-04_01", "reg:5000")
    image = "reg:5000/isletnet-backend:2026-12-04_01"
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 1}}},
                      "UpdateStatus": {"State": "completed"}}
    docker.tasks = [task("running", image)]
    engine.wait_healthy(["backend"], HealthPolicy(timeout_s=60))
    assert engine.runs_image("backend", image)
    assert engine.running_release(["backend"]) == {"backend": ["2026-12-04_01"]}
    (state,) = engine.service_states(["backend"])
    assert state.is_ready and state.started_at is not None


def test_paused_update_fails_with_task_error_and_logs(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.prepare("2026-12-04_01", "reg:5000")
    image = "reg:5000/isletnet-backend:2026-12-04_01"
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 1}}},
                      "UpdateStatus": {"State": "paused", "Message": "update paused due to failure"}}
    docker.tasks = [task("failed", image, desired="shutdown", err="task: non-zero exit (1)"),
                    task("running", "reg:5000/isletnet-backend:2026-12-01_01")]
    with pytest.raises(HealthFailed) as caught:
        engine.wait_healthy(["backend"], HealthPolicy(timeout_s=60))
    assert "backend did not become healthy on the swarm (update paused: task: non-zero exit (1))" in str(caught.value)
    assert "Traceback: boom" in caught.value.details
    assert "non-zero exit (1)" in caught.value.details


def test_never_converging_times_out(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.prepare("2026-12-04_01", "reg:5000")
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 2}}}}
    docker.tasks = [task("starting", "reg:5000/isletnet-backend:2026-12-04_01")]
    with pytest.raises(HealthFailed, match="not converged within 60 s"):
        engine.wait_healthy(["backend"], HealthPolicy(timeout_s=60))


def test_scale_beyond_gpu_capacity_is_refused(tmp_path: Path) -> None:
    docker = FakeDocker()  # one ready node labelled gpu, no generic resources: room for one
    engine = make_engine(tmp_path, docker)
    with pytest.raises(ConfigError, match="The GPU nodes hold 1 shepherd task"):
        engine.scale("shepherd", 2, HealthPolicy(timeout_s=60))
    assert not docker.ran("service", "scale")


def test_scale_waits_until_the_tasks_run(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 1}}}}
    docker.tasks = [task("running", "reg/isletnet-backend:T1"), {**task("running", "reg/isletnet-backend:T1"),
                                                                  "ID": "other"}]
    engine.scale("backend", 2, HealthPolicy(timeout_s=60))
    assert docker.ran("service", "scale")[0][0][-1] == "prod_backend=2"
    assert engine.replicas("backend") == 1  # what the (scripted) service says


def test_scale_refuses_a_compose_instance(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from isletops.cli import main

    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({"instances_root": str(tmp_path), "instances": {"prod": {}}}))
    result = CliRunner().invoke(main, ["--config", str(config), "-i", "prod", "scale", "shepherd", "2"])
    assert result.exit_code != 0 and "scaling is for engine swarm" in result.output


def test_drain_waits_until_the_node_runs_nothing(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.node_ps = ["Running 1 minute ago|prod_backend.1\n", "Running 1 second ago|prod_backend.1\n",
                      "Shutdown 1 second ago|prod_backend.1\n"]
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 1}}}}
    docker.tasks = [task("running", "reg/isletnet-backend:T1")]
    assert engine.drain_node("node-2", HealthPolicy(timeout_s=60)) == ["prod_backend"]
    assert docker.ran("node", "update")[0][0][-3:] == ["--availability", "drain", "node-2"]
    assert len(docker.ran("node", "ps")) == 3


def test_restart_waits_until_the_old_tasks_are_replaced_and_the_new_run(tmp_path: Path) -> None:
    """No release is prepared for a restart: the image waited for is the one the service runs."""
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.service = {"Spec": {"Name": "prod_pruner", "Mode": {"Replicated": {"Replicas": 1}},
                               "TaskTemplate": {"ContainerSpec": {"Image": "reg/isletnet-pruner:T1@sha256:ab"}}},
                      "UpdateStatus": {"State": "completed"}}
    old = task("running", "reg/isletnet-pruner:T1")
    new = {**task("running", "reg/isletnet-pruner:T1"), "ID": "task-new"}
    listings = iter([[old], [old], [{**old, "DesiredState": "shutdown"}, new]])

    def forced(argv: list[str], stdin: str | None) -> subprocess.CompletedProcess:
        if argv[1:3] == ["service", "ps"]:
            docker.tasks = next(listings, docker.tasks)
        return FakeDocker.__call__(docker, argv, stdin)

    engine.runner = forced
    states = engine.restart(["pruner"], HealthPolicy(timeout_s=60))
    assert docker.ran("service", "update")[0][0][-2:] == ["--force", "prod_pruner"]
    assert [(s.name, s.state) for s in states] == [("prod_pruner.1.task-new", "running")]
    assert len(docker.ran("service", "ps")) >= 3  # it waited until the old task was no longer wanted


def test_a_task_pruned_between_listing_and_inspect_is_skipped(tmp_path: Path) -> None:
    """Swarm prunes old tasks (history retention) between `service ps` and `inspect`: the
    others are still read; the run failed on it once in CI ("No such task")."""
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.service = {"Spec": {"Name": "prod_backend", "Mode": {"Replicated": {"Replicas": 1}}}}
    docker.tasks = [task("running", "reg/isletnet-backend:T2"), task("shutdown", "reg/isletnet-backend:T1", "shutdown")]
    docker.pruned = {docker.tasks[1]["ID"]}
    assert [s.state for s in engine.service_states(["backend"])] == ["running"]


def test_a_task_inspect_failing_otherwise_is_an_error(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.tasks = [task("running", "reg/isletnet-backend:T2")]
    docker.inspect_error = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock.\n"
    with pytest.raises(DockerError, match="docker inspect \\(tasks\\) failed: Cannot connect"):
        engine.service_states(["backend"])


def test_drain_that_never_empties_says_so(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    docker.node_ps = ["Running 1 minute ago|prod_queue.1\n"]
    with pytest.raises(DeployError, match="Node node-1 still runs 1 task"):
        engine.drain_node("node-1", HealthPolicy(timeout_s=60))


def test_same_image_under_a_new_tag_is_kept_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isletops.registry import RegistryClient

    asked: list[tuple[str, str, str]] = []

    def digest(client: RegistryClient, repository: str, tag: str) -> str:
        asked.append((client.address.base_url, repository, tag))
        return "sha256:ab" if tag == "T2" else "sha256:other"

    monkeypatch.setattr(RegistryClient, "manifest_digest", digest)
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.site = SiteConfig(source=None, registry="http://reg:5000")
    docker.service = {"Spec": {"Name": "prod_edge", "Mode": {"Global": {}}}}
    docker.tasks = [task("running", "reg:5000/isletnet-edge:T1")]  # pinned to sha256:ab
    assert engine.runs_image("edge", "reg:5000/isletnet-edge:T2")
    assert not engine.runs_image("edge", "reg:5000/isletnet-edge:T3")
    assert asked[0] == ("http://reg:5000", "isletnet-edge", "T2")


def test_cluster_lock_is_held_by_one_operator(tmp_path: Path) -> None:
    docker = FakeDocker()  # one swarm: two engines (two operators on two managers) share it
    first, second = make_engine(tmp_path, docker), make_engine(tmp_path, docker)
    release = first.take_cluster_lock("deploy 2026-12-04_02 by alice@node-1")
    with pytest.raises(LockError, match="holds the swarm's lock isletops-lock-prod: deploy 2026-12-04_02 by alice"):
        second.take_cluster_lock("deploy 2026-12-04_03 by bob@node-2")
    release()
    second.take_cluster_lock("deploy 2026-12-04_03 by bob@node-2")()
    assert docker.configs == {}


def test_a_hold_by_hand_is_the_same_config_and_only_its_holder_releases_it(tmp_path: Path) -> None:
    docker = FakeDocker()
    alice, bob = make_engine(tmp_path, docker), make_engine(tmp_path, docker)
    assert alice.cluster_lock_holder() == ""
    alice.take_cluster_lock("alice@node-1 (by hand, manual): upgrade", by_hand=True)
    assert bob.cluster_lock_holder() == "alice@node-1 (by hand, manual): upgrade"
    with pytest.raises(LockError, match="Another operator holds .* alice@node-1") as refused:
        bob.take_cluster_lock("deploy 2026-12-04_03 by bob@node-2")
    assert "'isletops lock release' on the manager that took it" in (refused.value.hint or "")
    assert not bob.release_cluster_lock("deploy 2026-12-04_03 by bob@node-2")
    assert list(docker.configs) == ["isletops-lock-prod"]
    assert alice.release_cluster_lock("alice@node-1 (by hand, manual): upgrade")
    assert docker.configs == {} and bob.cluster_lock_holder() == ""


def test_a_node_that_cannot_pull_is_refused_before_any_change(tmp_path: Path) -> None:
    docker = FakeDocker()
    docker.pull_check = ("rejected", "No such image: 127.0.0.1:5000/isletnet-edge:2026-12-04_01")
    engine = make_engine(tmp_path, docker)
    engine.plan("2026-12-04_01", "127.0.0.1:5000")  # reads only: a dry run creates no check service
    assert not docker.ran("service", "create")
    with pytest.raises(ConfigError) as refused:
        engine.verify("2026-12-04_01", "127.0.0.1:5000")
    assert str(refused.value).startswith(
        "The swarm's nodes cannot pull 127.0.0.1:5000/isletnet-edge:2026-12-04_01 from the registry "
        "127.0.0.1:5000 (node node-1: No such image: ")
    assert "nothing was changed on the swarm" in str(refused.value)
    assert not docker.ran("stack", "deploy") and not docker.ran("secret", "create")
    assert docker.ran("service", "rm")[-1][0][-1] == "isletops-pull-check-prod"  # the check is gone


def test_the_pull_check_runs_once_per_image(tmp_path: Path) -> None:
    docker = FakeDocker()
    engine = make_engine(tmp_path, docker)
    engine.verify("2026-12-04_01", "reg:5000")
    engine.verify("2026-12-04_01", "reg:5000")
    assert len(docker.ran("service", "create")) == 1
