"""Swarm command lines and the verdicts read from nodes, tasks and UpdateStatus (pure data)."""

from __future__ import annotations

from typing import Any

import pytest

from isletops.errors import ConfigError
from isletops.swarm_command import (
    SwarmCommand,
    convergence,
    gpu_capacity,
    node_problems,
    parse_nodes,
    parse_tasks,
    placement_problems,
    require_manager,
    service_replicas,
)

NEW = "reg:5000/isletnet-backend:T2"
OLD = "reg:5000/isletnet-backend:T1"


def node(name: str, labels: dict[str, str], state: str = "ready", availability: str = "active",
         gpus: int = 0) -> dict[str, Any]:
    generic = [{"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": gpus}}] if gpus else []
    return {"ID": name, "Spec": {"Labels": labels, "Availability": availability},
            "Description": {"Hostname": name, "Resources": {"GenericResources": generic}}, "Status": {"State": state}}


def task(state: str, image: str, desired: str = "running", err: str = "", id_: str = "t1") -> dict[str, Any]:
    return {"ID": id_, "Slot": 1, "NodeID": "n1", "DesiredState": desired,
            "Status": {"State": state, "Err": err, "ContainerStatus": {"ContainerID": "c1"}},
            "Spec": {"ContainerSpec": {"Image": f"{image}@sha256:abc"}}}


def service(replicas: int | None = 2, update: str = "") -> dict[str, Any]:
    mode = {"Replicated": {"Replicas": replicas}} if replicas is not None else {"Global": {}}
    inspected: dict[str, Any] = {"Spec": {"Name": "prod_backend", "Mode": mode}}
    if update:
        inspected["UpdateStatus"] = {"State": update, "Message": f"update {update}"}
    return inspected


def test_commands_never_carry_secret_values() -> None:
    command = SwarmCommand("prod")
    assert command.secret_create("prod_db_password_1234") == [
        "docker", "secret", "create", "--label", "com.docker.stack.namespace=prod", "prod_db_password_1234", "-"]
    assert command.update_image("backend", NEW) == [
        "docker", "service", "update", "--detach", "--with-registry-auth", "--image", NEW, "prod_backend"]
    assert command.lock_take()[-2:] == ["isletops-lock-prod", "-"]
    assert command.deploy()[-3:] == ["--compose-file", "-", "prod"] and "--prune" not in command.deploy()
    assert command.scale("shepherd", 3)[-1] == "prod_shepherd=3"


def test_not_a_manager_is_one_sentence() -> None:
    require_manager({"LocalNodeState": "active", "ControlAvailable": True}, "prod")
    for info in ({"LocalNodeState": "inactive"}, {"LocalNodeState": "active", "ControlAvailable": False}):
        with pytest.raises(ConfigError, match="not a swarm manager .*; run isletops provision --inventory"):
            require_manager(info, "prod")


STACK = {
    "queue": {"deploy": {"replicas": 1, "placement": {"constraints": ["node.labels.isletnet.storage == true"]}}},
    "shepherd": {"deploy": {"replicas": 2, "placement": {"constraints": ["node.labels.isletnet.gpu == true"]},
                            "resources": {"reservations": {"generic_resources": [
                                {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": 1}}]}}}},
    "edge": {"deploy": {"mode": "global", "placement": {"constraints": ["node.labels.isletnet.edge == true"]}}},
    "backend": {"deploy": {"replicas": 2}},
}


def test_placement_ok_when_labels_and_gpus_exist() -> None:
    nodes = parse_nodes([node("m", {"isletnet.storage": "true", "isletnet.edge": "true"}),
                         node("g", {"isletnet.gpu": "true"}, gpus=2)])
    assert placement_problems(STACK, nodes) == []
    assert gpu_capacity(nodes) == 2


def test_missing_label_names_label_and_service() -> None:
    nodes = parse_nodes([node("m", {"isletnet.edge": "true"}), node("g", {"isletnet.gpu": "true"}, gpus=2)])
    problems = placement_problems(STACK, nodes)
    assert problems == ["Service queue cannot be placed: no ready node has the label isletnet.storage == true; "
                        "add it with: docker node update --label-add isletnet.storage=true NODE."]


def test_no_gpu_node_and_too_few_gpus() -> None:
    base = {"isletnet.storage": "true", "isletnet.edge": "true"}
    assert any("Service shepherd cannot be placed" in p and "isletnet.gpu" in p
               for p in placement_problems(STACK, parse_nodes([node("m", base)])))
    few = placement_problems(STACK, parse_nodes([node("m", base), node("g", {"isletnet.gpu": "true"}, gpus=1)]))
    assert few == ["Service shepherd needs 2 x 1 NVIDIA-GPU but its nodes advertise room for 1; "
                   "list the GPUs in node-generic-resources of each GPU node's daemon.json."]


def test_down_or_drained_nodes_do_not_count() -> None:
    base = {"isletnet.storage": "true", "isletnet.edge": "true"}
    for broken in (node("m", base, state="down"), node("m", base, availability="drain")):
        nodes = parse_nodes([broken, node("g", {"isletnet.gpu": "true"}, gpus=2)])
        assert {p.split()[1] for p in placement_problems(STACK, nodes)} == {"queue", "edge"}
    assert gpu_capacity(parse_nodes([node("g", {"isletnet.gpu": "true"}), node("h", {"isletnet.gpu": "true"})])) == 2


def tasks(*raw: dict[str, Any]) -> list:
    return parse_tasks(raw, "backend")


def test_converged_when_all_replicas_run_the_new_image() -> None:
    result = convergence(service(2, "completed"), tasks(task("running", NEW, id_="a"), task("running", NEW, id_="b"),
                                                        task("shutdown", OLD, desired="shutdown", id_="c")), NEW)
    assert result.done and not result.failed


def test_waiting_while_updating_or_short_of_replicas() -> None:
    assert convergence(service(2, "updating"), tasks(task("running", NEW)), NEW).waiting
    waiting = convergence(service(2), tasks(task("running", NEW), task("starting", NEW, id_="b")), NEW)
    assert not waiting.done and "1/2 tasks running" in waiting.waiting
    assert not convergence(service(1), tasks(task("running", OLD)), NEW).done


def test_paused_update_is_a_failure_with_the_task_error() -> None:
    result = convergence(service(2, "paused"), tasks(
        task("failed", NEW, desired="shutdown", err="task: non-zero exit (1)"), task("running", OLD, id_="b")), NEW)
    assert result.failed == "update paused: task: non-zero exit (1)"


def test_rejected_task_fails_without_waiting() -> None:
    result = convergence(service(1), tasks(task("rejected", NEW, err="No such image: reg:5000/x")), NEW)
    assert "rejected: No such image" in result.failed


def test_global_service_converges_on_its_running_tasks() -> None:
    assert convergence(service(None), tasks(task("running", NEW)), NEW).done
    assert not convergence(service(None), tasks(task("running", NEW), task("preparing", NEW, id_="b")), NEW).done


def test_a_down_node_is_named_with_its_message() -> None:
    raw = node("worker-2", {}, state="down")
    raw["Status"]["Message"] = "heartbeat failure"
    assert node_problems(parse_nodes([node("manager-1", {}), raw])) == [
        "node worker-2 (worker) is down: heartbeat failure"]
    assert node_problems(parse_nodes([node("manager-1", {})])) == []


def test_replicas_short_name_the_newest_task_error() -> None:
    older = task("failed", NEW, desired="shutdown", err="old error", id_="a")
    newer = task("rejected", NEW, err="No such image: reg:5000/x", id_="b")
    older["Status"]["Timestamp"], newer["Status"]["Timestamp"] = "2026-12-05T01:00:00Z", "2026-12-05T02:00:00Z"
    short = service_replicas("backend", service(2), tasks(task("running", NEW, id_="c"), older, newer))
    assert (short.desired, short.running, short.ok) == (2, 1, False)
    assert short.problem == "task rejected: No such image: reg:5000/x"
    full = service_replicas("backend", service(2), tasks(task("running", NEW, id_="c"), task("running", NEW)))
    assert full.ok and full.problem == ""


def test_replicas_of_a_paused_update_or_a_missing_service_are_problems() -> None:
    paused = service_replicas("backend", service(1, "paused"), tasks(task("running", OLD)))
    assert not paused.ok and paused.problem == "update paused: update paused"
    assert service_replicas("backend", None, []).problem == "the service does not exist"
    assert service_replicas("edge", service(None), tasks(task("running", NEW))).ok  # global: its tasks
