"""The wheels `isletops provision` gathers to install isletops on hosts: a project wheel that is
byte-identical from one build to the next (so a second provisioning run copies nothing), and a
one-sentence error that leaves the earlier set alone when pip cannot get a wheel. Real pip."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import pytest

from isletops.errors import ProvisionError
from isletops.provision import build_project_wheel, prepare_isletops_wheels


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_project_wheel_is_the_same_bytes_when_built_twice(tmp_path: Path) -> None:
    wheels = [build_project_wheel(tmp_path / build) for build in ("one", "two")]
    assert _digest(wheels[0]) == _digest(wheels[1])
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert "isletops/cli/provision.py" in names and "monitors/alerts.py" in names
    assert not any("__pycache__" in name for name in names)


def test_unreachable_index_is_one_sentence_and_keeps_the_old_set(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "kept-1.0-py3-none-any.whl").write_bytes(b"earlier set")
    # Nothing listens on port 9: pip's index is unreachable, as on an offline controller.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing-here"))
    with pytest.raises(ProvisionError) as raised:
        prepare_isletops_wheels(wheels)
    sentence = str(raised.value)
    assert sentence.startswith("Cannot build the isletops wheel to install isletops on the hosts (")
    assert "setuptools" in sentence  # pip's own cause: the build backend could not be fetched
    assert sentence.endswith("or set isletops_install: false in the inventory.")
    assert "\n" not in sentence
    assert [path.name for path in wheels.iterdir()] == ["kept-1.0-py3-none-any.whl"]
    assert not (tmp_path / "wheels.new").exists()
