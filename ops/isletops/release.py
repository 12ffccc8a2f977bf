"""Release tags and image names: the one place that knows the `YYYY-MM-DD_NN` format.

A tag names a release of every component at once. The first release of a day is `_01`, the next
`_02`; the next number is computed from tags that already exist (in the registry), never from
local memory. Pure logic: no I/O here.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass

from isletops.errors import TagError

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
