"""What each component's image is built from, and what the image says about itself.

A component's *recipe* is its Dockerfile, the build target in it and its build args: the Python
services and storage share `services/python.Dockerfile` (one wheel stage, one user block, a
stage per component); the others have `services/<component>/Dockerfile`. Its *inputs* are the
files the build reads: the Dockerfile, its ignore file and every `COPY` source of the stages the
target needs (read from the Dockerfile with `dockerfile-parse`).

The OCI labels (`oci_labels`) are functions of those inputs only: the git commit that last
changed them, that commit's time (a content hash and the newest file time without git), the
base image's id. So an unchanged recipe rebuilds to the same image id, and deploys leave its
container running (docs/architecture.md, "the edge"). The base image's age check is here too.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker.utils.build
from dockerfile_parse import DockerfileParser

from isletops.render import PROJECT_ROOT

PYTHON_DOCKERFILE = PROJECT_ROOT / "services" / "python.Dockerfile"
# Components built from services/python.Dockerfile: their packages come from the wheelhouse.
WHEEL_COMPONENTS = frozenset({"storage", "backend", "shepherd", "pruner"})
# Labels the base image build (scripts/build-base-image.sh) sets.
BASE_INDEX_LABEL = "org.isletnet.base.security-index"  # YYYYMMDDHHMM (UTC) of the Debian indexes it saw
CREATED_LABEL = "org.opencontainers.image.created"
DEFAULT_BASE_MAX_AGE_DAYS = 30
_GIT_TIMEOUT_S = 30


@dataclass(frozen=True)
class Recipe:
    """How one component's image is built (context: the repository root)."""

    component: str
    dockerfile: Path
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)  # besides BASE_IMAGE


@dataclass(frozen=True)
class Stage:
    """One `FROM` stage of a Dockerfile, as far as provenance needs it."""

    name: str  # its `AS` name, or its index
    base: str  # the `FROM` argument (an image or an earlier stage's name)
    sources: tuple[str, ...]  # `COPY`/`ADD` sources from the build context
    stage_sources: tuple[str, ...]  # stages named by `COPY --from=`
    user: str | None  # its last `USER`, if any


def recipe(component: str, root: Path = PROJECT_ROOT) -> Recipe:
    """The recipe of `component` (one of `release.COMPONENTS`)."""
    if component in WHEEL_COMPONENTS:
        return Recipe(component, root / "services" / "python.Dockerfile", component, {"COMPONENT": component})
    return Recipe(component, root / "services" / component / "Dockerfile")


def ignore_file(dockerfile: Path, root: Path = PROJECT_ROOT) -> Path:
    """The ignore file that shapes the build context: `<Dockerfile>.dockerignore` beside it
    (BuildKit's convention, honoured by `DockerEngine.build_image`), else the root one."""
    own = dockerfile.with_name(dockerfile.name + ".dockerignore")
    return own if own.is_file() else root / ".dockerignore"


def parse_stages(text: str, build_args: Mapping[str, str] | None = None) -> list[Stage]:
    """The stages of a Dockerfile, with `${ARG}` references replaced by `build_args`."""
    args = dict(build_args or {})
    parser = DockerfileParser(path="/nonexistent-Dockerfile", fileobj=None)
    parser.content = text
    stages: list[Stage] = []
    current: dict | None = None

    def close() -> None:
        if current is not None:
            stages.append(Stage(current["name"], current["base"], tuple(current["sources"]),
                                tuple(current["stage_sources"]), current["user"]))

    for item in parser.structure:
        instruction, value = item["instruction"], _substitute(item["value"], args)
        if instruction == "FROM":
            close()
            words = value.split()
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else str(len(stages))
            current = {"name": name, "base": words[0], "sources": [], "stage_sources": [], "user": None}
        elif current is None:
            continue  # ARGs before the first FROM
        elif instruction in ("COPY", "ADD"):
            words = value.split()
            flags = [w for w in words if w.startswith("--")]
            paths = [w for w in words if not w.startswith("--")][:-1]  # the last one is the destination
            origin = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
            (current["stage_sources"] if origin else current["sources"]).extend([origin] if origin else paths)
        elif instruction == "USER":
            current["user"] = value.strip()
    close()
    return stages


def _substitute(value: str, args: Mapping[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), m.group(0)), value)


def needed_stages(stages: list[Stage], target: str | None) -> list[Stage]:
    """The stages a build of `target` (default: the last stage) uses, in file order."""
    by_name = {stage.name: stage for stage in stages}
    wanted: set[str] = set()
    pending = [target or stages[-1].name]
    while pending:
        name = pending.pop()
        if name in wanted or name not in by_name:
            continue
        wanted.add(name)
        pending += [by_name[name].base, *by_name[name].stage_sources]
    return [stage for stage in stages if stage.name in wanted]


def final_user(rec: Recipe) -> str | None:
    """The `USER` the image runs as: the last one along the target's `FROM` chain."""
    stages = parse_stages(rec.dockerfile.read_text(), rec.build_args)
    by_name = {stage.name: stage for stage in stages}
    stage: Stage | None = by_name.get(rec.target) if rec.target else stages[-1]
    while stage is not None:
        if stage.user:
            return stage.user
        stage = by_name.get(stage.base)
    return None


def base_reference(rec: Recipe) -> str:
    """The `FROM` image at the root of the target's chain (`${BASE_IMAGE}` for every component)."""
    stages = parse_stages(rec.dockerfile.read_text())
    by_name = {stage.name: stage for stage in stages}
    stage = by_name[rec.target] if rec.target else stages[-1]
    while stage.base in by_name:
        stage = by_name[stage.base]
    return stage.base


def excluded_patterns(rec: Recipe, root: Path = PROJECT_ROOT) -> list[str]:
    """The ignore file's exclusions inside the inputs (e.g. `services/**/tests`): not inputs."""
    lines = (line.strip() for line in ignore_file(rec.dockerfile, root).read_text().splitlines())
    return [line for line in lines if line and line[0] not in "#!" and line != "*"]


def input_paths(rec: Recipe, root: Path = PROJECT_ROOT) -> list[str]:
    """The files and folders (relative to `root`) whose content makes the image."""
    stages = needed_stages(parse_stages(rec.dockerfile.read_text(), rec.build_args), rec.target)
    paths = {str(rec.dockerfile.relative_to(root)), str(ignore_file(rec.dockerfile, root).relative_to(root))}
    for stage in stages:
        paths.update(source.rstrip("/") for source in stage.sources)
    return sorted(paths)


# -- provenance -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    """Where an image's inputs come from: a source revision and its time."""

    revision: str  # the git commit that last changed the inputs (+ "-dirty"), or "sha256:<content hash>"
    created: str  # ISO 8601 UTC, e.g. 2026-12-04T22:30:00Z


def provenance(paths: Iterable[str], excluded: Iterable[str] = (), root: Path = PROJECT_ROOT) -> Provenance:
    """The revision and time of `paths` less the `excluded` (dockerignore) patterns: from git
    when `root` is a checkout, else from the files themselves."""
    paths, excluded = sorted(paths), sorted(excluded)
    return _git_provenance(paths, excluded, root) or _content_provenance(paths, excluded, root)


def _git(root: Path, *args: str) -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    try:
        done = subprocess.run([git, "-C", str(root), *args], capture_output=True, text=True,
                              timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _git_provenance(paths: list[str], excluded: list[str], root: Path) -> Provenance | None:
    pathspec = [*paths]
    for pattern in excluded:
        pathspec += [f":(exclude,glob){pattern}", f":(exclude,glob){pattern}/**"]
    last = (_git(root, "log", "-1", "--format=%H %ct", "--", *pathspec) or "").split()
    if len(last) != 2:
        return None  # no git, not a checkout, or inputs never committed
    status = _git(root, "status", "--porcelain", "--", *pathspec)
    dirty = "-dirty" if status is None or status.strip() else ""
    return Provenance(last[0] + dirty, _iso(float(last[1])))


def _content_provenance(paths: list[str], excluded: list[str], root: Path) -> Provenance:
    digest = hashlib.sha256()
    newest = 0.0
    for path in _files(paths, excluded, root):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):  # noqa: B023 - consumed at once
                digest.update(block)
        newest = max(newest, path.stat().st_mtime)
    return Provenance(f"sha256:{digest.hexdigest()}", _iso(newest))


def _files(paths: list[str], excluded: list[str], root: Path) -> list[Path]:
    """The files under `paths` that a build context with the `excluded` patterns keeps."""
    kept = docker.utils.build.exclude_paths(str(root), excluded)
    found = [root / name for name in kept
             if any(name == path or name.startswith(path + "/") for path in paths)]
    return sorted(path for path in found if path.is_file())


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(int(timestamp), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def source_url(root: Path = PROJECT_ROOT) -> str:
    """The checkout's `origin` remote without credentials ("" when there is none)."""
    url = (_git(root, "remote", "get-url", "origin") or "").strip()
    return re.sub(r"^(\w+://)[^/@]+@", r"\1", url)


def oci_labels(rec: Recipe, base_name: str, base_id: str, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The image's OCI labels: deterministic functions of its inputs and its base image."""
    origin = provenance(input_paths(rec, root), excluded_patterns(rec, root), root)
    labels = {
        "org.opencontainers.image.title": f"isletnet-{rec.component}",
        CREATED_LABEL: origin.created,
        "org.opencontainers.image.revision": origin.revision,
        "org.opencontainers.image.base.name": base_name,
        "org.opencontainers.image.base.digest": base_id,
    }
    url = source_url(root)
    if url:
        labels["org.opencontainers.image.source"] = url
    return labels


# -- the base image's age -------------------------------------------------------------------------


def base_time(labels: Mapping[str, str] | None) -> dt.datetime | None:
    """When the base image's packages were current: its security-index date, else its created time."""
    labels = labels or {}
    index = labels.get(BASE_INDEX_LABEL, "")
    if re.fullmatch(r"\d{12}", index):
        return dt.datetime.strptime(index, "%Y%m%d%H%M").replace(tzinfo=dt.UTC)
    try:
        created = dt.datetime.fromisoformat(labels.get(CREATED_LABEL, "").replace("Z", "+00:00"))
    except ValueError:
        return None
    return created if created.tzinfo else created.replace(tzinfo=dt.UTC)


def base_age_warning(base_image: str, labels: Mapping[str, str] | None, max_age_days: int,
                     now: dt.datetime | None = None) -> str | None:
    """A warning when the base image is older than `max_age_days` (0: never), else None."""
    if max_age_days <= 0:
        return None
    when = base_time(labels)
    if when is None:
        return (f"The base image {base_image} does not say how old its packages are "
                f"(no {BASE_INDEX_LABEL} or {CREATED_LABEL} label); it may miss security fixes.")
    age = (now or dt.datetime.now(dt.UTC)) - when
    if age <= dt.timedelta(days=max_age_days):
        return None
    return (f"The base image {base_image} is {age.days} days old (packages as of {when:%Y-%m-%d}), older than "
            f"base_image_max_age_days ({max_age_days}); rebuild it with 'make bootstrap' to get the "
            "current Debian security fixes.")
