"""Host provisioning: runs playbooks/site.yml through ansible-runner and turns its events into a
per-host summary, warnings and one-sentence errors. The one module that talks to ansible.

Every run leaves ansible-runner's plain files (`<artifacts>/<id>/status`, `rc`, `stdout`,
`job_events/`) so what happened can be read afterwards; the result names that folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isletops.errors import ProvisionError
from isletops.render import PROJECT_ROOT

PLAYBOOK_DIR = PROJECT_ROOT / "playbooks"
DEFAULT_PLAYBOOK = "site.yml"
KNOWN_TAGS: tuple[str, ...] = ("docker", "swarm", "instance", "nginx", "certbot", "monitoring")
DOCKER_RESTART_HANDLERS = ("Restart Docker Engine", "Record that Docker Engine must be restarted by its owner")
ARTIFACTS_KEPT = 30
# The folder of the service images' wheels (scripts/build-wheelhouse.sh): reused so installing
# isletops on a host downloads only what is not there yet.
SERVICE_WHEELHOUSE = PROJECT_ROOT / "build" / "wheelhouse"
# Wheels built with a fixed date are byte-identical for the same sources, so a second provisioning
# run copies nothing and reinstalls nothing.
WHEEL_SOURCE_DATE_EPOCH = "315532800"  # 1980-01-01, the oldest date a zip file can hold
WHEEL_SOURCES = ("pyproject.toml", "README.md", "ops", "monitors", "services")  # what pyproject.toml packages


def default_state_dir() -> Path:
    """Where runs keep their files: $XDG_STATE_HOME/isletops/provision (~/.local/state/...)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "isletops" / "provision"


@dataclass
class HostSummary:
    """ansible's recap for one host."""

    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0
    rescued: int = 0
    ignored: int = 0
    docker_restarts: int = 0  # how many times the Docker restart handler ran (0 or 1)

    @property
    def state(self) -> str:
        if self.unreachable:
            return "unreachable"
        if self.failed:
            return "failed"
        return "changed" if self.changed else "ok"


@dataclass
class ProvisionResult:
    """What a run did, host by host, and where its files are."""

    status: str  # ansible-runner's: successful | failed | timeout | canceled
    rc: int
    artifacts_dir: Path
    check: bool
    hosts: dict[str, HostSummary] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    changed_tasks: dict[str, list[str]] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.rc == 0 and not self.errors

    @property
    def changed(self) -> int:
        return sum(host.changed for host in self.hosts.values())

    def error_sentence(self) -> str:
        """The failures as the one sentence the CLI prints."""
        if not self.errors:
            return f"ansible-playbook failed (rc {self.rc}); see {self.artifacts_dir}/stdout."
        extra = f" ({len(self.errors) - 1} more in {self.artifacts_dir}/stdout)" if len(self.errors) > 1 else ""
        return self.errors[0].rstrip(".") + extra + "."


def default_wheels_dir() -> Path:
    """Where the wheels installed on hosts are gathered: next to the run files."""
    return default_state_dir().parent / "wheels"


def _pip(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        # pip's first ERROR line is the cause (e.g. a wheel it could not find); later ones are consequences
        reason = next((line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")),
                      lines[-1] if lines else "no output")
        raise ProvisionError(
            f"Cannot {what} to install isletops on the hosts ({_one_line(reason)}).",
            "Check that pip reaches its package index (pip config list), or set isletops_install: false in the "
            "inventory.",
        )


def _build_backend() -> list[str]:
    """pyproject.toml's build-system.requires (read when needed: installed copies have no pyproject)."""
    return list(tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["build-system"]["requires"])


def _pip_offline_first(args: list[str], sources: Sequence[str], what: str, env: dict[str, str] | None = None) -> None:
    """`pip ARGS` from the local wheel folders alone; the package index only when they lack something."""
    try:
        _pip(["--no-input", args[0], "--no-index", *sources, *args[1:]], what, env)
    except ProvisionError:
        _pip([args[0], *sources, *args[1:]], what, env)


def build_project_wheel(wheel_dir: Path, sources: Sequence[str] = ()) -> Path:
    """isletops as a wheel, built from a fresh copy of its sources: setuptools' build/lib in the
    checkout may hold files of modules deleted since, and other builds may be using it. The build
    backend (setuptools, wheel) comes from `sources` (--find-links options) when it is there."""
    with tempfile.TemporaryDirectory(prefix="isletops-wheel-") as scratch:
        source = Path(scratch) / "isletops"
        source.mkdir()
        skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "node_modules")
        for name in WHEEL_SOURCES:
            origin = PROJECT_ROOT / name
            if origin.is_dir():
                shutil.copytree(origin, source / name, ignore=skip)
            else:
                shutil.copy2(origin, source / name)
        _pip_offline_first(["wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheel_dir), str(source)], sources,
                           "build the isletops wheel", env={**os.environ, "SOURCE_DATE_EPOCH": WHEEL_SOURCE_DATE_EPOCH})
    return next(wheel_dir.glob("isletops-*.whl"))


def prepare_isletops_wheels(wheels_dir: Path | None = None) -> Path:
    """Gather isletops and every dependency as wheels in one folder, for `pip install --no-index`
    on hosts (which may reach no index). The versions are this controller's own, so a host runs
    what was tested here. Only the wheels of the current set are kept, plus the build backend so
    the next isletops build needs no index either."""
    wheels_dir = wheels_dir or default_wheels_dir()
    staging = wheels_dir.with_name(wheels_dir.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    sources = [option for folder in (wheels_dir, SERVICE_WHEELHOUSE) if folder.is_dir()
               for option in ("--find-links", str(folder))]
    try:
        project_wheel = build_project_wheel(staging, sources)
        frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable", "--all"],
                                capture_output=True, text=True, check=False).stdout
        constraints = staging / "constraints.txt"
        # The controller's own versions, except the build tools: the build backend is the one
        # pyproject.toml asks for, not whatever made this virtualenv.
        constraints.write_text("".join(
            line + "\n" for line in frozen.splitlines()
            if "==" in line and line.split("==")[0].lower() not in ("isletops", "pip", "setuptools", "wheel")))
        _pip_offline_first(["wheel", "--quiet", "--prefer-binary", "--constraint", str(constraints),
                            "--wheel-dir", str(staging), str(project_wheel), *_build_backend()], sources,
                           "gather the wheels")
        constraints.unlink()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    shutil.rmtree(wheels_dir, ignore_errors=True)
    staging.rename(wheels_dir)
    return wheels_dir


def resolve_inventory(inventory: str | Path) -> Path:
    """The inventory path, checked before ansible is started."""
    path = Path(inventory).expanduser()
    if not path.exists():
        raise ProvisionError(
            f"Inventory {path} does not exist.",
            "Pass --inventory with a folder under inventory/ (e.g. inventory/local) or an inventory file.",
        )
    return path.resolve()


def _check_tags(tags: Iterable[str]) -> list[str]:
    wanted = [tag.strip() for tag in tags if tag.strip()]
    unknown = sorted(set(wanted) - set(KNOWN_TAGS))
    if unknown:
        raise ProvisionError(f"Unknown tag(s): {', '.join(unknown)}.", f"Known tags: {', '.join(KNOWN_TAGS)}.")
    return wanted


def _search_path() -> str:
    """PATH with this Python's bin folder first: its ansible-playbook imports isletops (the
    playbook's filter plugins need it) even when isletops runs from a virtualenv not on PATH."""
    here = str(Path(sys.executable).parent)
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
    if not (Path(here) / "ansible-playbook").exists() and not shutil.which("ansible-playbook", path=path):
        raise ProvisionError(
            "ansible-playbook is not installed.", "Install isletops with its dependencies (ansible-core)."
        )
    return f"{here}{os.pathsep}{path}"


def run_provision(
    inventory: str | Path,
    *,
    check: bool = False,
    diff: bool = False,
    tags: Iterable[str] = (),
    limit: str | None = None,
    extra_vars: dict[str, Any] | None = None,
    state_dir: Path | None = None,
    playbook: str = DEFAULT_PLAYBOOK,
    verbose: bool = False,
    timeout_s: int | None = None,
    wheels_dir: Path | None = None,
) -> ProvisionResult:
    """Run the provisioning playbook against `inventory` and summarise it. Never raises for a
    failed play (the result says so); raises `ProvisionError` when ansible cannot start at all."""
    import ansible_runner  # heavy; only provisioning needs it

    inventory_path = resolve_inventory(inventory)
    wanted_tags = _check_tags(tags)
    playbook_path = PLAYBOOK_DIR / playbook
    if not playbook_path.exists():
        raise ProvisionError(f"Playbook {playbook_path} does not exist.", "Set ISLETOPS_HOME to the isletops checkout.")
    private_dir = (state_dir or default_state_dir()) / re.sub(r"[^A-Za-z0-9_.-]", "_", inventory_path.name)
    private_dir.mkdir(parents=True, exist_ok=True)
    ident = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
    cmdline = " ".join(option for option, wanted in (("--check", check), ("--diff", diff)) if wanted)
    extra_vars = dict(extra_vars or {})
    if "isletops_wheels_dir" not in extra_vars and (not wanted_tags or "monitoring" in wanted_tags):
        # The monitoring part installs isletops on the host (for the probe cron job) from these.
        # A failure is the playbook's to report: it matters only where isletops_install is true.
        try:
            extra_vars["isletops_wheels_dir"] = str(prepare_isletops_wheels(wheels_dir))
        except ProvisionError as error:
            extra_vars["isletops_wheels_error"] = str(error)
    runner = ansible_runner.run(
        private_data_dir=str(private_dir),
        project_dir=str(PLAYBOOK_DIR),
        playbook=str(playbook_path),
        inventory=str(inventory_path),
        cmdline=cmdline or None,
        tags=",".join(wanted_tags) or None,
        limit=limit,
        extravars=extra_vars or None,
        envvars={
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "PATH": _search_path(),
        },
        ident=ident,
        rotate_artifacts=ARTIFACTS_KEPT,
        quiet=not (verbose or diff),  # --diff: ansible's own output shows the changes as they happen
        suppress_env_files=True,  # extra vars may hold secrets
        timeout=timeout_s,
    )
    return summarise(runner.events, status=runner.status, rc=runner.rc,
                     artifacts_dir=Path(runner.config.artifact_dir), check=check)


def summarise(events: Iterable[dict[str, Any]], *, status: str, rc: int, artifacts_dir: Path,
              check: bool) -> ProvisionResult:
    """Build the result from ansible-runner's job events (pure: tests feed recorded events)."""
    result = ProvisionResult(status=status, rc=rc, artifacts_dir=artifacts_dir, check=check)
    for event in events:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host") or data.get("remote_addr") or ""
        task = data.get("task") or ""
        is_handler = "/handlers/" in str(data.get("task_path") or "")
        if kind == "runner_on_ok" and is_handler and task in DOCKER_RESTART_HANDLERS:
            result.hosts.setdefault(host, HostSummary()).docker_restarts += 1
        if kind == "runner_on_ok" and (data.get("res") or {}).get("changed"):
            result.changed_tasks.setdefault(host, []).append(task)
        elif kind == "runner_on_unreachable":
            result.errors.append(_unreachable_sentence(host, data))
        elif kind == "runner_on_failed" and not data.get("ignore_errors"):
            result.errors.append(_failure_sentence(host, task, data.get("res") or {}))
        elif kind == "playbook_on_stats":
            _read_stats(result, data)
    return result


def _read_stats(result: ProvisionResult, data: dict[str, Any]) -> None:
    fields_by_key = {"ok": "ok", "changed": "changed", "failures": "failed", "dark": "unreachable",
                     "skipped": "skipped", "rescued": "rescued", "ignored": "ignored"}
    for key, attribute in fields_by_key.items():
        for host, count in (data.get(key) or {}).items():
            setattr(result.hosts.setdefault(host, HostSummary()), attribute, int(count))
    artifact = data.get("artifact_data") or {}
    for warning in artifact.get("isletnet_warnings") or []:
        text = _one_line(str(warning))
        if text not in result.warnings:
            result.warnings.append(text)


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _unreachable_sentence(host: str, data: dict[str, Any]) -> str:
    res = data.get("res") or {}
    message = _one_line(str(res.get("msg") or "no answer"))
    return (f"Host {host} is unreachable ({message}); check its address, port and ssh key in the inventory "
            "and that sshd runs there")


def _failure_sentence(host: str, task: str, res: dict[str, Any]) -> str:
    message = _one_line(str(res.get("msg") or res.get("stderr") or res.get("module_stderr") or "no message"))
    if message.startswith(f"Host {host}"):  # our own playbook messages already name the host
        return message
    return f"Provisioning failed on host {host} at '{task}': {message}"
