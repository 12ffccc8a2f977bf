"""Removing old release images from this host (Kamal's `prune images` and retain policy).

Every deploy pulls one image per component; without pruning, Docker's data root fills up release by release
(the disk probe then mails). After a successful deploy, and on `isletops prune images`, the local
images `<registry>/isletnet-<component>:<release tag>` of releases older than the newest N are
removed, except:

- the deployed and the previous tag of every instance under `instances_root` (from their
  histories: `rollback` must not need a pull), and
- any image a container uses (running or stopped), whatever its tag.

Only release tags (`YYYY-MM-DD_NN`, as `release.py` defines them) of the component repositories
of the given registry are considered: local builds (`isletnet-backend:latest`), base images and
other registries' images are never touched. `plan_prune` is the pure choice; `prune_images` does
the Docker I/O around it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isletops.config import SiteConfig
from isletops.errors import DockerError
from isletops.history import History, deployed_tags
from isletops.registry import RegistryAddress
from isletops.release import COMPONENTS, ReleaseTag, image_repository, newest_first

DEFAULT_KEEP = 5


@dataclass(frozen=True)
class LocalImage:
    """One local image reference (`repository:tag`) and the image it names."""

    ref: str
    image_id: str


@dataclass
class PrunePlan:
    """What pruning removes, and what it keeps and why (ref -> reason)."""

    remove: list[str] = field(default_factory=list)
    keep: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        return [f"remove {ref}" for ref in self.remove] + [f"keep   {ref}  ({why})" for ref, why in self.keep.items()]


def release_of(ref: str, repositories: dict[str, str]) -> str | None:
    """The release tag of `ref` when it is `<repository>:<release tag>` for one of `repositories`
    (repository -> component); None for anything else (other names, `latest`, digests)."""
    repository, _, tag = ref.rpartition(":")
    if repository not in repositories or "/" in tag or not ReleaseTag.is_valid(tag):
        return None
    return tag


def plan_prune(
    images: Iterable[LocalImage],
    registry: str,
    keep: int,
    protected: dict[str, str] | None = None,
    in_use: Iterable[str] = (),
) -> PrunePlan:
    """Choose what to remove. `keep`: how many of the newest release tags stay; `protected`:
    tag -> why it must stay (deployed/previous somewhere); `in_use`: image ids containers use."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    prefix = RegistryAddress.parse(registry).name
    repositories = {image_repository(component, prefix): component for component in COMPONENTS}
    candidates = [(image, tag) for image in images if (tag := release_of(image.ref, repositories))]
    newest = set(newest_first({tag for _image, tag in candidates})[:keep])
    protected = protected or {}
    used = set(in_use)
    plan = PrunePlan()
    # Newest first, so the output reads like `isletops releases`.
    for image, tag in sorted(candidates, key=lambda pair: (ReleaseTag.parse(pair[1]), pair[0].ref), reverse=True):
        if tag in protected:
            plan.keep[image.ref] = protected[tag]
        elif image.image_id in used:
            plan.keep[image.ref] = "used by a container"
        elif tag in newest:
            plan.keep[image.ref] = f"one of the newest {keep} releases"
        else:
            plan.remove.append(image.ref)
    return plan


def protected_tags(instances_root: Path) -> dict[str, str]:
    """Tag -> why, for the deployed and previous tag of every instance under `instances_root`.
    An unreadable history protects nothing but breaks nothing (the in-use check still holds)."""
    protected: dict[str, str] = {}
    for history_file in sorted(Path(instances_root).glob("*/state/history.jsonl")):
        state_dir = history_file.parent
        name = state_dir.parent.name
        deployed = deployed_tags(History(state_dir, name).read().entries)
        if deployed.previous:
            protected.setdefault(deployed.previous, f"previous on instance '{name}'")
        if deployed.current:
            protected[deployed.current] = f"deployed on instance '{name}'"
    return protected


@dataclass
class PruneResult:
    plan: PrunePlan
    removed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # ref -> why Docker refused


def prune_images(
    site: SiteConfig,
    registry: str,
    keep: int,
    engine: Any,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PruneResult:
    """Plan with what Docker has now, then remove (unless `dry_run`). A reference Docker refuses
    to remove (a container started from it meanwhile) is reported, never forced."""
    say = progress or (lambda _line: None)
    prefix = RegistryAddress.parse(registry).name
    images = [
        LocalImage(ref, image_id)
        for component in COMPONENTS
        for ref, image_id in engine.image_refs(image_repository(component, prefix))
    ]
    plan = plan_prune(images, registry, keep, protected_tags(site.instances_root), engine.container_image_ids())
    result = PruneResult(plan)
    if dry_run:
        return result
    for ref in plan.remove:
        try:
            engine.remove_image(ref)
        except DockerError as exc:
            result.failed[ref] = str(exc)
            continue
        say(f"removed {ref}")
        result.removed.append(ref)
    return result
