"""`isletops demo` end to end on a throw-away instance: it builds (cached), tags a release,
starts the stack, pushes the synthetic image through the API and prints count, IEQ and the
overlay; run twice it reuses the release tag. Release tags it created are removed afterwards."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from isletops import release
from isletops.cli import main
from isletops.docker_engine import DockerEngine
from tests.fixtures.stack import StackInstances

pytestmark = pytest.mark.integration


def _release_tags(engine: DockerEngine) -> set[str]:
    return {str(tag) for tag in release.release_tags(engine.local_tags(release.image_repository("backend")))}


def test_demo_runs_end_to_end_and_is_idempotent(service_images, tmp_path_factory):
    engine = DockerEngine()
    tags_before = _release_tags(engine)
    instances = StackInstances(tmp_path_factory, engine)
    made = instances.make("demo", up=False)
    try:
        first = CliRunner().invoke(main, ["--config", str(made.config_path), "--instance", made.project, "demo"])
        assert first.exit_code == 0, first.output
        count = re.search(r"islets found:\s+(\d+) \(the synthetic image has (\d+)\)", first.stdout)
        assert count and count.group(1) == count.group(2), first.stdout
        assert re.search(r"IEQ \(Ricordi\):\s+[\d.]+ \(expected [\d.]+\)", first.stdout)
        overlay = re.search(r"overlay:\s+(\S+) \(http://127\.0\.0\.1:\d+/api/jobs/\S+/overlay\.png\)", first.stdout)
        assert overlay, first.stdout
        with open(overlay.group(1), "rb") as handle:
            assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
        # The demo admin's password is in a 0600 file, never on the screen.
        password_file = made.instance.directory / "demo-admin-password"
        assert f"password in {password_file}, mode 0600" in first.stdout
        assert password_file.stat().st_mode & 0o777 == 0o600
        assert password_file.read_text().strip() not in first.output
        tag = re.search(r"on release (\S+):", first.stdout).group(1)
        assert release.ReleaseTag.is_valid(tag)

        second = CliRunner().invoke(main, ["--config", str(made.config_path), "--instance", made.project, "demo"])
        assert second.exit_code == 0, second.output
        assert f"on release {tag}:" in second.stdout  # nothing changed: same release, no new tag
    finally:
        instances.close()
        for tag in _release_tags(engine) - tags_before:
            for component in release.COMPONENTS:
                engine.remove_image(release.image_name(component, tag))
