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


def test_tag_of_image_reads_the_tag_of_any_reference():
    from isletops.release import tag_of_image

    assert tag_of_image("127.0.0.1:5000/isletnet-backend:2026-11-20_01") == "2026-11-20_01"
    assert tag_of_image("isletnet-backend:itest") == "itest"
    assert tag_of_image("127.0.0.1:5000/isletnet-backend") is None
    assert tag_of_image("isletnet-backend@sha256:abc") is None


def test_releases_mark_deployed_previous_failed_and_incomplete():
    from isletops.history import HistoryEntry, failed_tags
    from isletops.release import list_releases
    from tests.fakes.registry import FakeRegistry

    registry = FakeRegistry()
    for tag in ("2026-11-20_01", "2026-11-21_01", "2026-11-22_01"):
        registry.push_release(tag)
    registry.push("backend", "2026-11-23_01")
    entries = [
        HistoryEntry("deploy", "", "2026-11-20_01", "ok", 1.0, time="t1"),
        HistoryEntry("deploy", "2026-11-20_01", "2026-11-22_01", "rolled_back", 1.0, time="t2"),
        HistoryEntry("deploy", "2026-11-20_01", "2026-11-21_01", "ok", 1.0, time="t3"),
    ]
    rows = list_releases(registry, "2026-11-21_01", "2026-11-20_01", failed_tags(entries))
    assert [(r.tag, r.complete, r.deployed, r.previous, r.failed) for r in rows] == [
        ("2026-11-23_01", False, False, False, False),
        ("2026-11-22_01", True, False, False, True),
        ("2026-11-21_01", True, True, False, False),
        ("2026-11-20_01", True, False, True, False),
    ]


def test_release_tags_and_pushes_every_component_through_the_engine():
    from isletops.errors import RegistryError
    from isletops.release import local_build_image, release
    from tests.fakes.engine import FakeEngine
    from tests.fakes.registry import FakeRegistry

    registry, engine = FakeRegistry(), FakeEngine()
    with pytest.raises(RegistryError, match="isletops build"):
        release(registry, engine, "b1", today=dt.date(2026, 11, 23))
    engine.present |= {local_build_image(c, "b1") for c in COMPONENTS}
    plan = release(registry, engine, "b1", today=dt.date(2026, 11, 23))
    assert plan.tag == "2026-11-23_01"
    assert engine.method_calls("push") == [(image_name(c, plan.tag, registry.name),) for c in COMPONENTS]
