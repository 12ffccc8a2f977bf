import datetime as dt

import pytest

from isletops.errors import TagError
from isletops.release import COMPONENTS, ReleaseTag, image_name, next_tag, release_tags

TODAY = dt.date(2026, 11, 23)


def test_first_release_of_the_day_is_01():
    assert str(next_tag([], TODAY)) == "2026-11-23_01"


def test_second_release_same_day_is_02_and_other_days_do_not_count():
    existing = ["2026-11-22_07", "2026-11-23_01", "latest"]
    assert str(next_tag(existing, TODAY)) == "2026-11-23_02"


def test_numbers_continue_past_ten():
    existing = [f"2026-11-23_{n:02d}" for n in range(1, 11)]
    assert str(next_tag(existing, TODAY)) == "2026-11-23_11"


@pytest.mark.parametrize("bad", ["2026-13-45_1", "latest", "../x", "2026-11-23", "2026-11-23_00", "", "2026-02-30_01"])
def test_malformed_tags_are_refused_with_a_sentence(bad):
    with pytest.raises(TagError) as excinfo:
        ReleaseTag.parse(bad)
    assert "not a release tag" in str(excinfo.value)


def test_release_tags_sorted_newest_first_ignoring_others():
    tags = release_tags(["2026-11-23_01", "2026-11-23_10", "latest", "2026-11-22_03", "2026-11-23_02"])
    assert [str(t) for t in tags] == ["2026-11-23_10", "2026-11-23_02", "2026-11-23_01", "2026-11-22_03"]


def test_image_name_with_and_without_registry():
    assert image_name("frontend", "2020-01-29_01", "registry.example.org") == (
        "registry.example.org/isletnet-frontend:2020-01-29_01"
    )
    assert image_name("backend", "2020-01-29_01") == "isletnet-backend:2020-01-29_01"
    with pytest.raises(TagError):
        image_name("nosuch", "2020-01-29_01")


def test_components_start_with_their_dependencies():
    assert COMPONENTS.index("storage") < COMPONENTS.index("backend") < COMPONENTS.index("frontend")
    assert COMPONENTS.index("queue") < COMPONENTS.index("shepherd")
