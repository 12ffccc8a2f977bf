"""Which release images pruning removes: pure choice, no Docker."""

import pytest

from isletops.history import History, HistoryEntry
from isletops.image_prune import LocalImage, plan_prune, protected_tags, release_of

REG = "registry.example.org:5000/team"
T1, T2, T3, T4, T5 = "2026-01-01_01", "2026-01-01_02", "2026-01-02_01", "2026-02-01_01", "2026-02-01_02"


def images(*tags: str, component: str = "backend", registry: str = REG) -> list[LocalImage]:
    return [LocalImage(f"{registry}/isletnet-{component}:{tag}", f"sha256:{component}-{tag}") for tag in tags]


def test_only_release_tags_of_the_registrys_component_repositories_count():
    repositories = {f"{REG}/isletnet-backend": "backend"}
    assert release_of(f"{REG}/isletnet-backend:{T1}", repositories) == T1
    assert release_of(f"{REG}/isletnet-backend:latest", repositories) is None
    assert release_of(f"{REG}/isletnet-backend:2026-13-45_1", repositories) is None
    assert release_of(f"other:5000/isletnet-backend:{T1}", repositories) is None
    assert release_of(f"isletnet-backend:{T1}", repositories) is None
    assert release_of(f"{REG}/isletnet-backend", repositories) is None  # no tag at all


def test_keeps_the_newest_n_releases_across_components_and_removes_the_rest():
    local = images(T1, T2, T3, T4, T5) + images(T1, T5, component="frontend")
    plan = plan_prune(local, REG, keep=2)
    # Newest first, like `isletops releases`.
    assert plan.remove == [f"{REG}/isletnet-backend:{T3}", f"{REG}/isletnet-backend:{T2}",
                           f"{REG}/isletnet-frontend:{T1}", f"{REG}/isletnet-backend:{T1}"]
    assert plan.keep == {
        f"{REG}/isletnet-frontend:{T5}": "one of the newest 2 releases",
        f"{REG}/isletnet-backend:{T5}": "one of the newest 2 releases",
        f"{REG}/isletnet-backend:{T4}": "one of the newest 2 releases",
    }


def test_deployed_previous_and_in_use_images_are_never_removed():
    local = images(T1, T2, T3, T4, T5)
    protected = {T1: "deployed on instance 'prod'", T2: "previous on instance 'prod'"}
    plan = plan_prune(local, REG, keep=1, protected=protected, in_use={f"sha256:backend-{T3}"})
    assert plan.remove == [f"{REG}/isletnet-backend:{T4}"]
    assert plan.keep[f"{REG}/isletnet-backend:{T1}"] == "deployed on instance 'prod'"
    assert plan.keep[f"{REG}/isletnet-backend:{T2}"] == "previous on instance 'prod'"
    assert plan.keep[f"{REG}/isletnet-backend:{T3}"] == "used by a container"
    assert plan.keep[f"{REG}/isletnet-backend:{T5}"] == "one of the newest 1 releases"


def test_other_images_are_not_even_listed():
    local = images("latest") + images(T1, registry="elsewhere:5000") + [LocalImage(f"isletnet-base:{T1}", "sha256:x")]
    plan = plan_prune(local, REG, keep=1)
    assert plan.remove == [] and plan.keep == {}


def test_a_scheme_in_the_registry_is_not_part_of_image_names():
    plan = plan_prune(images(T1, T2, registry="127.0.0.1:5000"), "http://127.0.0.1:5000", keep=1)
    assert plan.remove == [f"127.0.0.1:5000/isletnet-backend:{T1}"]


def test_keep_must_be_at_least_one():
    with pytest.raises(ValueError):
        plan_prune(images(T1), REG, keep=0)


def test_protected_tags_come_from_every_instances_history(tmp_path):
    for name, tags in (("prod", (T1, T2, T3)), ("staging", (T4,))):
        history = History(tmp_path / name / "state", name)
        for tag in tags:
            history.append(HistoryEntry(command="deploy", from_tag="", to_tag=tag, result="ok", duration_s=1.0))
    History(tmp_path / "prod" / "state", "prod").append(
        HistoryEntry(command="deploy", from_tag=T3, to_tag=T5, result="rolled_back", duration_s=1.0)
    )
    (tmp_path / "broken" / "state").mkdir(parents=True)
    (tmp_path / "broken" / "state" / "history.jsonl").write_text("{not json\n")
    assert protected_tags(tmp_path) == {
        T3: "deployed on instance 'prod'",
        T2: "previous on instance 'prod'",
        T4: "deployed on instance 'staging'",
    }
