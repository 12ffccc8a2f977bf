"""The deploy core (`isletops.deploy.run`, `rollout`, `status`) over the fake engine and registry:
what it changes, what it leaves alone, what it records."""

import json

import pytest

from isletops import deploy
from isletops.config import InstanceConfig
from isletops.deploy import rollout
from isletops.deploy.interrupts import InterruptController
from isletops.engines.base import HealthPolicy, ServiceStep, Strategy
from isletops.engines.health import HealthFailed
from isletops.errors import DeployError, LockError, RegistryError
from isletops.lock import InstanceLock, LockDetails
from isletops.release import COMPONENTS, image_name
from tests.fakes.engine import FakeEngine
from tests.unit.conftest import FAKE_REGISTRY as REGISTRY
from tests.unit.conftest import RELEASES

T1, T2, T3 = RELEASES


def options(tag: str, **given) -> deploy.DeployOptions:
    return deploy.DeployOptions(tag=tag, registry=REGISTRY, min_free_bytes=0, resolver_ttl_s=0, **given)


def history(instance: InstanceConfig) -> list[dict]:
    path = instance.state_dir / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def deployed_to(instance, engine, registry, tag, **given):
    return deploy.deploy(instance, engine, options(tag, **given), registry=registry)


def test_a_first_deploy_pulls_prepares_rolls_over_and_records(instance, registry):
    engine = FakeEngine(REGISTRY)
    lines: list[str] = []
    result = deploy.deploy(instance, engine, options(T1), lines.append, registry)
    assert result.result == "ok"
    assert engine.tags() == {service: [T1] for service in COMPONENTS}
    assert len(engine.method_calls("pull")) == len(COMPONENTS)
    assert engine.method_calls("prepare") == [(T1, REGISTRY)]
    assert [(e["from_tag"], e["to_tag"], e["result"]) for e in history(instance)] == [("", T1, "ok")]
    assert not InstanceLock(instance.state_dir).status().held


def test_the_dry_run_plan_is_the_plan_that_runs(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1)
    verified = len(engine.method_calls("verify"))
    dry = deploy.deploy(instance, engine, options(T2, dry_run=True), registry=registry)
    assert len(engine.method_calls("verify")) == verified  # a dry run makes no check that creates anything
    real = deployed_to(instance, engine, registry, T2)
    assert dry.result == "dry-run" and real.plan == dry.plan
    assert engine.method_calls("verify")[-1] == (T2, REGISTRY)
    assert len(history(instance)) == 2  # the dry run left no line


def test_unchanged_services_are_left_running(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1)
    names = {c.service: c.name for c in engine.containers}
    lines: list[str] = []
    deploy.deploy(instance, engine, options(T1), lines.append, registry)  # the same tag again
    assert {c.service: c.name for c in engine.containers} == names
    assert "storage, queue: same image as running, kept running (no restart)" in lines


def test_a_broken_release_is_rolled_back_touching_only_what_it_changed(instance, registry):
    engine = FakeEngine(REGISTRY, broken={T3: {"backend"}})
    engine.same_image = {image_name(s, T3, REGISTRY): image_name(s, T2, REGISTRY) for s in ("storage", "queue", "edge")}
    deployed_to(instance, engine, registry, T2)
    kept = {c.service: c.name for c in engine.containers if c.service in ("storage", "queue", "backend", "frontend")}
    engine.calls.clear()
    with pytest.raises(deploy.DeployFailed) as failed:
        deployed_to(instance, engine, registry, T3)
    assert f"failed and was rolled back to {T2}" in str(failed.value)
    assert "backend did not become healthy" in str(failed.value)
    assert "p-backend-" in failed.value.details  # the failing (new) container's own output
    assert engine.tags() == {service: [T2] for service in COMPONENTS}
    # storage/queue never changed, the old backend kept serving, frontend was never reached
    assert {s: n for s, n in ((c.service, c.name) for c in engine.containers) if s in kept} == kept
    # the rollback replaced only shepherd and pruner (recreated on T3 in the failed level)
    assert engine.method_calls("replace") == [(("shepherd", "pruner"), 60), (("shepherd", "pruner"), 60)]
    last = history(instance)[-1]
    assert (last["from_tag"], last["to_tag"], last["result"]) == (T2, T3, "rolled_back")
    assert "backend did not become healthy" in last["message"]


def test_nothing_to_roll_back_to_is_said(instance, registry):
    engine = FakeEngine(REGISTRY, broken={T1: {"frontend"}})
    with pytest.raises(deploy.DeployFailed, match="nothing to roll back to"):
        deployed_to(instance, engine, registry, T1)
    assert history(instance)[-1]["result"] == "failed"


def test_a_missing_image_stops_before_anything_changes(instance, registry):
    registry.repositories[registry.address.repository("shepherd")].pop(T2)
    engine = FakeEngine(REGISTRY)
    with pytest.raises(deploy.DeployFailed, match=f"missing {image_name('shepherd', T2, REGISTRY)}"):
        deployed_to(instance, engine, registry, T2)
    assert engine.calls_besides_the_lock() == [] and history(instance)[-1]["result"] == "failed"
    assert engine.method_calls("release_cluster_lock") == engine.method_calls("take_cluster_lock") != []


def test_an_unreachable_registry_is_one_sentence_and_changes_nothing(instance, registry):
    registry.reachable = False
    engine = FakeEngine(REGISTRY)
    with pytest.raises(deploy.DeployFailed, match=f"Registry {REGISTRY} is unreachable"):
        deployed_to(instance, engine, registry, T1)
    assert engine.calls_besides_the_lock() == []


def test_the_gate_and_the_hooks_are_the_callers(instance, registry):
    engine = FakeEngine(REGISTRY)
    seen: list[str] = []
    hooks = deploy.Hooks()
    hooks.add("pre-deploy", lambda context: seen.append(f"pre {context.version}"))
    hooks.add("post-deploy", lambda context: seen.append(f"post {context.result}"))

    def gate(url: str, timeout_s: float) -> str:
        seen.append(f"gate {url}")
        return "job-1"

    deployed_to(instance, engine, registry, T1, gate=gate, hooks=hooks)
    assert seen == [f"pre {T1}", f"gate {instance.frontend_url}", "post ok"]


def test_a_failing_gate_rolls_back(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1)

    def gate(url: str, timeout_s: float) -> str:
        raise RegistryError("The synthetic job failed: no result.")

    with pytest.raises(deploy.DeployFailed, match="The synthetic job failed"):
        deployed_to(instance, engine, registry, T2, gate=gate)
    assert engine.tags() == {service: [T1] for service in COMPONENTS}


def test_retain_prune_runs_after_a_good_deploy_only(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1, retain_releases=3)
    assert engine.method_calls("prune_releases") == [(REGISTRY, 3)]
    engine.broken = {T2: {"edge"}}
    with pytest.raises(deploy.DeployFailed):
        deployed_to(instance, engine, registry, T2, retain_releases=3)
    assert len(engine.method_calls("prune_releases")) == 1


def test_the_lock_is_waited_for_inside_the_core(instance, registry):
    other = InstanceLock(instance.state_dir, "prod")
    other.acquire(LockDetails.for_this_process("manual", message="maintenance"))
    with pytest.raises(LockError, match="is locked by"):
        deployed_to(instance, FakeEngine(REGISTRY), registry, T1)
    assert history(instance) == []
    with pytest.raises(LockError):
        deployed_to(instance, FakeEngine(REGISTRY), registry, T1, lock_wait_s=0.3)
    other.release()
    assert deployed_to(instance, FakeEngine(REGISTRY), registry, T1, lock_wait_s=1).result == "ok"


def test_status_reads_the_release_from_the_containers_and_calls_a_mix_critical(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1)
    status = deploy.deployment_status(instance, engine)
    assert status.release == T1 and not status.mixed
    engine.run_release(T2, ["backend"])
    status = deploy.deployment_status(instance, engine)
    assert status.mixed and status.release == ""
    assert status.mixed_sentence().startswith(f"MIXED release: backend runs {T2}; storage, queue")
    assert status.as_dict()["running"]["backend"] == [T2]


def test_rollback_goes_to_the_previous_good_release(instance, registry):
    engine = FakeEngine(REGISTRY)
    deployed_to(instance, engine, registry, T1)
    deployed_to(instance, engine, registry, T2)
    result = deploy.rollback(instance, engine, None, options(""), registry=registry)
    assert result.plan.to_tag == T1 and engine.tags() == {service: [T1] for service in COMPONENTS}
    with pytest.raises(DeployError, match="no earlier successful release"):
        deploy.rollback(instance, engine, None, options(""), registry=registry)


def test_leftover_containers_converge_to_one():
    engine = FakeEngine(REGISTRY)
    engine.run_release(T1, ["backend"])
    engine.containers.append(engine._container("backend", T1, healthy=True))  # e.g. left by a crash
    engine.prepare(T2, REGISTRY)
    settings = rollout.RolloutSettings(HealthPolicy(5), 7, 0)
    with InterruptController() as interrupts:
        rollout.roll_level(engine, [ServiceStep("backend", Strategy.START_FIRST)], settings, interrupts, print)
    assert engine.method_calls("start_beside") == [("backend",)]  # one new container, not one per old one
    assert engine.tags()["backend"] == [T2] and len(engine.containers) == 1


def test_a_failure_after_the_start_beside_removes_the_new_container_and_keeps_the_old():
    engine = FakeEngine(REGISTRY, broken={T2: {"backend"}})
    engine.run_release(T1, ["backend"])
    [old] = [c.name for c in engine.containers]
    engine.prepare(T2, REGISTRY)
    lines: list[str] = []
    with pytest.raises(HealthFailed), InterruptController() as interrupts:
        rollout.roll_level(engine, [ServiceStep("backend", Strategy.START_FIRST)],
                           rollout.RolloutSettings(HealthPolicy(5), 7, 0), interrupts, lines.append)
    assert [c.name for c in engine.containers] == [old]
    assert any(line.startswith("backend: removing the new container") for line in lines)
    # It never became ready, so it gets the short stop, not the 7 s drain.
    assert [args[1] for args in engine.method_calls("stop")] == [rollout.UNREADY_STOP_S]
