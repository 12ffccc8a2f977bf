"""Health-gated deploys and rollbacks of a release tag to one instance, and `release` (tag + push).

A deploy, in order (Kamal's, with its users' complaints fixed):

1. take the instance lock (held to the very end, after the post-deploy hooks);
2. check that every component image of the tag exists in the registry — before touching anything;
3. check free disk space for the pull (Docker data root and the instance folder);
4. run pre-deploy hooks (e.g. the monitor's alert silence), pull every image;
5. render compose for the tag (`stack.prepare_instance`) and roll services over in dependency
   order (`release.COMPONENTS`): stateless HTTP services start-first (new container beside the
   old, wait healthy, drain and remove the old: zero downtime behind the always-on edge, which
   holds the public port), the others are recreated with a drain timeout unless their image is
   the very same (storage, queue and the edge then keep running); each waits for its healthcheck
   within the instance's `health_timeout_s`;
6. run the end-to-end gate: one synthetic job through the REST API must finish;
7. on any failure roll back to the previous tag by itself, explaining why (the failing service's
   last health output and log tail); on Ctrl-C/SIGTERM restore the previous tag;
8. write the history line, run post-deploy hooks, release the lock.

Clean-ups run last-in-first-out (certbot's ErrorHandler) with further signals held off, so a
second Ctrl-C cannot leave the instance half-switched.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from isletops.config import InstanceConfig, SiteConfig, read_env_file
from isletops.errors import DeployError, IsletOpsError, RegistryError
from isletops.history import Deployed, History, HistoryEntry, deployed_tags, last_attempt_notice
from isletops.lock import InstanceLock, LockDetails, LockStatus, current_user, utc_now
from isletops.registry import RegistryClient
from isletops.release import COMPONENTS, ReleaseTag, local_build_image, newest_first, next_tag, release_images

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Services that keep state or hold a GPU are recreated (stop old, start new); the rest may run
# twice for a moment, so they start-first when compose lets them (no fixed name or host port).
STATEFUL_SERVICES = frozenset({"storage", "queue", "shepherd", "pruner"})
# The edge's and the frontend's nginx cache the frontend's and backend's addresses for `resolver
# ... valid=` seconds (2 s); the old container must stay up at least that long after the new one
# is healthy, with margin for Docker's DNS to register the new container.
RESOLVER_TTL_S = float(os.environ.get("ISLETOPS_RESOLVER_TTL_S", "11"))
# Time a stopping container gets to finish what it is doing (gunicorn requests, shepherd jobs).
DRAIN_TIMEOUT_S = int(os.environ.get("ISLETOPS_DRAIN_TIMEOUT_S", "60"))
# Free space that must remain after a pull; pulled layers take ~2.5x their compressed size.
DEFAULT_MIN_FREE_BYTES = int(float(os.environ.get("ISLETOPS_MIN_FREE_MB", "1024")) * 1024 * 1024)
EXTRACTION_FACTOR = 2.5
E2E_TIMEOUT_S = float(os.environ.get("ISLETOPS_E2E_TIMEOUT_S", "180"))
LOG_TAIL_LINES = 20

# -- hooks ------------------------------------------------------------------------------------

HOOK_STAGES = ("pre-deploy", "post-deploy")


@dataclass(frozen=True)
class HookContext:
    """What a hook learns about the deploy; `env()` is Kamal's hook environment."""

    stage: str
    command: str  # deploy | rollback
    instance: InstanceConfig
    version: str  # the tag being deployed
    previous_version: str
    performer: str
    recorded_at: str
    result: str = ""  # post-deploy only: ok | failed | rolled_back | interrupted

    def env(self) -> dict[str, str]:
        return {
            "ISLETOPS_RECORDED_AT": self.recorded_at,
            "ISLETOPS_PERFORMER": self.performer,
            "ISLETOPS_VERSION": self.version,
            "ISLETOPS_PREVIOUS_VERSION": self.previous_version,
            "ISLETOPS_COMMAND": self.command,
            "ISLETOPS_INSTANCE": self.instance.name,
            "ISLETOPS_STAGE": self.stage,
            "ISLETOPS_RESULT": self.result,
        }


Hook = Callable[[HookContext], None]
_HOOKS: dict[str, list[Hook]] = {stage: [] for stage in HOOK_STAGES}


def register_hook(stage: str, hook: Hook) -> None:
    """Add a Python hook (e.g. the monitor's alert silence). Pre-deploy hooks run after the images
    are verified and before anything changes; raising `IsletOpsError` aborts the deploy. Post-deploy
    hooks run after the history line, with the lock still held, whatever the result; their
    failures are reported, never undo the deploy."""
    if stage not in HOOK_STAGES:
        raise ValueError(f"unknown hook stage {stage!r}")
    if hook not in _HOOKS[stage]:
        _HOOKS[stage].append(hook)


def registered_hooks(stage: str) -> list[Hook]:
    return list(_HOOKS[stage])


def _script_hook(instance: InstanceConfig, stage: str) -> Path | None:
    """An executable `<instance>/hooks/<stage>` (like `.kamal/hooks/pre-deploy`)."""
    path = instance.directory / "hooks" / stage
    return path if path.is_file() and os.access(path, os.X_OK) else None


def run_hooks(context: HookContext) -> None:
    """Run the registered hooks, then the instance's script hook, for `context.stage`."""
    for hook in registered_hooks(context.stage):
        hook(context)
    script = _script_hook(context.instance, context.stage)
    if script:
        result = subprocess.run(
            [str(script)], env={**os.environ, **context.env()}, capture_output=True, text=True, timeout=300, check=False
        )
        if result.returncode != 0:
            last = (result.stderr or result.stdout).strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
            raise DeployError(f"The {context.stage} hook {script} failed: {last[0]}.")


# -- plan -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceStep:
    service: str
    strategy: str  # start-first | recreate

    def describe(self) -> str:
        if self.strategy == "start-first":
            return f"{self.service}: start the new container beside the old, wait healthy, drain and remove the old"
        return f"{self.service}: recreate (stop with {DRAIN_TIMEOUT_S} s drain), wait healthy"


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy or rollback will do; printed by `--dry-run`."""

    command: str
    instance: str
    from_tag: str
    to_tag: str
    registry: str
    images: dict[str, str]
    services: tuple[ServiceStep, ...]
    missing: tuple[str, ...] = ()
    e2e_gate: bool = True

    def lines(self) -> list[str]:
        moved = f"{self.from_tag or 'nothing deployed'} -> {self.to_tag}"
        out = [f"{self.command} on instance '{self.instance}': {moved}"]
        if self.from_tag == self.to_tag:
            out.append(f"  {self.to_tag} is already deployed; services whose config is unchanged are left running")
        out.append(f"  1. lock the instance; verify {len(self.images)} images in {self.registry}:")
        out += [f"       {ref}" + ("   MISSING" if ref in self.missing else "") for ref in self.images.values()]
        out.append("  2. check free disk space for the pull; run pre-deploy hooks; pull the images")
        out.append(f"  3. render compose for {self.to_tag} and roll over in dependency order:")
        out += [f"       {step.describe()}" for step in self.services]
        if self.e2e_gate:
            out.append("  4. end-to-end gate: one synthetic job through the REST API must finish")
        out.append(f"  on failure: roll back to {self.from_tag or '(nothing to roll back to: stop)'} by itself")
        out.append("  5. record the history line, run post-deploy hooks, release the lock")
        return out


def service_strategies(compose_services: dict[str, Any], services: tuple[str, ...] = COMPONENTS) -> list[ServiceStep]:
    """How each service is rolled over, from the rendered compose `services:` mapping.

    Start-first needs two containers of the service side by side: no `container_name`, no fixed
    host port, and no state of its own. Everything else is recreated.
    """
    steps = []
    for service in services:
        spec = compose_services.get(service) or {}
        start_first = service not in STATEFUL_SERVICES and not spec.get("container_name") and not spec.get("ports")
        steps.append(ServiceStep(service, "start-first" if start_first else "recreate"))
    return steps


def compose_services(files: list[Path]) -> dict[str, Any]:
    """The merged `services:` mapping of rendered compose files (later files override keys)."""
    merged: dict[str, Any] = {}
    for file in files:
        try:
            document = yaml.safe_load(Path(file).read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        for name, spec in (document.get("services") or {}).items():
            merged.setdefault(name, {}).update(spec or {})
    return merged


def plan_deploy(
    command: str,
    instance: InstanceConfig,
    from_tag: str,
    to_tag: str,
    registry: str,
    compose_spec: dict[str, Any] | None = None,
    missing: tuple[str, ...] = (),
    e2e_gate: bool = True,
) -> DeployPlan:
    """The plan for moving `instance` from `from_tag` to `to_tag` (pure: no I/O)."""
    tag = ReleaseTag.parse(to_tag)
    images = release_images(tag, registry)
    return DeployPlan(
        command=command,
        instance=instance.name,
        from_tag=from_tag,
        to_tag=str(tag),
        registry=registry,
        images=images,
        services=tuple(service_strategies(compose_spec or {})),
        missing=tuple(missing),
        e2e_gate=e2e_gate,
    )


def rollback_target(deployed: Deployed, requested: str | None) -> str:
    """Where `rollback` goes: the requested tag, or the previous good one from the history."""
    if requested:
        return str(ReleaseTag.parse(requested))
    if not deployed.previous:
        current = f" (deployed: {deployed.current})" if deployed.current else ""
        raise DeployError(
            f"There is no earlier successful release to roll back to{current}.",
            "Name one with 'isletops rollback --to TAG'; 'isletops releases' lists them.",
        )
    return deployed.previous


# -- results ----------------------------------------------------------------------------------


class DeployFailed(DeployError):
    """A deploy failed; `details` holds the failing service's health output and log tail."""

    def __init__(self, message: str, hint: str | None = None, details: str = "") -> None:
        super().__init__(message, hint)
        self.details = details


class _Interrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP, turned into the same path as Ctrl-C."""


@dataclass
class DeployResult:
    plan: DeployPlan
    result: str  # ok | failed | rolled_back | interrupted | dry-run
    duration_s: float = 0.0
    message: str = ""
    broken_lock: LockStatus | None = None
    notes: list[str] = field(default_factory=list)
    entry: HistoryEntry | None = None


class _HealthFailure(IsletOpsError):
    def __init__(self, service: str, message: str, details: str) -> None:
        super().__init__(message)
        self.service = service
        self.details = details


# -- engine-facing steps ----------------------------------------------------------------------


def _engine(engine: Any | None) -> Any:
    if engine is not None:
        return engine
    from isletops.docker_engine import DockerEngine

    return DockerEngine()


def docker_data_root(engine: Any) -> Path | None:
    """Where Docker keeps images (None when the daemon is remote or says nothing)."""
    try:
        root = engine.data_root()
    except IsletOpsError:
        return None  # the disk check then covers the instance folder only
    return Path(root) if root and Path(root).exists() else None


def _existing_ancestor(path: Path) -> Path:
    path = Path(path).resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def format_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


def disk_needs(pull_bytes: int, min_free_bytes: int, data_root: Path | None, instance_dir: Path) -> dict[Path, int]:
    """Bytes that must be free per file system path (pure). Paths on the same file system add up."""
    needs: dict[Path, int] = {}
    if data_root is not None:
        needs[data_root] = int(pull_bytes * EXTRACTION_FACTOR) + min_free_bytes
    needs[instance_dir] = needs.get(instance_dir, 0) + min_free_bytes
    return needs


def check_disk_space(needs: dict[Path, int]) -> None:
    """Raise `DeployError` naming the path, free and needed bytes, when a file system is short."""
    by_device: dict[int, tuple[Path, int]] = {}
    for path, need in needs.items():
        existing = _existing_ancestor(path)
        device = existing.stat().st_dev
        known_path, known_need = by_device.get(device, (path, 0))
        by_device[device] = (known_path, known_need + need)
    for path, need in by_device.values():
        free = shutil.disk_usage(_existing_ancestor(path)).free
        if free < need:
            raise DeployError(
                f"Not enough free disk space on {path} for this deploy: {format_bytes(free)} free, "
                f"{format_bytes(need)} needed.",
                "Nothing was changed; free space (old images, Docker logs, pruner) or lower --min-free-mb, then retry.",
            )


def _remove_container(engine: Any, name: str, drain_s: int) -> None:
    """Stop (SIGTERM, `drain_s` to finish in-flight work) and remove one container."""
    with _interrupts_deferred():
        engine.remove_container(name, stop_timeout_s=drain_s)


def _service_containers(engine: Any, project: str, service: str) -> list[Any]:
    return [s for s in engine.project_containers(project) if s.service == service and s.state != "missing"]


def _health_failure(engine: Any, project: str, service: str, error: Exception) -> _HealthFailure:
    details = ""
    with contextlib.suppress(Exception):
        states = [s for s in engine.project_containers(project, [service]) if s.service == service]
        outputs = [f"{s.name}: {s.last_health_output}" for s in states if s.last_health_output]
        if outputs:
            details += "Last health check output:\n  " + "\n  ".join(" ".join(o.split())[:300] for o in outputs) + "\n"
    with contextlib.suppress(Exception):
        tail = engine.container_logs(project, service, tail=LOG_TAIL_LINES).rstrip()
        if tail:
            details += f"Last {LOG_TAIL_LINES} log lines of {service}:\n  " + "\n  ".join(tail.splitlines())
    return _HealthFailure(service, str(error).rstrip("."), details)


def _wait(engine: Any, project: str, service: str, timeout_s: float, poll_s: float = 1.0) -> None:
    """Wait until every container of `service` is running and healthy.

    Fails at once when Docker has judged a container `unhealthy` (its healthcheck failed
    `retries` times after `start_period`) or it exited or restarted (a fresh container that
    crashed once): waiting out the deadline would only keep users on a broken release longer.
    Otherwise fails at the deadline.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        states = [s for s in engine.project_containers(project, [service]) if s.service == service]
        if states and all(s.is_ready for s in states):
            return
        broken = [
            s for s in states
            if s.health == "unhealthy" or s.state in ("exited", "dead", "restarting") or s.restart_count > 0
        ]
        if broken or time.monotonic() >= deadline:
            shown = broken or [s for s in states if not s.is_ready]
            waited = "" if broken else f" within {timeout_s:.0f} s"
            said = next((s.last_health_output for s in shown if s.last_health_output), "")
            said = f"; its health check said '{' '.join(said.split())[:200]}'" if said else ""
            error = DeployError(
                f"{service} did not become healthy{waited}: {', '.join(s.describe() for s in shown)}{said}"
            )
            raise _health_failure(engine, project, service, error)
        time.sleep(poll_s)


def roll_over(
    engine: Any,
    project: str,
    files: list[Path],
    steps: list[ServiceStep],
    health_timeout_s: float,
    progress: Progress,
    drain_s: int = DRAIN_TIMEOUT_S,
    env: dict[str, str] | None = None,
    levels: list[list[str]] | None = None,
    images: dict[str, str] | None = None,
) -> None:
    """Bring every service to the rendered compose config, level by level, waiting for each level.

    `levels` come from `dependency_levels` (default: one service per level, in `steps` order):
    a level starts only when everything it depends on is healthy on the new release. `env` is
    the instance's env file: compose gets it explicitly so a stray shell variable never wins.
    `images` (service -> new image reference) lets services that would be *recreated* keep
    running when their image is the very same (see `unchanged_services`).
    """
    by_service = {step.service: step for step in steps}
    for level in levels or [[step.service] for step in steps]:
        level_steps = [by_service[s] for s in level if s in by_service]
        kept = unchanged_services(engine, project, level_steps, images or {})
        if kept:
            progress(f"{', '.join(kept)}: same image as running, kept running (no restart)")
        level_steps = [step for step in level_steps if step.service not in kept]
        if level_steps:
            _roll_level(engine, project, files, level_steps, health_timeout_s, progress, drain_s, env)


def unchanged_services(engine: Any, project: str, steps: list[ServiceStep], images: dict[str, str]) -> list[str]:
    """Services to leave running: recreated ones (state, a fixed port, the GPU) whose running,
    healthy container already runs the exact image (same id) the new release names for them.

    Like Kamal's accessories (and its proxy), the database, the object store and the edge are not
    restarted by a deploy that does not change them: restarting them is downtime for nothing. Start-first services are
    always replaced, which costs nothing. Any doubt (no image, inspect fails) means "changed".
    """
    kept = []
    for step in steps:
        new_ref = images.get(step.service)
        if step.strategy != "recreate" or not new_ref:
            continue
        running = _service_containers(engine, project, step.service)
        if len(running) != 1 or not running[0].is_ready or not running[0].image:
            log.debug("%s will be recreated: %s", step.service, [s.describe() for s in running] or "no container")
            continue
        try:
            same = engine.image_id(running[0].image) == engine.image_id(new_ref)
        except Exception:  # noqa: BLE001 - unknown means changed: recreate
            same = False
        if same:
            kept.append(step.service)
    return kept


def _roll_level(
    engine: Any,
    project: str,
    files: list[Path],
    steps: list[ServiceStep],
    health_timeout_s: float,
    progress: Progress,
    drain_s: int,
    env: dict[str, str] | None,
) -> None:
    old_by_service = {
        step.service: [s for s in _service_containers(engine, project, step.service) if s.state == "running"]
        for step in steps
    }
    side_by_side = [step.service for step in steps if step.strategy == "start-first" and old_by_service[step.service]]
    in_place = [step.service for step in steps if step.service not in side_by_side]
    if in_place:
        progress(f"{', '.join(in_place)}: updating (stop with up to {drain_s} s to drain)")
        with _interrupts_deferred():
            engine.compose(project, files, ["up", "-d", "--no-deps", "--timeout", str(drain_s), *in_place], env=env,
                           capture=True)
    scaled: list[str] = []  # side-by-side services that may have a new container beside the old
    draining: set[str] = set()  # ... and those whose old containers are already going
    try:
        for service in side_by_side:
            old = old_by_service[service]
            progress(f"{service}: starting a new container beside {', '.join(s.name for s in old)}")
            scaled.append(service)
            # One new container whatever the count of old ones (leftovers of a crash): all the old
            # ones go at the end, so the service always converges to a single container.
            with _interrupts_deferred():
                engine.compose(
                    project, files,
                    ["up", "-d", "--no-deps", "--no-recreate", "--scale", f"{service}={len(old) + 1}", service],
                    env=env, capture=True,
                )
        for step in steps:
            _wait(engine, project, step.service, health_timeout_s)
        if side_by_side:
            # Let the edge's and frontend's resolvers see the new addresses before the old ones go.
            time.sleep(RESOLVER_TTL_S)
        for service in side_by_side:
            draining.add(service)
            for state in old_by_service[service]:
                progress(f"{service}: draining and removing {state.name}")
                _remove_container(engine, state.name, drain_s)
    except BaseException:
        # A failed health check, a Ctrl-C/SIGTERM or an engine error after the scale-up: the old
        # containers keep serving (Kamal keeps the old one) and the new ones beside them go, so a
        # restore finds one container per service, on the previous release.
        _remove_new_containers(
            engine, project, {s: old_by_service[s] for s in scaled if s not in draining}, progress, drain_s
        )
        raise
    progress(f"{', '.join(step.service for step in steps)}: healthy")


def _remove_new_containers(
    engine: Any, project: str, old_by_service: dict[str, list[Any]], progress: Progress, drain_s: int
) -> None:
    """Remove the containers of each service that are not among its `old_by_service` ones.

    Further signals are held off: a second Ctrl-C must not leave two releases side by side. A
    removal that fails is reported and left to the restore (which converges to one container).
    """
    with _signals_held():
        for service, old in old_by_service.items():
            kept = {state.name for state in old}
            try:
                new = [s.name for s in _service_containers(engine, project, service) if s.name not in kept]
            except Exception as error:  # noqa: BLE001 - reported; the restore converges
                progress(f"{service}: could not list its containers to remove the new one: {error}")
                continue
            for name in new:
                progress(f"{service}: removing the new container {name}; {', '.join(sorted(kept))} stays")
                try:
                    engine.remove_container(name, stop_timeout_s=drain_s)
                except Exception as error:  # noqa: BLE001 - reported; the restore converges
                    progress(f"{service}: could not remove {name}: {error}")


def dependency_levels(compose_spec: dict[str, Any], services: tuple[str, ...] = COMPONENTS) -> list[list[str]]:
    """Group services so each group depends only on earlier groups (compose `depends_on`).

    Services of one level are rolled over together; without `depends_on` information the
    order of `services` is kept, one per level. A dependency cycle is a broken compose file.
    """
    if not any((compose_spec.get(s) or {}).get("depends_on") for s in services):
        return [[s] for s in services]
    depends = {}
    for service in services:
        raw = (compose_spec.get(service) or {}).get("depends_on") or []
        depends[service] = [d for d in (raw if isinstance(raw, list) else list(raw)) if d in services]
    level: dict[str, int] = {}

    def level_of(service: str, seen: tuple[str, ...] = ()) -> int:
        if service in seen:
            raise DeployError(f"The compose files have a dependency cycle: {' -> '.join((*seen, service))}.")
        if service not in level:
            level[service] = 1 + max((level_of(d, (*seen, service)) for d in depends[service]), default=-1)
        return level[service]

    for service in services:
        level_of(service)
    return [[s for s in services if level[s] == n] for n in range(max(level.values()) + 1)]


# -- end-to-end gate --------------------------------------------------------------------------


def e2e_gate(base_url: str, timeout_s: float = E2E_TIMEOUT_S) -> str:
    """One synthetic job through the REST API at `base_url` must finish within `timeout_s`.

    The same job as the monitor's e2e probe, by the same code (`monitors.probes.e2e`): one
    implementation of "the application works". Returns the job id; raises an `IsletOpsError`
    with the probe's sentence otherwise.
    """
    try:
        from monitors.probes.e2e import run_synthetic_job
    except ImportError as exc:
        raise DeployError(
            f"The end-to-end gate cannot run: {exc}.", "Install the monitors package or deploy with --no-e2e."
        ) from None
    return str(run_synthetic_job(base_url, timeout_s))


# -- deploy / rollback ------------------------------------------------------------------------


@dataclass
class DeployOptions:
    tag: str
    registry: str
    command: str = "deploy"  # deploy | rollback
    force: bool = False
    dry_run: bool = False
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES
    health_timeout_s: float | None = None
    e2e_gate: bool = True
    e2e_timeout_s: float = E2E_TIMEOUT_S
    message: str = ""


@contextlib.contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGTERM and SIGHUP take the Ctrl-C path (clean-ups run); handlers restored afterwards."""

    def handler(signum: int, _frame: Any) -> None:
        raise _Interrupted(f"signal {signal.Signals(signum).name}")

    previous = {}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Let one compose call run to its end; a Ctrl-C/SIGTERM/SIGHUP meanwhile is raised right after.

    Killing compose half-way through `up` leaves the daemon stopping old containers (for up to the
    drain timeout) after we have moved on: the restore then finds them still running, changes
    nothing, and they exit a moment later. Compose runs in its own session (see
    `DockerEngine.compose`), so a terminal's Ctrl-C reaches only us.
    """
    pending: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            previous[signum] = signal.signal(signum, lambda number, _frame: pending.append(number))
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
    if pending:
        name = signal.Signals(pending[0]).name
        if pending[0] == signal.SIGINT:
            raise KeyboardInterrupt()
        raise _Interrupted(f"signal {name}")


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """While clean-ups run, a second Ctrl-C/SIGTERM is ignored rather than cutting them short."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError):
            previous[signum] = signal.signal(signum, signal.SIG_IGN)
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def current_deployment(instance: InstanceConfig) -> tuple[Deployed, list[str]]:
    """What the history says is deployed, plus notes (corrupt lines, last attempt went wrong)."""
    history = History(instance.state_dir, instance.name)
    read = history.read()
    notes = []
    if read.problems:
        notes.append(read.problem_summary(history.path))
    notice = last_attempt_notice(read.entries)
    if notice:
        notes.append(notice)
    deployed = deployed_tags(read.entries)
    if not deployed.current:
        with contextlib.suppress(Exception):
            from isletops import stack

            tag = stack.current_tag(instance)
            if tag and ReleaseTag.is_valid(str(tag)):
                deployed = Deployed(current=str(tag), previous="", stack=(str(tag),))
    return deployed, notes


def deploy(
    site: SiteConfig,
    instance: InstanceConfig,
    options: DeployOptions,
    engine: Any | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Deploy (or roll back to) `options.tag` on `instance`; see the module docstring.

    Raises `TagError`/`LockError` before anything happens, `DeployFailed` after a failure (with
    the instance rolled back where possible), `KeyboardInterrupt` after an interrupt (with the
    previous tag restored). Every attempt past the lock leaves a history line.
    """
    say = progress or (lambda _line: None)
    to_tag = str(ReleaseTag.parse(options.tag))
    deployed, notes = current_deployment(instance)
    from_tag = deployed.current
    registry = RegistryClient(options.registry)
    health_timeout_s = float(options.health_timeout_s or instance.health_timeout_s)

    if options.dry_run:
        missing = tuple(registry.missing_images(to_tag))
        spec = compose_services(sorted(instance.directory.glob("docker-compose*.yml")))
        plan = plan_deploy(options.command, instance, from_tag, to_tag, registry.name, spec, missing, options.e2e_gate)
        return DeployResult(plan, "dry-run", notes=notes)

    lock = InstanceLock(instance.state_dir, instance.name)
    broken = lock.acquire(
        LockDetails.for_this_process(options.command, to_tag, options.message or f"{options.command} {to_tag}"),
        force=options.force,
    )
    outcome_message = lock_note = ""
    if broken is not None:
        held = broken.details.describe() if broken.details else broken.problem
        say(f"broke a stale lock: {held}")
        lock_note = f"(broke a stale lock: {held})"
    plan = plan_deploy(options.command, instance, from_tag, to_tag, registry.name, {}, (), options.e2e_gate)
    result = DeployResult(plan, "failed", broken_lock=broken, notes=notes)
    history = History(instance.state_dir, instance.name)
    started = time.monotonic()
    recorded_at = utc_now().isoformat()
    docker = _engine(engine)
    touched = False
    try:
        with _signals_as_interrupts():
            try:
                missing = registry.missing_images(to_tag)
                if missing:
                    raise DeployError(
                        f"Release {to_tag} is incomplete in registry {registry.name}: missing {', '.join(missing)}.",
                        "Nothing was changed; run 'isletops release' again or pick a tag from 'isletops releases'.",
                    )
                to_pull = {
                    component: registry.image_ref(component, to_tag)
                    for component in COMPONENTS
                    if not docker.image_exists(registry.image_ref(component, to_tag))
                }
                pull_bytes = sum(
                    registry.manifest_size(registry.address.repository(component), to_tag) for component in to_pull
                )
                check_disk_space(
                    disk_needs(pull_bytes, options.min_free_bytes, docker_data_root(docker), instance.directory)
                )
                run_hooks(_hook_context("pre-deploy", options.command, instance, to_tag, from_tag, recorded_at))
                for ref in to_pull.values():
                    say(f"pulling {ref}")
                    docker.pull_image(ref)
                touched = True
                _switch(site, instance, to_tag, registry.name, docker, health_timeout_s, say, result)
                if options.e2e_gate:
                    say(f"end-to-end gate: one synthetic job through {instance.frontend_url}/api")
                    job_id = e2e_gate(instance.frontend_url, options.e2e_timeout_s)
                    say(f"end-to-end gate: job {job_id} done")
                result.result = "ok"
            except Exception as error:  # every failure, a bug included, must still roll back
                details = getattr(error, "details", "")
                if isinstance(error, IsletOpsError):
                    reason = str(error).rstrip(".")
                else:
                    log.exception("unexpected error during %s", options.command)
                    reason = f"unexpected error {type(error).__name__}: {error} (a bug; re-run with -v)"
                if not touched:
                    result.result = "failed"
                    outcome_message = f"{reason}."
                    if isinstance(error, IsletOpsError):
                        raise DeployFailed(error.message, error.hint, details) from None
                    raise DeployFailed(outcome_message, "Nothing was changed.") from None
                if not from_tag or from_tag == to_tag:
                    result.result = "failed"
                    why = "it was already deployed" if from_tag == to_tag else "nothing was deployed before"
                    outcome_message = f"{reason}; there is nothing to roll back to ({why})."
                    raise DeployFailed(outcome_message, "Fix the release and deploy again.", details) from None
                say(f"{options.command} failed ({reason}); rolling back to {from_tag}")
                with _signals_held():
                    try:
                        _switch(site, instance, from_tag, registry.name, docker, health_timeout_s, say, result)
                    except Exception as second:  # noqa: BLE001 - reported, with the first reason
                        result.result = "failed"
                        outcome_message = f"{reason}; rolling back to {from_tag} failed too: {str(second).rstrip('.')}."
                        raise DeployFailed(
                            outcome_message, "See 'isletops status' and 'isletops logs'.", details
                        ) from None
                result.result = "rolled_back"
                outcome_message = f"{reason}; rolled back to {from_tag}."
                raise DeployFailed(
                    f"{options.command.capitalize()} of {to_tag} failed and was rolled back to {from_tag}: {reason}.",
                    None,
                    details,
                ) from None
            except KeyboardInterrupt as interrupt:
                result.result = "interrupted"
                outcome_message = f"interrupted ({interrupt or 'Ctrl-C'})"
                if touched and from_tag and from_tag != to_tag:
                    with _signals_held():
                        try:
                            _switch(site, instance, from_tag, registry.name, docker, health_timeout_s, say, result)
                            outcome_message += f"; {from_tag} restored"
                        except Exception as second:  # noqa: BLE001 - recorded in the history line
                            outcome_message += f"; restoring {from_tag} failed: {str(second).rstrip('.')}"
                elif not touched:
                    outcome_message += "; nothing had been changed"
                else:
                    outcome_message += f"; {to_tag} was partly started and nothing was deployed before to restore"
                raise
    finally:
        with _signals_held():
            try:
                result.duration_s = round(time.monotonic() - started, 1)
                result.message = outcome_message
                result.entry = history.append(
                    HistoryEntry(
                        command=options.command,
                        from_tag=from_tag,
                        to_tag=to_tag,
                        result=result.result,
                        duration_s=result.duration_s,
                        message=" ".join(f"{options.message} {lock_note} {outcome_message}".split()),
                        time=recorded_at,
                    )
                )
                context = _hook_context(
                    "post-deploy", options.command, instance, to_tag, from_tag, recorded_at, result.result
                )
                try:
                    run_hooks(context)
                except Exception as exc:  # a post hook never undoes a deploy; it is reported
                    result.notes.append(f"A post-deploy hook failed: {exc}")
            finally:
                lock.release()
    return result


def _hook_context(
    stage: str, command: str, instance: InstanceConfig, to_tag: str, from_tag: str, recorded_at: str, result: str = ""
) -> HookContext:
    return HookContext(stage, command, instance, to_tag, from_tag, current_user(), recorded_at, result)


def _switch(
    site: SiteConfig,
    instance: InstanceConfig,
    tag: str,
    registry: str,
    engine: Any,
    health_timeout_s: float,
    say: Progress,
    result: DeployResult,
) -> None:
    """Render compose for `tag` and roll every service over to it."""
    from isletops import stack

    say(f"rendering compose for {tag}")
    files = stack.prepare_instance(site, instance, tag, registry=registry)
    spec = compose_services(files)
    steps = service_strategies(spec)
    result.plan = DeployPlan(**{**result.plan.__dict__, "services": tuple(steps)})
    roll_over(engine, instance.project_name, files, steps, health_timeout_s, say, env=read_env_file(instance.env_file),
              levels=dependency_levels(spec), images=release_images(tag, registry))


def rollback(
    site: SiteConfig,
    instance: InstanceConfig,
    to: str | None,
    options: DeployOptions,
    engine: Any | None = None,
    progress: Progress | None = None,
) -> DeployResult:
    """Roll back to `to` or, with no tag, to the previous good release in the history."""
    deployed, _notes = current_deployment(instance)
    options.tag = rollback_target(deployed, to)
    options.command = "rollback"
    return deploy(site, instance, options, engine, progress)


# -- release (tag + push) and the list of releases --------------------------------------------


@dataclass(frozen=True)
class ReleaseRow:
    tag: str
    complete: bool  # every component has this tag
    deployed: bool
    previous: bool


def list_releases(registry: str, deployed: Deployed) -> list[ReleaseRow]:
    """Release tags in the registry, newest first, marking deployed and previous."""
    per_component = RegistryClient(registry).component_tags()
    everywhere = set.intersection(*(set(tags) for tags in per_component.values())) if per_component else set()
    anywhere = set().union(*per_component.values()) if per_component else set()
    return [
        ReleaseRow(tag, tag in everywhere, tag == deployed.current, tag == deployed.previous)
        for tag in newest_first(anywhere)
    ]


@dataclass(frozen=True)
class ReleasePlan:
    tag: str
    pushes: dict[str, tuple[str, str]]  # component -> (local source, registry target)


def plan_release(registry: str, build_tag: str = "latest", today: dt.date | None = None) -> ReleasePlan:
    """The next tag from the registry's tags (all components), and what gets tagged and pushed."""
    client = RegistryClient(registry)
    client.ping()
    existing = [tag for tags in client.component_tags().values() for tag in tags]
    tag = next_tag(existing, today or dt.datetime.now(dt.UTC).date())
    return ReleasePlan(
        tag=str(tag),
        pushes={c: (local_build_image(c, build_tag), client.image_ref(c, str(tag))) for c in COMPONENTS},
    )


def release(
    registry: str, build_tag: str = "latest", engine: Any | None = None, progress: Progress | None = None,
    today: dt.date | None = None,
) -> ReleasePlan:
    """Tag every component's local build with the next release tag and push it."""
    say = progress or (lambda _line: None)
    docker = _engine(engine)
    plan = plan_release(registry, build_tag, today)
    absent = [source for source, _target in plan.pushes.values() if not docker.image_exists(source)]
    if absent:
        raise RegistryError(
            f"Cannot release: local image(s) {', '.join(absent)} do not exist.", "Run 'isletops build' first."
        )
    for source, target in plan.pushes.values():
        say(f"pushing {target}")
        docker.tag_image(source, target)
        docker.push_image(target)
    return plan


# -- for `isletops status` --------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentStatus:
    """The deploy side of `isletops status`: what is deployed, the last attempt, the lock."""

    deployed: str
    previous: str
    last_attempt: HistoryEntry | None
    notes: tuple[str, ...]
    lock: LockStatus

    def lines(self) -> list[str]:
        out = [f"release: {self.deployed or 'none recorded'} (previous good: {self.previous or 'none'})"]
        if self.last_attempt:
            last = self.last_attempt
            out.append(
                f"last {last.command}: {last.from_tag or 'nothing'} -> {last.to_tag} {last.result} "
                f"at {last.time} by {last.user} ({last.duration_s:.0f} s)"
            )
        if self.lock.held:
            holder = self.lock.details.describe() if self.lock.details else self.lock.problem
            out.append(f"{'STALE lock' if self.lock.stale else 'locked'}: {holder}")
        out += [f"note: {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "deployed": self.deployed,
            "previous": self.previous,
            "last_attempt": json.loads(self.last_attempt.to_json()) if self.last_attempt else None,
            "notes": list(self.notes),
            "lock": {
                "held": self.lock.held,
                "stale": self.lock.stale,
                "details": self.lock.details.__dict__ if self.lock.details else None,
            },
        }


def deployment_status(instance: InstanceConfig) -> DeploymentStatus:
    """Read the history and lock of `instance` (no Docker, no registry: cheap for `status`)."""
    deployed, notes = current_deployment(instance)
    entries = History(instance.state_dir, instance.name).read().entries
    return DeploymentStatus(
        deployed=deployed.current,
        previous=deployed.previous,
        last_attempt=entries[-1] if entries else None,
        notes=tuple(notes),
        lock=InstanceLock(instance.state_dir, instance.name).status(),
    )
