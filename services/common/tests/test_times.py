"""ISO 8601 UTC times as the services write and read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.common.times import iso_utc, parse_utc

MOMENT = datetime(2026, 11, 25, 9, 30, 0, 123456, tzinfo=UTC)


def test_round_trip_with_z() -> None:
    assert iso_utc(MOMENT) == "2026-11-25T09:30:00.123456Z"
    assert parse_utc(iso_utc(MOMENT)) == MOMENT
    assert iso_utc(None) is None


def test_other_zones_are_converted_and_naive_values_are_utc() -> None:
    assert iso_utc(MOMENT.astimezone(timezone(timedelta(hours=2)))) == "2026-11-25T09:30:00.123456Z"
    assert parse_utc("2026-11-25T11:30:00+02:00") == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert parse_utc("2026-11-25T09:30:00") == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
    assert parse_utc(datetime(2026, 11, 25, 9, 30)) == datetime(2026, 11, 25, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", [None, "", "yesterday", 1764063000, "2026-13-01T00:00:00Z"])
def test_anything_else_is_none(value: object) -> None:
    assert parse_utc(value) is None
