"""Release tags and image names: the one place that knows the `YYYY-MM-DD_NN` format, and the
`release` (tag + push) and `releases` (list) operations built on it.

A tag names a release of every component at once. The first release of a day is `_01`, the next
`_02`; the next number is computed from tags that already exist (in the registry), never from
local memory. This module does no I/O of its own: `release` and `list_releases` act through the
registry reader and the engine their caller passes in.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

from isletops.errors import RegistryError, TagError

# Start order: each component's dependencies come before it. Stop order is the reverse.
COMPONENTS: tuple[str, ...] = ("storage", "queue", "backend", "shepherd", "pruner", "frontend", "edge")
IMAGE_PREFIX = "isletnet-"

_TAG_PATTERN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})_(\d{2,3})$")


@dataclass(frozen=True, order=True)
class ReleaseTag:
    """A parsed release tag; orders by date, then by number within the day."""

    date: dt.date
    number: int

    def __str__(self) -> str:
        return f"{self.date.isoformat()}_{self.number:02d}"

    @classmethod
    def parse(cls, text: str) -> ReleaseTag:
        match = _TAG_PATTERN.match(text or "")
        if not match:
            raise TagError(
                f"'{text}' is not a release tag.",
                "Tags look like 2026-11-23_01 (date, underscore, two-digit number); "
                "run 'isletops releases' to list them.",
            )
        year, month, day, number = (int(part) for part in match.groups())
        try:
            date = dt.date(year, month, day)
        except ValueError as exc:
            raise TagError(f"'{text}' is not a release tag: {exc}.", "Use a real calendar date.") from None
        if number < 1:
            raise TagError(f"'{text}' is not a release tag: numbers start at _01.")
        return cls(date, number)

    @classmethod
    def is_valid(cls, text: str) -> bool:
        try:
            cls.parse(text)
        except TagError:
            return False
        return True


def release_tags(tags: Iterable[str]) -> list[ReleaseTag]:
    """The release tags among `tags` (others, like `latest`, are ignored), newest first."""
    return sorted((ReleaseTag.parse(tag) for tag in tags if ReleaseTag.is_valid(tag)), reverse=True)


def next_tag(existing: Iterable[str], today: dt.date) -> ReleaseTag:
    """The tag for a new release made on `today`, given the tags that already exist."""
    numbers_today = [tag.number for tag in release_tags(existing) if tag.date == today]
    return ReleaseTag(today, max(numbers_today, default=0) + 1)


def image_repository(component: str, registry: str = "") -> str:
    """`<registry>/isletnet-<component>` (no registry: the local name)."""
    if component not in COMPONENTS:
        raise TagError(f"'{component}' is not a component.", f"Known components: {', '.join(COMPONENTS)}.")
    prefix = f"{registry.rstrip('/')}/" if registry else ""
    return f"{prefix}{IMAGE_PREFIX}{component}"


def image_name(component: str, tag: ReleaseTag | str, registry: str = "") -> str:
    """Full image reference `<registry>/isletnet-<component>:<tag>`."""
    tag_text = str(tag if isinstance(tag, ReleaseTag) else ReleaseTag.parse(tag))
    return f"{image_repository(component, registry)}:{tag_text}"


def repository_prefix(registry: str) -> str:
    """The `${REPOSITORY}` value compose templates put before `isletnet-<component>`."""
    return f"{registry.rstrip('/')}/" if registry else ""


def release_images(tag: ReleaseTag | str, registry: str = "") -> dict[str, str]:
    """Every component's image reference for release `tag`, in start order."""
    return {component: image_name(component, tag, registry) for component in COMPONENTS}


def local_build_image(component: str, build_tag: str = "latest") -> str:
    """The image `isletops build` leaves on this host for `component` (`isletnet-<c>:<build_tag>`)."""
    return f"{image_repository(component)}:{build_tag}"


def newest_first(tags: Iterable[str]) -> list[str]:
    """The release tags among `tags`, as text, newest first (others ignored)."""
    return [str(tag) for tag in release_tags(tags)]


def tag_of_image(ref: str) -> str | None:
    """The tag an image reference carries (`.../isletnet-backend:2026-11-20_01` -> the release tag;
    `isletnet-backend:itest` -> `itest`), or None when it has none (a digest or a bare name)."""
    name, _, tag = (ref or "").split("@", 1)[0].rpartition(":")
    return tag if name and "/" not in tag else None


# -- release (tag + push) and the list of releases ------------------------------------------------


class RegistryReader(Protocol):
    """What `release` and `list_releases` read from a registry (`isletops.registry.RegistryClient`)."""

    @property
    def name(self) -> str: ...

    def ping(self) -> None: ...

    def component_tags(self, components: Iterable[str] = COMPONENTS) -> dict[str, list[str]]: ...

    def image_ref(self, component: str, tag: str) -> str: ...


class ImagePusher(Protocol):
    """What `release` needs of an engine (every `isletops.engines.Engine` has it)."""

    def image_present(self, ref: str) -> bool: ...

    def tag(self, source: str, target: str) -> None: ...

    def push(self, ref: str) -> None: ...


@dataclass(frozen=True)
class ReleaseRow:
    """One release tag of the registry, as `isletops releases` lists it."""

    tag: str
    complete: bool  # every component has this tag
    deployed: bool
    previous: bool
    failed: bool = False  # its last deploy attempt failed or was rolled back (from the history)


def list_releases(
    registry: RegistryReader, deployed: str = "", previous: str = "", failed: Iterable[str] = ()
) -> list[ReleaseRow]:
    """Release tags in the registry, newest first, marking the deployed, previous and failed ones."""
    per_component = registry.component_tags()
    everywhere = set.intersection(*(set(tags) for tags in per_component.values())) if per_component else set()
    anywhere: set[str] = set().union(*per_component.values()) if per_component else set()
    bad = set(failed)
    return [
        ReleaseRow(tag, tag in everywhere, tag == deployed, tag == previous, tag in bad)
        for tag in newest_first(anywhere)
    ]


@dataclass(frozen=True)
class ReleasePlan:
    """The next release tag and, per component, the local image pushed as which reference."""

    tag: str
    pushes: Mapping[str, tuple[str, str]]  # component -> (local source, registry target)


def plan_release(registry: RegistryReader, build_tag: str = "latest", today: dt.date | None = None) -> ReleasePlan:
    """The next tag from the registry's tags (all components), and what gets tagged and pushed."""
    registry.ping()
    existing = [tag for tags in registry.component_tags().values() for tag in tags]
    tag = str(next_tag(existing, today or dt.datetime.now(dt.UTC).date()))
    return ReleasePlan(tag, {c: (local_build_image(c, build_tag), registry.image_ref(c, tag)) for c in COMPONENTS})


def release(
    registry: RegistryReader, engine: ImagePusher, build_tag: str = "latest",
    progress: Callable[[str], None] | None = None, today: dt.date | None = None,
) -> ReleasePlan:
    """Tag every component's local build with the next release tag and push it."""
    plan = plan_release(registry, build_tag, today)
    absent = [source for source, _target in plan.pushes.values() if not engine.image_present(source)]
    if absent:
        raise RegistryError(
            f"Cannot release: local image(s) {', '.join(absent)} do not exist.", "Run 'isletops build' first."
        )
    for source, target in plan.pushes.values():
        if progress:
            progress(f"pushing {target}")
        engine.tag(source, target)
        engine.push(target)
    return plan
