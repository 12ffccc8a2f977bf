"""Times as the services store and exchange them: ISO 8601 text in UTC, read back as aware
datetimes (a naive value is taken as UTC, `Z` is accepted). Pure, no outside systems."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_utc(value: Any) -> datetime | None:
    """`value` (a datetime or ISO 8601 text) as an aware datetime; None for anything else."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso_utc(moment: datetime | None) -> str | None:
    """`moment` as ISO 8601 text in UTC with a `Z` (`2026-11-25T09:30:00.123456Z`); None stays None."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None
