"""Deploy and rollback of a release tag to one instance, health-gated, through any `Engine`.

In order (Kamal's, with its users' complaints fixed):

1. take the instance lock (waiting up to `lock_wait_s` for a running deploy), held to the very end;
2. build the plan (the one `DeployPlan` a dry run prints): every image of the tag must exist in
   the registry before anything is touched;
3. check free disk space for the pull; run the pre-deploy hooks; pull;
4. prepare the release and roll services over in dependency order (`rollout`);
5. run the end-to-end gate, when the caller gave one;
6. on a failure roll back to the previous tag by itself (only the services whose image differs),
   explaining why with the failing instance's own health output and logs; on Ctrl-C/SIGTERM/SIGHUP
   restore the previous tag. A signal during the rollback or restore is held until it finished
   (see `interrupts`);
7. write the history line, run the post-deploy hooks, release the lock (clean-ups, last-in-first-out);
8. after a good deploy, prune release images beyond `retain_releases`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from isletops.config import InstanceConfig
from isletops.deploy.disk import check_disk_space, disk_needs
from isletops.deploy.gate import E2E_TIMEOUT_S, Gate, run_gate
from isletops.deploy.hooks import HookContext, Hooks
from isletops.deploy.interrupts import InterruptController
from isletops.deploy.plan import DeployPlan, make_plan, rollback_target
from isletops.deploy.rollout import DRAIN_TIMEOUT_S, HEALTH_GRACE_S, RESOLVER_TTL_S, RolloutSettings, roll_over
from isletops.engines.base import Engine, HealthPolicy
from isletops.errors import DeployError, IsletOpsError
from isletops.history import Deployed, History, HistoryEntry, deployed_tags, last_attempt_notice
from isletops.lock import InstanceLock, LockDetails, LockStatus, current_user, utc_now
from isletops.registry import RegistryClient, RegistryCredentials
from isletops.release import COMPONENTS, ReleaseTag

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Free space that must remain after a pull.
DEFAULT_MIN_FREE_BYTES = int(float(os.environ.get("ISLETOPS_MIN_FREE_MB", "1024")) * 1024 * 1024)
DEFAULT_FAILED_CHECKS = InstanceConfig.health_failed_checks


class ReleaseRegistry(Protocol):
    """What a deploy reads from the registry (`isletops.registry.RegistryClient`)."""

    @property
    def name(self) -> str: ...

    def missing_images(self, tag: str) -> list[str]: ...

    def pull_size(self, component: str, tag: str) -> int: ...


@dataclass
class DeployOptions:
    """Everything a deploy or rollback needs besides the instance and its engine."""

    tag: str
    registry: str
    command: str = "deploy"  # deploy | rollback
    force: bool = False  # break a stale lock
    dry_run: bool = False
    lock_wait_s: float = 0.0
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    health_timeout_s: float | None = None  # None: the instance's health_timeout_s
    failed_checks: int | None = None  # None: the instance's health_failed_checks
    drain_s: int = DRAIN_TIMEOUT_S
    resolver_ttl_s: float = RESOLVER_TTL_S  # how long old instances outlive the new ones' start (proxies' DNS)
    credentials: RegistryCredentials | None = None  # for `registry` only
    gate: Gate | None = None  # the end-to-end gate; None: healthchecks only
    e2e_timeout_s: float = E2E_TIMEOUT_S
    hooks: Hooks = field(default_factory=Hooks)
    retain_releases: int = 0  # after a good deploy keep the newest N releases' images (0: never prune)
    message: str = ""


class DeployFailed(DeployError):
    """A deploy failed; `details` holds the failing instance's health output and log tail."""

    def __init__(self, message: str, hint: str | None = None, details: str = "") -> None:
        super().__init__(message, hint)
        self.details = details


@dataclass
class DeployResult:
    plan: DeployPlan
    result: str  # ok | failed | rolled_back | interrupted | dry-run
    duration_s: float = 0.0
    message: str = ""
    broken_lock: LockStatus | None = None
    notes: list[str] = field(default_factory=list)
    entry: HistoryEntry | None = None


def current_deployment(instance: InstanceConfig, engine: Engine | None = None) -> tuple[Deployed, list[str]]:
    """What the history says is deployed, plus notes (corrupt lines, last attempt went wrong).
    With no successful deploy recorded, the release every running service carries (if one)."""
    history = History(instance.state_dir, instance.name)
    read = history.read()
    notes = []
    if read.problems:
        notes.append(read.problem_summary(history.path))
    notice = last_attempt_notice(read.entries)
    if notice:
        notes.append(notice)
    deployed = deployed_tags(read.entries)
    if not deployed.current and engine is not None:
        with contextlib.suppress(IsletOpsError):
            tags = {tag for tags in engine.running_release(COMPONENTS).values() for tag in tags}
            if len(tags) == 1 and ReleaseTag.is_valid(next(iter(tags))):
                tag = next(iter(tags))
                deployed = Deployed(current=tag, previous="", stack=(tag,))
    return deployed, notes


def build_plan(
    options: DeployOptions, instance: InstanceConfig, engine: Engine, registry: ReleaseRegistry, from_tag: str,
    to_tag: str,
) -> DeployPlan:
    """The one plan object: printed by a dry run, executed by a real one."""
    services = engine.plan(to_tag, registry.name)
    restore = engine.plan(from_tag, registry.name) if from_tag and from_tag != to_tag else None
    return make_plan(
        options.command, instance.name, engine.name, from_tag, to_tag, registry.name, services, restore,
        options.drain_s, tuple(registry.missing_images(to_tag)), options.gate is not None,
    )


@dataclass
class _Attempt:
    """What the clean-ups need to know about the attempt so far."""

    plan: DeployPlan | None = None
    result: str = "failed"
    outcome: str = ""
    touched: bool = False


def deploy(
    instance: InstanceConfig, engine: Engine, options: DeployOptions, progress: Progress | None = None,
    registry: ReleaseRegistry | None = None,
) -> DeployResult:
    """Deploy (or roll back to) `options.tag` on `instance`; see the module docstring. `registry`
    defaults to a `RegistryClient` for `options.registry` with `options.credentials`.

    Raises `TagError`/`LockError` before anything happens, `DeployFailed` after a failure (with
    the instance rolled back where possible), `KeyboardInterrupt` (`Interrupted`) after an
    interrupt (with the previous tag restored). Every attempt past the lock leaves a history line.
    """
    say = progress or (lambda _line: None)
    to_tag = str(ReleaseTag.parse(options.tag))
    deployed, notes = current_deployment(instance, engine)
    from_tag = deployed.current
    registry = registry or RegistryClient(options.registry, credentials=options.credentials)
    if options.dry_run:
        return DeployResult(build_plan(options, instance, engine, registry, from_tag, to_tag), "dry-run", notes=notes)

    lock = InstanceLock(instance.state_dir, instance.name)
    attempt = _Attempt()
    started = time.monotonic()
    recorded_at = utc_now().isoformat()
    settings = RolloutSettings(
        HealthPolicy(float(options.health_timeout_s or instance.health_timeout_s),
                     options.failed_checks or instance.health_failed_checks, grace_s=HEALTH_GRACE_S),
        options.drain_s, options.resolver_ttl_s,
    )
    entry: list[HistoryEntry] = []
    hook_notes: list[str] = []
    with InterruptController(say) as interrupts:

        def take_lock() -> LockStatus | None:
            with interrupts.critical():
                details = LockDetails.for_this_process(
                    options.command, to_tag, options.message or f"{options.command} {to_tag}"
                )
                broken = lock.acquire(details, force=options.force)
                interrupts.push(lock.release)
                interrupts.push(engine.take_cluster_lock(details.describe()))  # several managers/admins
            return broken

        broken = lock.retry_while_held(take_lock, options.lock_wait_s, say)
        lock_note = ""
        if broken is not None:
            held = broken.details.describe() if broken.details else broken.problem
            say(f"broke a stale lock: {held}")
            lock_note = f"(broke a stale lock: {held})"

        def finish() -> None:
            """The history line, then the post-deploy hooks (the lock is released after this)."""
            message = " ".join(f"{options.message} {lock_note} {attempt.outcome}".split())
            entry.append(History(instance.state_dir, instance.name).append(HistoryEntry(
                command=options.command, from_tag=from_tag, to_tag=to_tag, result=attempt.result,
                duration_s=round(time.monotonic() - started, 1), message=message, time=recorded_at,
            )))
            context = HookContext("post-deploy", options.command, instance, to_tag, from_tag, current_user(),
                                  recorded_at, attempt.result)
            try:
                options.hooks.run(context)
            except Exception as error:  # noqa: BLE001 - a post hook never undoes a deploy; it is reported
                hook_notes.append(f"A post-deploy hook failed: {error}")

        interrupts.push(finish)
        try:
            attempt.plan = build_plan(options, instance, engine, registry, from_tag, to_tag)
            _forward(attempt, attempt.plan, instance, engine, registry, options, settings, interrupts, say,
                     recorded_at)
            attempt.result = "ok"
        except KeyboardInterrupt as interrupt:
            with interrupts.protected("restore"):
                _after_interrupt(attempt, interrupt, engine, settings, interrupts, say)
            raise
        except Exception as error:  # every failure, a bug included, must still roll back
            with interrupts.protected("rollback"):
                failure = _after_failure(attempt, error, options.command, engine, settings, interrupts, say)
            raise failure from None
    assert attempt.plan is not None
    result = DeployResult(attempt.plan, attempt.result, round(time.monotonic() - started, 1), attempt.outcome,
                          broken, notes + hook_notes, entry[0] if entry else None)
    if options.retain_releases > 0:
        result.notes += _prune(engine, registry.name, options.retain_releases)
    return result


def _forward(
    attempt: _Attempt, plan: DeployPlan, instance: InstanceConfig, engine: Engine, registry: ReleaseRegistry,
    options: DeployOptions, settings: RolloutSettings, interrupts: InterruptController, say: Progress,
    recorded_at: str,
) -> None:
    if plan.missing:
        raise DeployError(
            f"Release {plan.to_tag} is incomplete in registry {plan.registry}: missing {', '.join(plan.missing)}.",
            "Nothing was changed; run 'isletops release' again or pick a tag from 'isletops releases'.",
        )
    to_pull = {service: ref for service, ref in plan.images.items() if not engine.image_present(ref)}
    pull_bytes = sum(registry.pull_size(component, plan.to_tag) for component in to_pull)
    data_root = None
    with contextlib.suppress(IsletOpsError):  # unknown: the check covers the instance folder only
        root = engine.data_root()
        data_root = root if root is not None and root.exists() else None
    check_disk_space(disk_needs(pull_bytes, options.min_free_bytes, data_root, instance.directory))
    engine.verify(plan.to_tag, plan.registry)
    options.hooks.run(HookContext("pre-deploy", options.command, instance, plan.to_tag, plan.from_tag,
                                  current_user(), recorded_at))
    for ref in to_pull.values():
        say(f"pulling {ref}")
        engine.pull(ref)
    attempt.touched = True
    _switch(engine, plan.to_tag, plan, forward=True, settings=settings, interrupts=interrupts, say=say)
    if options.gate is not None:
        say(f"end-to-end gate: one synthetic job through {instance.frontend_url}/api")
        job_id = run_gate(options.gate, instance.frontend_url, options.e2e_timeout_s)
        say(f"end-to-end gate: job {job_id} done")


def _switch(
    engine: Engine, tag: str, plan: DeployPlan, forward: bool, settings: RolloutSettings,
    interrupts: InterruptController, say: Progress,
) -> None:
    """Prepare `tag` and roll the plan's services (forward) or its restore services over to it."""
    services = plan.services if forward else plan.restore
    images = plan.images if forward else plan.restore_images
    assert services is not None
    say(f"preparing {tag} ({engine.name})")
    with interrupts.critical():
        engine.prepare(tag, plan.registry)
    roll_over(engine, services, images, settings, interrupts, say)


def _restore(
    attempt: _Attempt, engine: Engine, settings: RolloutSettings, interrupts: InterruptController, say: Progress,
) -> None:
    """Roll back to the plan's previous tag (the caller holds signals off meanwhile)."""
    plan = attempt.plan
    assert plan is not None and plan.restore is not None
    _switch(engine, plan.from_tag, plan, forward=False, settings=settings, interrupts=interrupts, say=say)


def _held_note(interrupts: InterruptController, what: str) -> str:
    held = interrupts.deferred_during_protected
    return f"; {', '.join(held)} during the {what} was held until it finished" if held else ""


def _after_interrupt(
    attempt: _Attempt, interrupt: KeyboardInterrupt, engine: Engine, settings: RolloutSettings,
    interrupts: InterruptController, say: Progress,
) -> None:
    attempt.result = "interrupted"
    attempt.outcome = f"interrupted ({interrupt or 'Ctrl-C'})"
    plan = attempt.plan
    if not attempt.touched or plan is None:
        attempt.outcome += "; nothing had been changed"
        return
    if plan.restore is None:
        attempt.outcome += f"; {plan.to_tag} was partly started and there is nothing before it to restore"
        return
    say(f"interrupted; restoring {plan.from_tag}")
    try:
        _restore(attempt, engine, settings, interrupts, say)
        attempt.outcome += f"; {plan.from_tag} restored"
    except Exception as second:  # noqa: BLE001 - recorded in the history line
        attempt.outcome += f"; restoring {plan.from_tag} failed: {str(second).rstrip('.')}"
    attempt.outcome += _held_note(interrupts, "restore")


def _after_failure(
    attempt: _Attempt, error: Exception, command: str, engine: Engine, settings: RolloutSettings,
    interrupts: InterruptController, say: Progress,
) -> DeployFailed:
    """Roll back where there is something to go back to; the exception to raise."""
    details = str(getattr(error, "details", "") or "")
    if isinstance(error, IsletOpsError):
        reason = str(error.message).rstrip(".")
    else:
        log.exception("unexpected error during %s", command)
        reason = f"unexpected error {type(error).__name__}: {error} (a bug; re-run with -v)"
    plan = attempt.plan
    attempt.result = "failed"
    if not attempt.touched or plan is None:
        attempt.outcome = f"{reason}."
        hint = error.hint if isinstance(error, IsletOpsError) else "Nothing was changed."
        return DeployFailed(f"{reason}.", hint, details)
    if plan.restore is None:
        why = "it was already deployed" if plan.from_tag == plan.to_tag else "nothing was deployed before"
        attempt.outcome = f"{reason}; there is nothing to roll back to ({why})."
        return DeployFailed(attempt.outcome, "Fix the release and deploy again.", details)
    say(f"{command} failed ({reason}); rolling back to {plan.from_tag}")
    try:
        _restore(attempt, engine, settings, interrupts, say)
    except Exception as second:  # noqa: BLE001 - reported, with the first reason
        attempt.outcome = (f"{reason}; rolling back to {plan.from_tag} failed too: {str(second).rstrip('.')}"
                           f"{_held_note(interrupts, 'rollback')}.")
        return DeployFailed(attempt.outcome, "See 'isletops status' and 'isletops logs'.", details)
    attempt.result = "rolled_back"
    attempt.outcome = f"{reason}; rolled back to {plan.from_tag}{_held_note(interrupts, 'rollback')}."
    return DeployFailed(
        f"{command.capitalize()} of {plan.to_tag} failed and was rolled back to {plan.from_tag}: {reason}.",
        None, details,
    )


def _prune(engine: Engine, registry: str, keep: int) -> list[str]:
    """Kamal's retain policy after a good deploy; a failure is a note (the deploy succeeded)."""
    try:
        return engine.prune_releases(registry, keep)
    except IsletOpsError as error:
        return [f"pruning old release images failed ({error}); the deploy itself succeeded."]


def rollback(
    instance: InstanceConfig, engine: Engine, to: str | None, options: DeployOptions, progress: Progress | None = None,
    registry: ReleaseRegistry | None = None,
) -> DeployResult:
    """Roll back to `to` or, with no tag, to the previous good release in the history."""
    deployed, _notes = current_deployment(instance, engine)
    options.tag = rollback_target(deployed, to)
    options.command = "rollback"
    return deploy(instance, engine, options, progress, registry)
