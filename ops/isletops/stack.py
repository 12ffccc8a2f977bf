"""The stack of one instance: building its images, rendering its compose files and running it.

`prepare_instance` makes an instance folder complete and current (env file with secrets, the
two rendered compose files, data folders with the right owners); `up`, `down`, `restart`,
`logs` and `status` then run compose command lines built by `ComposeCommand` through
`isletops.docker_engine`. Deploys go through `isletops.engines.compose.ComposeEngine`, which
builds on `prepare_instance`. No printing here: functions return values or raise
`IsletOpsError` subclasses; long steps report through an optional `progress` callback.

What the instance's `.env` holds: generated secrets (never rotated by a re-run) and the settings
isletops manages from the site config (`MANAGED_ENV_KEYS`: the release tag, registry prefix,
ports, bind address, data folder), which are rewritten on every `prepare_instance`. Anything else
in the file is kept as the admin wrote it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from isletops import images, release
from isletops.config import InstanceConfig, SiteConfig, ensure_env_file, read_env_file
from isletops.docker_engine import DockerEngine, split_image_ref
from isletops.engines.base import HealthPolicy, ServiceState
from isletops.engines.compose_command import ComposeCommand
from isletops.engines.health import health_said, wait_healthy
from isletops.errors import ConfigError, DockerError
from isletops.render import PROJECT_ROOT, render_template

COMPOSE_FILES: tuple[str, ...] = ("docker-compose.yml", "docker-compose.production.yml")
BASE_IMAGE = "isletnet-base:latest"
WHEELHOUSE = PROJECT_ROOT / "build" / "wheelhouse"
# Components whose images install Python packages from the wheelhouse (services/python.Dockerfile).
WHEEL_COMPONENTS = images.WHEEL_COMPONENTS
# Owners of the host data folders (uids fixed in the Dockerfiles): bind mounts keep host owners.
DATA_DIR_OWNERS: dict[str, int] = {"storage": 10001, "queue": 10002}
# Settings isletops writes into .env from the site config on every prepare (others are kept).
MANAGED_ENV_KEYS: tuple[str, ...] = (
    "TAG", "REPOSITORY", "BIND_ADDRESS", "HTTP_PORT", "API_PORT", "LOCAL_DATA_DIR", "MAX_UPLOAD_MB",
    "RETENTION_SECONDS", "PROXY_TIMEOUT_S",
    "AUTH_MODE", "AUTH_PROXY_ADDRESSES", "AUTH_PROXY_USER_HEADER",
)
# Extra labels for every container and network, "key=value,key=value" (tests mark theirs so a
# crashed run can be swept by label).
EXTRA_LABELS_ENV = "ISLETOPS_EXTRA_LABELS"
_IMAGE_TAG_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_LABEL_KEY_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]*$")

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    """The default progress callback: say nothing."""


# -- instance resolution, GPU ---------------------------------------------------------------------


def resolve_instance(site: SiteConfig, instance: InstanceConfig | str | None) -> InstanceConfig:
    """An `InstanceConfig` from a config object, a name, or None (the site's default instance)."""
    return instance if isinstance(instance, InstanceConfig) else site.instance(instance)


def detect_gpu() -> bool:
    """True when the host has an NVIDIA GPU: NVML counts at least one, or /dev/nvidia0 exists."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() > 0:
                return True
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # noqa: S110 - no driver/library is the common "no GPU" case; fall back to the device node
        pass
    return Path("/dev/nvidia0").exists()


def gpu_enabled(instance: InstanceConfig, detect: Callable[[], bool] = detect_gpu) -> bool:
    """Whether the shepherd gets the GPUs: config `gpu` yes/no, or auto = detected on this host."""
    if instance.gpu == "yes":
        return True
    if instance.gpu == "no":
        return False
    return detect()


def extra_labels_from_env(text: str | None = None) -> dict[str, str]:
    """Parse `ISLETOPS_EXTRA_LABELS` ("k=v,k2=v2"); a malformed entry is an error, not ignored."""
    text = os.environ.get(EXTRA_LABELS_ENV, "") if text is None else text
    labels: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_KEY_PATTERN.match(key) or '"' in value:
            raise ConfigError(
                f"{EXTRA_LABELS_ENV} has a malformed label '{item}'.",
                "Write labels as key=value separated by commas, e.g. org.example.team=lab.",
            )
        labels[key] = value
    return labels


# -- rendering ------------------------------------------------------------------------------------


def validate_image_tag(tag: str) -> str:
    """Docker's tag grammar (release tags `YYYY-MM-DD_NN` are a subset)."""
    if not _IMAGE_TAG_PATTERN.match(tag or ""):
        raise ConfigError(
            f"'{tag}' cannot be an image tag.",
            "Use letters, digits, '_', '.' and '-' (release tags look like 2026-11-23_01).",
        )
    return tag


def managed_env(instance: InstanceConfig, tag: str, registry: str = "") -> dict[str, str]:
    """The `.env` settings isletops owns for this instance and tag."""
    return {
        "TAG": validate_image_tag(tag),
        "REPOSITORY": release.repository_prefix(registry),
        "BIND_ADDRESS": instance.bind_address,
        "HTTP_PORT": str(instance.http_port),
        "API_PORT": str(instance.api_port),
        "LOCAL_DATA_DIR": str(instance.local_data_dir.resolve()),
        "MAX_UPLOAD_MB": str(instance.max_upload_mb),
        "RETENTION_SECONDS": str(int(instance.retention_days * 86400)),
        "PROXY_TIMEOUT_S": str(instance.proxy_timeout_s),
        "AUTH_MODE": instance.auth,
        "AUTH_PROXY_ADDRESSES": ",".join(instance.auth_proxy_addresses),
        "AUTH_PROXY_USER_HEADER": instance.auth_proxy_header,
    }


def render_compose_files(
    instance: InstanceConfig, gpu: bool, extra_labels: dict[str, str] | None = None
) -> dict[str, str]:
    """The text of each compose file for `instance` (pure: nothing is written)."""
    settings = {
        "instance": instance.name,
        "gpu": gpu,
        "gpu_setting": instance.gpu,
        "publish_api_port": instance.publish_api_port,
        "extra_labels": dict(extra_labels or {}),
        "components": release.COMPONENTS,
        "limits": compose_limits(instance),
    }
    return {name: render_template("compose", name, settings) for name in COMPOSE_FILES}


def compose_limits(instance: InstanceConfig, host_cpus: int | None = None) -> dict[str, dict[str, str]]:
    """Each service's `mem_limit` and `cpus` for compose. CPU limits are capped at the host's
    cores (Docker refuses more than it has), so one config serves hosts of any size."""
    cores = host_cpus or os.cpu_count() or 1
    rendered = {}
    for service, limit in instance.limits.items():
        cpus = "" if limit.cpus is None else f"{min(limit.cpus, float(cores)):g}"
        rendered[service] = {"mem_limit": limit.memory, "cpus": cpus}  # "": no CPU limit
    return rendered


def compose_files(instance: InstanceConfig) -> list[Path]:
    return [instance.directory / name for name in COMPOSE_FILES]


def update_env_values(instance: InstanceConfig, values: dict[str, str]) -> dict[str, str]:
    """Set `values` in the instance's env file (others kept), atomically, mode 0600."""
    current = read_env_file(instance.env_file)
    merged = {**current, **values}
    if merged != current:
        lines = [
            "# Written by isletops. Secrets are generated once and never rotated by a re-run;",
            f"# {', '.join(MANAGED_ENV_KEYS)} follow the site config and are rewritten on deploy.",
        ]
        lines += [f"{key}={value}" for key, value in sorted(merged.items())]
        _write_private(instance.env_file, "\n".join(lines) + "\n")
    return merged


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
    os.chmod(path, 0o600)


def _write_if_changed(path: Path, text: str) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_data_dirs(instance: InstanceConfig, engine: DockerEngine | None = None) -> None:
    """Create the data folders and give them to the container users (bind mounts keep host owners).

    As root this is a chown; otherwise a throw-away container from the base image does it, so a
    member of the docker group needs no sudo.
    """
    base = instance.local_data_dir.resolve()
    wrong_owner = []
    for name, uid in DATA_DIR_OWNERS.items():
        path = base / name
        path.mkdir(parents=True, exist_ok=True)
        if path.stat().st_uid != uid:
            wrong_owner.append((path, uid))
    if not wrong_owner:
        return
    if os.geteuid() == 0:
        for path, uid in wrong_owner:
            os.chown(path, uid, uid)
            path.chmod(0o700)
        return
    engine = engine or DockerEngine()
    for path, uid in wrong_owner:
        engine.run_oneshot(BASE_IMAGE, ["sh", "-c", f"chown {uid}:{uid} /target && chmod 700 /target"],
                           binds={str(path): "/target"})


def prepare_instance(
    site: SiteConfig,
    instance: InstanceConfig | str | None,
    tag: str,
    registry: str = "",
    labels: dict[str, str] | None = None,
    engine: DockerEngine | None = None,
) -> list[Path]:
    """Make the instance folder ready to run release `tag` and return its compose files.

    Ensures the env file (generated secrets kept, managed settings updated), renders both compose
    files, and creates the data folders. `registry` "" means local images (`isletnet-<c>:<tag>`).
    Extra `labels` (plus `$ISLETOPS_EXTRA_LABELS`) go on every container and network.
    """
    instance = resolve_instance(site, instance)
    env = managed_env(instance, tag, registry)
    instance.directory.mkdir(parents=True, exist_ok=True)
    instance.state_dir.mkdir(exist_ok=True)
    ensure_env_file(instance, env)
    update_env_values(instance, env)
    all_labels = {**extra_labels_from_env(), **(labels or {})}
    rendered = render_compose_files(instance, gpu_enabled(instance), all_labels)
    for name, text in rendered.items():
        _write_if_changed(instance.directory / name, text)
    prepare_data_dirs(instance, engine)
    return compose_files(instance)


def current_tag(instance: InstanceConfig) -> str | None:
    """The release tag the instance's compose files are rendered for (None: never prepared)."""
    if not all(path.exists() for path in compose_files(instance)):
        return None
    return read_env_file(instance.env_file).get("TAG") or None


def current_registry(instance: InstanceConfig) -> str:
    return read_env_file(instance.env_file).get("REPOSITORY", "").rstrip("/")


# -- building -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildResult:
    """What `build_images` made: the release tag and each component's image reference."""

    tag: str
    images: dict[str, str]
    reused_tag: bool  # nothing changed since the newest local release: its tag was kept
    warnings: tuple[str, ...] = ()  # e.g. the base image is older than base_image_max_age_days


def check_build_inputs(components: Iterable[str], engine: DockerEngine, base_image: str = BASE_IMAGE) -> None:
    """Fail early, with the command that fixes it, when the base image or wheelhouse is missing."""
    if not engine.image_exists(base_image):
        raise DockerError(
            f"The base image {base_image} does not exist.",
            "Build it with 'bash scripts/build-base-image.sh' (make bootstrap does it).",
        )
    if set(components) & WHEEL_COMPONENTS and not any(WHEELHOUSE.glob("*.whl")):
        raise DockerError(
            f"The wheelhouse {WHEELHOUSE} is empty.",
            "Fill it with 'bash scripts/build-wheelhouse.sh' (make bootstrap does it).",
        )


def _validate_components(components: Iterable[str] | None) -> list[str]:
    chosen = list(components or release.COMPONENTS)
    unknown = [c for c in chosen if c not in release.COMPONENTS]
    if unknown:
        raise ConfigError(
            f"Unknown component(s): {', '.join(unknown)}.", f"Components: {', '.join(release.COMPONENTS)}."
        )
    return [c for c in release.COMPONENTS if c in chosen]  # start order, no duplicates


def build_images(
    components: Iterable[str] | None = None,
    tag: str | None = None,
    progress: Progress = _quiet,
    engine: DockerEngine | None = None,
    base_image: str = BASE_IMAGE,
    today: dt.date | None = None,
    output: Progress | None = None,
    base_max_age_days: int = images.DEFAULT_BASE_MAX_AGE_DAYS,
) -> BuildResult:
    """Build component images as `isletnet-<c>:latest` and tag every component with a release tag.

    `progress` gets one line per step, `output` (if given) every line of Docker's build output.
    A release names all components, so components not asked for and not built yet are built too.
    With no `tag`, the newest local release tag is kept when every image is unchanged since it
    (a re-run makes no new release); otherwise the next tag of today (`release.next_tag`).
    A base image older than `base_max_age_days` (0: no check) gives a warning in the result.
    """
    engine = engine or DockerEngine()
    asked = _validate_components(components)
    missing = [c for c in release.COMPONENTS if c not in asked and not engine.image_exists(_latest(c))]
    to_build = _validate_components(asked + missing)
    check_build_inputs(to_build, engine, base_image)
    base_labels = engine.image_labels(base_image)
    warning = images.base_age_warning(base_image, base_labels, base_max_age_days)
    for index, component in enumerate(to_build, start=1):
        progress(f"building {_latest(component)} ({index}/{len(to_build)})")
        build_component(component, _latest(component), engine, base_image, progress=output)
    ids = {c: engine.image_id(_latest(c)) for c in release.COMPONENTS}
    reused = False
    if tag is None:
        existing = set()
        for component in release.COMPONENTS:
            existing |= set(engine.local_tags(release.image_repository(component)))
        newest = next(iter(release.release_tags(existing)), None)
        if newest and all(_same_image(engine, release.image_name(c, newest), ids[c]) for c in release.COMPONENTS):
            tag, reused = str(newest), True
        else:
            tag = str(release.next_tag(existing, today or dt.datetime.now(dt.UTC).date()))
    validate_image_tag(tag)
    progress(f"tagging every component as {tag}{' (unchanged since that release)' if reused else ''}")
    refs = {}
    for component in release.COMPONENTS:
        ref = f"{release.image_repository(component)}:{tag}"
        engine.tag_image(_latest(component), ref)
        refs[component] = ref
    return BuildResult(tag=tag, images=refs, reused_tag=reused, warnings=(warning,) if warning else ())


def build_component(component: str, ref: str, engine: DockerEngine, base_image: str = BASE_IMAGE,
                    progress: Progress | None = None) -> str:
    """Build one component's image as `ref` and return its id. Its OCI labels are functions of
    its inputs and base (`images.oci_labels`), never of the build: no release tag, no build
    time. So an unchanged recipe keeps its image id, and deploys keep its container running."""
    rec = images.recipe(component, PROJECT_ROOT)
    base_id = engine.image_id(base_image)
    return engine.build_image(
        PROJECT_ROOT,
        rec.dockerfile,
        ref,
        build_args={"BASE_IMAGE": base_image, **rec.build_args},
        labels=images.oci_labels(rec, _base_name(engine, base_image, base_id), base_id, PROJECT_ROOT),
        progress=progress,
        target=rec.target,
    )


def _base_name(engine: DockerEngine, base_image: str, base_id: str) -> str:
    """The base's most telling name: a dated tag of the same image (`isletnet-base:<hash>-<date>`)
    rather than `latest`, so a release records which base it used."""
    repository, tag = split_image_ref(base_image)
    if tag != "latest":
        return base_image
    named = [ref for ref, image_id in engine.image_refs(repository) if image_id == base_id and ref != base_image]
    return max(named, default=base_image)


def _same_image(engine: DockerEngine, ref: str, image_id: str) -> bool:
    return engine.image_exists(ref) and engine.image_id(ref) == image_id


def _latest(component: str) -> str:
    return f"{release.image_repository(component)}:latest"


# -- running --------------------------------------------------------------------------------------


def _compose_env(instance: InstanceConfig) -> dict[str, str]:
    """The env file's values, passed to compose so they win over stray shell variables."""
    return read_env_file(instance.env_file)


def validate_services(services: Iterable[str] | None) -> list[str]:
    """The named services, each checked against the release's components (a sentence otherwise)."""
    chosen = list(services or [])
    unknown = [s for s in chosen if s not in release.COMPONENTS]
    if unknown:
        raise ConfigError(
            f"Unknown service(s): {', '.join(unknown)}.", f"Services: {', '.join(release.COMPONENTS)}."
        )
    return chosen


def require_prepared(instance: InstanceConfig) -> list[Path]:
    """The instance's compose files, or a sentence saying it was never set up."""
    if current_tag(instance) is None:
        raise ConfigError(
            f"Instance '{instance.name}' has not been set up yet (no compose files in {instance.directory}).",
            "Run 'isletops up --tag TAG' or 'isletops deploy --tag TAG' first.",
        )
    return compose_files(instance)


def check_images(tag: str, registry: str, engine: DockerEngine) -> None:
    """Local images without a registry must exist: say which and how to make them."""
    if registry:
        return  # compose pulls what is missing from the registry
    missing = [release.image_repository(c) + f":{tag}" for c in release.COMPONENTS
               if not engine.image_exists(f"{release.image_repository(c)}:{tag}")]
    if missing:
        raise DockerError(
            f"Image(s) {', '.join(missing)} do not exist locally.",
            "Build them with 'isletops build' (it prints the tag) or deploy a released tag.",
        )


def up(
    site: SiteConfig,
    instance: InstanceConfig | str | None,
    tag: str | None = None,
    force_recreate: bool = False,
    services: Iterable[str] | None = None,
    timeout_s: float | None = None,
    registry: str | None = None,
    engine: DockerEngine | None = None,
) -> list[ServiceState]:
    """Start (or update) the instance on `tag` (default: its current tag) and wait until healthy.

    `registry` None keeps the instance's current registry prefix. Returns the containers' states;
    raises `DockerError` naming each service that did not become healthy and its last health output.
    """
    engine = engine or DockerEngine()
    instance = resolve_instance(site, instance)
    chosen = validate_services(services)
    tag = tag or current_tag(instance)
    if not tag:
        raise ConfigError(
            f"Instance '{instance.name}' has no release tag yet.",
            "Pass --tag (see 'isletops build' or 'isletops releases').",
        )
    registry = current_registry(instance) if registry is None else registry
    validate_image_tag(tag)
    check_images(tag, registry, engine)  # before touching the instance: a bad tag changes nothing
    files = prepare_instance(site, instance, tag, registry=registry, engine=engine)
    timeout = float(timeout_s if timeout_s is not None else instance.health_timeout_s)
    waiting = chosen or list(release.COMPONENTS)
    command = _command(engine, instance, files).up(chosen, force_recreate, wait_timeout_s=timeout)
    try:
        engine.run_compose(command, instance.project_name, instance.directory, _compose_env(instance),
                           timeout_s=timeout + 120, what="compose up")
    except DockerError as error:
        # compose says "container x is unhealthy"; add what the health check itself said.
        states = [s for s in engine.project_containers(instance.project_name, waiting) if not s.is_ready]
        detail = "; ".join(health_said(s) for s in states)
        raise DockerError(f"{error.message.rstrip('.')}.{f' Not ready: {detail}.' if detail else ''}",
                          f"See 'isletops logs {states[0].service}'." if states else None) from None
    return _wait(engine, instance, waiting, timeout)


def _command(engine: DockerEngine, instance: InstanceConfig, files: list[Path]) -> ComposeCommand:
    return engine.compose_cli().for_project(instance.project_name, files)


def _wait(engine: DockerEngine, instance: InstanceConfig, services: list[str], timeout_s: float) -> list[ServiceState]:
    """The one health wait (`isletops.engines.health`) over the project's containers."""
    return wait_healthy(lambda: engine.project_containers(instance.project_name, services), services,
                        HealthPolicy(timeout_s))


def down(
    site: SiteConfig,
    instance: InstanceConfig | str | None,
    remove_data: bool = False,
    timeout_s: float = 120,
    engine: DockerEngine | None = None,
) -> bool:
    """Stop and remove the instance's containers and network; with `remove_data` also its data
    folders (the S3 objects and the database!). Returns False when nothing was set up."""
    engine = engine or DockerEngine()
    instance = resolve_instance(site, instance)
    if current_tag(instance) is None:
        if remove_data:
            remove_data_dirs(instance, engine)
        return False
    command = _command(engine, instance, compose_files(instance)).down(remove_volumes=remove_data)
    engine.run_compose(command, instance.project_name, instance.directory, _compose_env(instance),
                       timeout_s=timeout_s, what="compose down")
    if remove_data:
        remove_data_dirs(instance, engine)
    return True


def remove_data_dirs(instance: InstanceConfig, engine: DockerEngine) -> None:
    """Delete the instance's data folders (owned by container users, so root or a container does it)."""
    base = instance.local_data_dir.resolve()
    for name in DATA_DIR_OWNERS:
        path = base / name
        if not path.exists():
            continue
        try:
            shutil.rmtree(path)
        except PermissionError:
            engine.run_oneshot(BASE_IMAGE, ["sh", "-c", "rm -rf /target/* /target/.[!.]* || true"],
                               binds={str(path): "/target"})
            shutil.rmtree(path, ignore_errors=True)
