"""`isletops.images`: the provenance labels are functions of an image's inputs only (git commit
that last changed them, else a content hash), and the base image's age check. Real git in a
temporary repository; no Docker."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from isletops import images
from isletops.config import parse_config
from isletops.errors import ConfigError

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
DOCKERFILE = """ARG BASE_IMAGE=isletnet-base:latest
FROM ${BASE_IMAGE} AS wheels
ARG COMPONENT
COPY services/${COMPONENT}/requirements.txt /tmp/requirements.txt
FROM ${BASE_IMAGE} AS user
USER 10001:10001
FROM user AS app
COPY --from=wheels /opt/venv /opt/venv
COPY services/app /app/services/app
FROM user AS other
COPY services/other /app/services/other
"""


def _git(root: Path, *args: str, when: int = 1_780_000_000) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": f"@{when} +0000", "GIT_COMMITTER_DATE": f"@{when} +0000",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name, text in {"services/python.Dockerfile": DOCKERFILE, ".dockerignore": "*\n!services\nservices/**/tests\n",
                       "services/app/main.py": "x = 1\n", "services/app/requirements.txt": "flask\n",
                       "services/app/tests/test_main.py": "", "services/other/main.py": "y = 1\n"}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    return tmp_path


def _labels(root: Path) -> dict[str, str]:
    rec = images.Recipe("app", root / "services" / "python.Dockerfile", "app", {"COMPONENT": "app"})
    return images.oci_labels(rec, "isletnet-base:abc-202612030215", "sha256:base", root)


def test_the_inputs_follow_the_target_stages_and_the_build_args(checkout: Path) -> None:
    rec = images.Recipe("app", checkout / "services" / "python.Dockerfile", "app", {"COMPONENT": "app"})
    assert images.input_paths(rec, checkout) == [
        ".dockerignore", "services/app", "services/app/requirements.txt", "services/python.Dockerfile"]
    assert images.final_user(rec) == "10001:10001"
    assert images.base_reference(rec) == "${BASE_IMAGE}"


def test_labels_name_the_commit_that_last_changed_the_inputs_and_its_time(checkout: Path) -> None:
    first = _git(checkout, "rev-parse", "HEAD")
    labels = _labels(checkout)
    assert labels["org.opencontainers.image.revision"] == first
    assert labels["org.opencontainers.image.created"] == "2026-05-28T20:26:40Z"  # @1780000000
    assert labels["org.opencontainers.image.base.digest"] == "sha256:base"
    assert labels["org.opencontainers.image.base.name"] == "isletnet-base:abc-202612030215"
    assert labels["org.opencontainers.image.title"] == "isletnet-app"
    assert "org.opencontainers.image.source" not in labels  # no remote
    # Commits that touch other components or the tests (left out of the context) change nothing.
    (checkout / "services/other/main.py").write_text("y = 2\n")
    (checkout / "services/app/tests/test_main.py").write_text("assert True\n")
    _git(checkout, "commit", "-qam", "two", when=1_780_000_100)
    assert _labels(checkout) == labels
    # A change to the component's own code is a new revision, at its commit's time.
    (checkout / "services/app/main.py").write_text("x = 2\n")
    assert _labels(checkout)["org.opencontainers.image.revision"] == first + "-dirty"
    _git(checkout, "commit", "-qam", "three", when=1_780_000_200)
    again = _labels(checkout)
    assert again["org.opencontainers.image.revision"] == _git(checkout, "rev-parse", "HEAD") != first
    assert again["org.opencontainers.image.created"] == "2026-05-28T20:30:00Z"


def test_the_source_label_is_the_origin_remote_without_credentials(checkout: Path) -> None:
    _git(checkout, "remote", "add", "origin", "https://deployer:secret@git.example.org/isletnet.git")
    assert _labels(checkout)["org.opencontainers.image.source"] == "https://git.example.org/isletnet.git"


def test_without_git_the_revision_is_a_content_hash(checkout: Path) -> None:
    (checkout / ".git").rename(checkout / "not-git")
    first = _labels(checkout)
    assert first["org.opencontainers.image.revision"].startswith("sha256:")
    assert _labels(checkout) == first  # deterministic
    (checkout / "services/app/tests/test_main.py").write_text("assert 1\n")  # outside the context
    assert _labels(checkout)["org.opencontainers.image.revision"] == first["org.opencontainers.image.revision"]
    (checkout / "services/app/main.py").write_text("x = 3\n")
    assert _labels(checkout)["org.opencontainers.image.revision"] != first["org.opencontainers.image.revision"]


def test_the_base_time_comes_from_the_security_index_label_else_created() -> None:
    assert images.base_time({images.BASE_INDEX_LABEL: "202612030215"}) == dt.datetime(2026, 12, 3, 2, 15,
                                                                                       tzinfo=dt.UTC)
    assert images.base_time({images.CREATED_LABEL: "2026-11-01T10:00:00Z"}) == dt.datetime(2026, 11, 1, 10,
                                                                                        tzinfo=dt.UTC)
    assert images.base_time({images.BASE_INDEX_LABEL: "soon"}) is None
    assert images.base_time({}) is None
    assert images.base_time(None) is None


def test_a_base_older_than_the_limit_gives_a_warning_naming_the_fix() -> None:
    fresh = {images.BASE_INDEX_LABEL: "202611200000"}  # 14 days before NOW
    assert images.base_age_warning("isletnet-base:latest", fresh, 30, now=NOW) is None
    warning = images.base_age_warning("isletnet-base:latest", fresh, 10, now=NOW)
    assert warning == (
        "The base image isletnet-base:latest is 14 days old (packages as of 2026-11-20), older than "
        "base_image_max_age_days (10); rebuild it with 'make bootstrap' to get the current Debian security fixes.")
    assert images.base_age_warning("isletnet-base:latest", fresh, 0, now=NOW) is None  # 0: never
    unknown = images.base_age_warning("debian:bookworm", {}, 30, now=NOW)
    assert unknown is not None and "does not say how old" in unknown


def test_base_image_max_age_days_is_validated() -> None:
    assert parse_config({}).base_image_max_age_days == 30
    assert parse_config({"base_image_max_age_days": 0}).base_image_max_age_days == 0
    with pytest.raises(ConfigError, match=r"base_image_max_age_days must be 0 \(no warning\) or more days, got -1"):
        parse_config({"base_image_max_age_days": -1})
    with pytest.raises(ConfigError, match="base_image_max_age_days must be a whole number, got 'monthly'"):
        parse_config({"base_image_max_age_days": "monthly"})
