"""`isletops render daemon-json`: shows the merge of a given file, leaves the file alone."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from isletops.cli import main


def test_render_daemon_json_merges_a_given_file(tmp_path: Path) -> None:
    current = tmp_path / "daemon.json"
    current.write_text('{"debug": true}')
    result = CliRunner().invoke(main, ["render", "daemon-json", "--current", str(current), "--set", "gpu=true",
                                       "--set", "docker_data_root=/data/docker"])
    assert result.exit_code == 0, result.output
    merged = json.loads(result.stdout)
    assert merged["debug"] is True
    assert merged["data-root"] == "/data/docker"
    assert merged["default-runtime"] == "nvidia"
    assert current.read_text() == '{"debug": true}'  # only shown, never written


def test_render_daemon_json_invalid_file_is_one_line(tmp_path: Path) -> None:
    current = tmp_path / "daemon.json"
    current.write_text("{nope")
    result = CliRunner().invoke(main, ["render", "daemon-json", "--current", str(current)])
    assert result.exit_code == 2
    assert result.output.startswith(f"isletops: error: {current} is not valid JSON (line 1, column 2")
    assert current.read_text() == "{nope"
