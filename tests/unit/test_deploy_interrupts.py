"""Signals during a deploy, sent for real (`os.kill` to this process): the one interrupt controller
defers them through critical sections, never drops them, never lets them cut a rollback short,
and the instance always ends on one release."""

import json
import os
import signal

import pytest

from isletops import deploy
from isletops.deploy.interrupts import InterruptController, Interrupted
from isletops.lock import InstanceLock
from isletops.release import COMPONENTS
from tests.fakes.engine import FakeEngine
from tests.unit.conftest import FAKE_REGISTRY as REGISTRY
from tests.unit.conftest import RELEASES

T1, T2, T3 = RELEASES


def kill(signum=signal.SIGINT):
    os.kill(os.getpid(), signum)


# -- the controller alone ------------------------------------------------------------------------


def test_a_signal_outside_a_critical_section_interrupts_at_once():
    reached = []
    with pytest.raises(Interrupted) as caught, InterruptController():
        kill(signal.SIGTERM)
        reached.append("after")
    assert reached == [] and caught.value.signal_name == "SIGTERM" and str(caught.value) == "SIGTERM"


def test_critical_sections_nest_and_deliver_the_signal_when_the_outermost_ends():
    steps = []
    with pytest.raises(Interrupted), InterruptController() as controller:
        with controller.critical():
            with controller.critical():
                kill()
                steps.append("inner finished")
            steps.append("outer finished")
        steps.append("never")
    assert steps == ["inner finished", "outer finished"]


def test_protected_sections_announce_and_hold_every_signal_until_the_controller_closes():
    said: list[str] = []
    steps = []
    with pytest.raises(Interrupted), InterruptController(said.append) as controller:
        with controller.protected("rollback"):
            kill()
            kill()
            with controller.critical():
                steps.append("inner critical ends without raising")
            steps.append("rollback finished")
        steps.append("after")
    assert steps == ["inner critical ends without raising", "rollback finished", "after"]
    assert said == ["SIGINT received: rollback in progress; it will finish"] * 2
    assert controller.deferred_during_protected == ["SIGINT", "SIGINT"]


def test_cleanups_run_last_in_first_out_even_when_one_fails_and_handlers_are_restored():
    ran = []
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(RuntimeError), InterruptController() as controller:
        controller.push(lambda: ran.append("first"))
        controller.push(lambda: (_ for _ in ()).throw(ValueError("broken clean-up")))
        controller.push(lambda: ran.append("last"))
        raise RuntimeError("the deploy failed")
    assert ran == ["last", "first"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_signal_during_the_cleanups_is_not_lost():
    with pytest.raises(Interrupted), InterruptController() as controller:
        controller.push(kill)


# -- a deploy, interrupted at each phase -----------------------------------------------------------


def history(instance):
    return [json.loads(line) for line in (instance.state_dir / "history.jsonl").read_text().splitlines()]


def on_release(engine: FakeEngine, tag: str) -> bool:
    return engine.tags() == {service: [tag] for service in COMPONENTS}


def options(tag):
    return deploy.DeployOptions(tag=tag, registry=REGISTRY, min_free_bytes=0, resolver_ttl_s=0)


def interrupt_at(engine: FakeEngine, method: str, signum=signal.SIGINT, times: int = 1):
    sent = []

    def hook(name, _args):
        if name == method and len(sent) < times:
            sent.append(name)
            kill(signum)

    engine.on_call = hook
    return sent


@pytest.mark.parametrize("phase", ["pull", "prepare", "replace", "start_beside", "wait_healthy", "drain", "stop"])
def test_ctrl_c_at_each_phase_restores_the_previous_release(instance, registry, phase):
    engine = FakeEngine(REGISTRY)
    deploy.deploy(instance, engine, options(T1), registry=registry)
    sent = interrupt_at(engine, phase)
    with pytest.raises(KeyboardInterrupt):
        deploy.deploy(instance, engine, options(T2), registry=registry)
    assert sent == [phase]
    assert on_release(engine, T1), engine.tags()
    assert not InstanceLock(instance.state_dir).status().held
    last = history(instance)[-1]
    assert (last["from_tag"], last["to_tag"], last["result"]) == (T1, T2, "interrupted")
    assert "()" not in last["message"]
    if phase == "pull":
        assert last["message"] == "interrupted (Ctrl-C); nothing had been changed"
    else:
        assert last["message"] == f"interrupted (Ctrl-C); {T1} restored"


def test_sigterm_takes_the_same_path(instance, registry):
    engine = FakeEngine(REGISTRY)
    deploy.deploy(instance, engine, options(T1), registry=registry)
    interrupt_at(engine, "start_beside", signal.SIGTERM)
    with pytest.raises(Interrupted, match="SIGTERM"):
        deploy.deploy(instance, engine, options(T2), registry=registry)
    assert on_release(engine, T1)
    assert history(instance)[-1]["message"] == f"interrupted (SIGTERM); {T1} restored"


def test_two_ctrl_c_during_the_automatic_rollback_do_not_abort_it(instance, registry):
    engine = FakeEngine(REGISTRY, broken={T3: {"backend"}})
    deploy.deploy(instance, engine, options(T2), registry=registry)
    said: list[str] = []
    prepared = []

    def hook(name, args):
        if name == "prepare":
            prepared.append(args[0])
            if args[0] == T2 and len(prepared) == 2:  # the rollback's prepare
                kill()
                kill()

    engine.on_call = hook
    with pytest.raises(deploy.DeployFailed, match=f"rolled back to {T2}"):
        deploy.deploy(instance, engine, options(T3), said.append, registry)
    assert prepared == [T3, T2]
    assert said.count("SIGINT received: rollback in progress; it will finish") == 2
    assert on_release(engine, T2), engine.tags()
    assert not InstanceLock(instance.state_dir).status().held
    last = history(instance)[-1]
    assert last["result"] == "rolled_back"
    assert last["message"].endswith(f"rolled back to {T2}; SIGINT, SIGINT during the rollback was held until "
                                    "it finished.")


def test_a_second_ctrl_c_during_the_restore_does_not_abort_it(instance, registry):
    engine = FakeEngine(REGISTRY)
    deploy.deploy(instance, engine, options(T1), registry=registry)
    calls = []

    def hook(name, _args):
        calls.append(name)
        if name == "start_beside" or (name == "prepare" and calls.count("prepare") == 2):
            kill()  # the first interrupts the deploy, the second lands in the restore

    engine.on_call = hook
    with pytest.raises(KeyboardInterrupt):
        deploy.deploy(instance, engine, options(T2), registry=registry)
    assert on_release(engine, T1)
    assert history(instance)[-1]["message"] == (f"interrupted (Ctrl-C); {T1} restored; SIGINT during the restore "
                                                "was held until it finished")
