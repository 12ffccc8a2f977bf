"""The one place where the monitor's self-healing, status page and doctor reach into the ops core
(`isletops.engines`, `isletops.stack`, `isletops.lock`, `isletops.history`, `isletops.docker_engine`).

Everything here is a thin call of an existing public function, so when the core's interface
changes, only this module is re-pointed. Services are read, restarted and their logs read
through the instance's `Engine` (compose, swarm or kubernetes: `engine_for`), exactly as
`isletops status|restart|logs` do, so a healed service is restarted the way a person would
have done it.
"""

from __future__ import annotations

from isletops import history, release, stack
from isletops.config import InstanceConfig, SiteConfig, read_env_file
from isletops.docker_engine import DockerEngine
from isletops.engines import Engine, HealthPolicy, ServiceState, engine_for
from isletops.history import HistoryEntry
from isletops.lock import InstanceLock, LockStatus, current_user, utc_now


def docker_engine() -> DockerEngine:
    """This host's Docker (images, disk, container logs on disk): host facts, whatever the engine."""
    return DockerEngine()


def instance_engine(site: SiteConfig, instance: InstanceConfig) -> Engine:
    """The engine that runs `instance` (the one `isletops status|restart|logs` use)."""
    return engine_for(site, instance)


def restart_service(
    site: SiteConfig, instance: InstanceConfig, service: str, engine: Engine | None = None,
    timeout_s: float | None = None,
) -> list[ServiceState]:  # fmt: skip
    """`isletops restart SERVICE`: restart it and wait until healthy (raises `IsletOpsError` if not)."""
    chosen = engine or engine_for(site, instance)
    timeout = float(timeout_s if timeout_s is not None else instance.health_timeout_s)
    return chosen.restart([service], HealthPolicy(timeout_s=timeout))


def service_states(engine: Engine) -> list[ServiceState]:
    """`isletops status`'s list: every component's instances, `missing` where one has none."""
    return engine.service_states(release.COMPONENTS)


def service_logs(engine: Engine, service: str, tail: int) -> str:
    return engine.logs(service, tail)


def lock_status(instance: InstanceConfig) -> LockStatus:
    """Who holds the instance's deploy lock, if anyone."""
    return InstanceLock(instance.state_dir, instance.name).status()


def deploy_history(instance: InstanceConfig) -> list[HistoryEntry]:
    """Every readable deploy/rollback entry, oldest first."""
    return history.History(instance.state_dir, instance.name).read().entries


def current_tag(instance: InstanceConfig) -> str | None:
    return stack.current_tag(instance)


def expected_files(instance: InstanceConfig) -> tuple[dict[str, str], dict[str, str]] | None:
    """What `isletops up` would write now: (compose file name -> text, managed .env settings), or
    None when the instance was never set up."""
    tag = stack.current_tag(instance)
    if not tag:
        return None
    rendered = stack.render_compose_files(instance, stack.gpu_enabled(instance), stack.extra_labels_from_env())
    return rendered, stack.managed_env(instance, tag, stack.current_registry(instance))


def expected_env(instance: InstanceConfig) -> dict[str, str] | None:
    """The managed .env settings a deploy of the running tag would write now (None: no tag yet)."""
    tag = read_env_file(instance.env_file).get("TAG")
    return stack.managed_env(instance, tag, stack.current_registry(instance)) if tag else None


def audit(instance: InstanceConfig, message: str, user: str = "") -> str:
    """Append one Kamal-format line to the instance's `state/audit.log` (same file and format as
    deploys); returns the line."""
    line = f"[{utc_now().isoformat()}] [{user or current_user()}] [{instance.name}] {' '.join(message.split())}"
    instance.state_dir.mkdir(parents=True, exist_ok=True)
    history._append_line(instance.state_dir / history.AUDIT_FILE, line)  # noqa: SLF001 - the one audit writer
    return line
