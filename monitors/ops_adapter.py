"""The one place where the monitor's self-healing, status page and doctor reach into the ops core
(`isletops.stack`, `isletops.lock`, `isletops.history`, `isletops.docker_engine`).

Everything here is a thin call of an existing public function, so when the core's interface
changes (the Engine protocol), only this module is re-pointed. Restarts go through exactly the
path `isletops restart` takes (`isletops.stack.restart`), so a healed service is restarted the
way a person would have done it.
"""

from __future__ import annotations

from typing import Any

from isletops import history, stack
from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import ContainerState, DockerEngine
from isletops.history import HistoryEntry
from isletops.lock import InstanceLock, LockStatus, current_user, utc_now


def docker_engine() -> DockerEngine:
    return DockerEngine()


def restart_service(
    site: SiteConfig, instance: InstanceConfig, service: str, engine: Any = None, timeout_s: float | None = None
) -> list[ContainerState]:
    """`isletops restart SERVICE`: restart it and wait until healthy (raises `DockerError` if not)."""
    return stack.restart(site, instance, service, timeout_s=timeout_s, engine=engine)


def service_states(site: SiteConfig, instance: InstanceConfig, engine: Any = None) -> list[ContainerState]:
    """`isletops status`'s container list: every component, `missing` where it has no container."""
    return stack.status(site, instance, engine=engine)


def service_logs(instance: InstanceConfig, service: str, tail: int, engine: Any) -> str:
    return str(engine.container_logs(instance.project_name, service, tail=tail))


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


def audit(instance: InstanceConfig, message: str, user: str = "") -> str:
    """Append one Kamal-format line to the instance's `state/audit.log` (same file and format as
    deploys); returns the line."""
    line = f"[{utc_now().isoformat()}] [{user or current_user()}] [{instance.name}] {' '.join(message.split())}"
    instance.state_dir.mkdir(parents=True, exist_ok=True)
    history._append_line(instance.state_dir / history.AUDIT_FILE, line)  # noqa: SLF001 - the one audit writer
    return line
