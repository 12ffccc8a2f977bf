"""The cron probe's log (`isletops probe --log FILE`): one time-stamped line per probe and pass,
rotated by size so that a probe every 5 minutes cannot fill the disk."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main
from monitors import cron


def test_the_log_is_rotated_by_size_and_keeps_two_older_files(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "probe.log"
    for number in range(200):
        cron.append_to_log(log, [f"OK       disk       pass {number:03d} " + "x" * 60], max_bytes=2000, backups=2)
    assert sorted(path.name for path in log.parent.iterdir()) == ["probe.log", "probe.log.1", "probe.log.2"]
    for path in log.parent.iterdir():
        assert path.stat().st_size <= 2000
    newest = log.read_text().splitlines()
    assert newest[-1].endswith("pass 199 " + "x" * 60)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ OK       disk       pass", newest[-1])
    # Nothing is lost between the files: the oldest kept line follows on to the newest.
    kept = [line for name in ("probe.log.2", "probe.log.1", "probe.log")
            for line in (log.parent / name).read_text().splitlines()]
    numbers = [int(re.search(r"pass (\d+)", line).group(1)) for line in kept]
    assert numbers == list(range(numbers[0], 200))


def test_an_unwritable_log_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "probe.log").mkdir()  # a folder where the log should be
    with pytest.raises(cron.CronError, match=r"^Cannot write the probe log .*probe.log: Is a directory\.$"):
        cron.append_to_log(tmp_path / "probe.log", ["OK"])


def _config(tmp_path: Path) -> Path:
    disabled = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "instances_root": str(tmp_path / "instances"), "default_instance": "h13log",
        "instances": {"h13log": {"http_port": 18580, "api_port": 18581}},
        "monitoring": {"probes": {**disabled, "disk": {"paths": [str(tmp_path)], "docker_root": str(tmp_path)}}},
    }))  # fmt: skip
    return config


def test_probe_appends_its_results_to_the_log_even_when_quiet(tmp_path: Path) -> None:
    config, log = _config(tmp_path), tmp_path / "logs" / "probe.log"
    for _ in range(2):
        args = ["--config", str(config), "probe", "--quiet", "--no-alert", "--log", str(log)]
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert result.output == ""
    lines = log.read_text().splitlines()  # per pass: the Nagios status line, then one line per probe
    assert len(lines) == 4, lines
    assert all(re.match(r"^\S+Z ISLETNET OK - disk: ", line) for line in lines[0::2]), lines
    assert all(re.match(r"^\S+Z OK       disk       ", line) for line in lines[1::2]), lines


def test_a_failing_pass_leaves_its_sentence_in_the_log(tmp_path: Path) -> None:
    config, log = _config(tmp_path), tmp_path / "probe.log"
    result = CliRunner().invoke(main, ["--config", str(config), "probe", "--only", "banana", "--log", str(log)])
    assert result.exit_code != 0
    (line,) = log.read_text().splitlines()
    assert "isletops: error: " in line and "banana" in line
