"""`isletops probe|silence|unsilence|alerts|monitor install-cron` driven through click's runner
against a real config file, real state files and a temporary crontab file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from isletops.cli import main

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, **disk: object) -> Path:
    disabled = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    config = {
        "instances_root": str(tmp_path / "instances"),
        "default_instance": "h5cli",
        "instances": {"h5cli": {"http_port": 18480, "api_port": 18481}},
        "monitoring": {
            "failures_to_alert": 1,
            "probes": {**disabled, "disk": {"paths": [str(tmp_path)], "docker_root": str(tmp_path / "d"), **disk}},
        },
        "mail": {"smtp_port": 1, "recipients": ["oncall@hospital.test"], "timeout_s": 2},
    }
    path = tmp_path / "isletops.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def isletops(config: Path, *args: str):
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


@pytest.mark.parametrize(
    ("thresholds", "code", "word"),
    [({}, 0, "OK"), ({"warning_percent": 0.0}, 1, "WARNING"), ({"warning_percent": 0.0, "critical_percent": 0.0}, 2,
                                                                "CRITICAL")],
)  # fmt: skip
def test_probe_exit_code_is_the_worst_status(tmp_path: Path, thresholds, code: int, word: str) -> None:
    config = write_config(tmp_path, **thresholds)
    result = isletops(config, "probe")
    assert result.exit_code == code, result.output
    first, line = [line for line in result.output.splitlines() if not line.startswith(("mail:", "isletops:"))]
    summary, perfdata = first.split(" | ")
    assert summary.startswith(f"ISLETNET {word} - disk: ")
    number = r"\d+(\.\d+)?"
    used = rf"'disk_used [^']+'={number}%;{number};{number};0;100"
    assert re.fullmatch(rf"{used} 'disk_free [^']+'=\d+B;;;0;\d+", perfdata), perfdata
    assert line.startswith(f"{word:<8} disk       ")
    saved = json.loads((tmp_path / "instances" / "h5cli" / "state" / "probes" / "disk.json").read_text())
    assert saved["status"] == word


def test_probe_json_and_unknown_exit_code(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = isletops(config, "probe", "--only", "disk,gpu", "--json")
    document = json.loads(result.output.split("\nisletops:")[0])
    assert [r["name"] for r in document["results"]] == ["disk", "gpu"]
    gpu = document["results"][1]
    assert gpu["status"] == "UNKNOWN" and "no GPU to check" in gpu["message"]  # no NVIDIA driver on this host
    assert result.exit_code == 3 and document["status"] == "UNKNOWN"


def test_alert_mail_waits_in_outbox_and_alerts_shows_it(tmp_path: Path) -> None:
    config = write_config(tmp_path, critical_percent=0.0)
    result = isletops(config, "probe")
    assert result.exit_code == 2
    assert "mail: CRITICAL h5cli#1 (trigger)" in result.output
    assert "isletops: warning: Cannot reach SMTP server 127.0.0.1:1" in result.output
    shown = isletops(config, "alerts")
    assert shown.exit_code == 0
    assert "CRITICAL h5cli#1 open since" in shown.output and "firing disk" in shown.output
    assert "1 alert mail(s) wait in" in shown.output
    quiet = isletops(config, "probe", "-q")
    assert quiet.exit_code == 2 and "CRITICAL" not in quiet.output.replace("Cannot", "")


def test_the_first_line_has_the_worst_state_not_the_first_probes(tmp_path: Path) -> None:
    config = write_config(tmp_path, warning_percent=0.0, critical_percent=0.0)
    result = isletops(config, "probe", "--only", "gpu,disk", "--no-alert")  # gpu: UNKNOWN here (no driver)
    lines = result.output.splitlines()
    assert result.exit_code == 2
    assert lines[0].startswith("ISLETNET CRITICAL - 2 of 2 probes not OK: disk CRITICAL: ")
    assert lines[1].startswith("UNKNOWN  gpu ") and lines[2].startswith("CRITICAL disk ")


def test_bad_probe_name_is_unknown_on_one_line(tmp_path: Path) -> None:
    result = isletops(write_config(tmp_path), "probe", "--only", "disk,banana")
    assert result.exit_code == 3
    assert result.output.strip().splitlines() == [
        "ISLETNET UNKNOWN - 'banana' is not a probe. Probes: containers, http, e2e, disk, gpu, tls, pruner."
    ]


def test_bad_probe_setting_is_unknown_on_one_line(tmp_path: Path) -> None:
    result = isletops(write_config(tmp_path, warnign_percent=50), "probe")
    assert result.exit_code == 3
    assert result.output.startswith(
        "ISLETNET UNKNOWN - monitoring.probes.disk has unknown setting(s): warnign_percent."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--config", "{tmp}/missing.yml", "probe"], "Config file {tmp}/missing.yml does not exist."),
        (["--config", "{tmp}/broken.yml", "probe"], "Config file {tmp}/broken.yml is not valid YAML at line 3."),
        (["--config", "{tmp}/isletops.yml", "-i", "No_Such", "probe"], "'No_Such' is not a valid instance name."),
        (["--config", "{tmp}/isletops.yml", "probe", "--colour"], "No such option '--colour'."),
        (["--config", "{tmp}/isletops.yml", "probe", "--only"], "Option '--only' requires an argument."),
    ],
)
def test_probe_usage_and_config_errors_are_unknown_on_stdout(tmp_path: Path, args: list[str], message: str) -> None:
    write_config(tmp_path)
    (tmp_path / "broken.yml").write_text("instances:\n  x: [unclosed\n")
    argv = [arg.format(tmp=tmp_path) for arg in args]
    result = CliRunner().invoke(main, argv, catch_exceptions=False)
    assert result.exit_code == 3, result.output
    assert result.stdout.startswith(f"ISLETNET UNKNOWN - {message.format(tmp=tmp_path)}")
    assert len(result.stdout.splitlines()) == 1 and result.stderr == ""


def test_other_commands_keep_their_exit_code_for_config_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "missing.yml"), "alerts"])
    assert result.exit_code == 2 and result.output.startswith("isletops: error: Config file ")


def test_silence_list_unsilence(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = isletops(config, "silence", "e2e", "--for", "2h", "--reason", "model retraining")
    assert done.exit_code == 0 and done.output.startswith("Silenced e2e until ")
    planned = isletops(config, "silence", "all", "--for", "3h", "--start", "2099-01-01T22:00Z", "--reason", "disk swap")
    assert planned.exit_code == 0
    listed = isletops(config, "silence", "--list")
    lines = listed.output.strip().splitlines()
    assert len(lines) == 2 and "e2e" in lines[0] and "model retraining" in lines[0]
    assert "2099-01-01 22:00 UTC → 2099-01-02 01:00 UTC (planned)" in lines[1]
    assert isletops(config, "unsilence", "e2e").output.startswith("Ended silence ")
    assert len(isletops(config, "silence", "--list").output.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["silence", "e2e", "--for", "soon", "--reason", "x"], "'soon' is not a duration."),
        (["silence", "e2e", "--reason", "x"], "Say how long to silence. Pass --for, e.g. --for 2h."),
        (["silence", "banana", "--for", "1h", "--reason", "x"], "'banana' is not a probe."),
        (["silence", "e2e", "--for", "1h"], "A silence needs a reason."),
        (["silence", "e2e", "--for", "1h", "--reason", "x", "--start", "tomorrow"], "'tomorrow' is not a time."),
        (["unsilence", "disk"], "No silence matches 'disk'."),
    ],
)
def test_silence_errors_are_one_line_and_keep_existing_silences(tmp_path: Path, args, message) -> None:
    config = write_config(tmp_path)
    isletops(config, "silence", "http", "--for", "1h", "--reason", "nginx work")
    result = isletops(config, *args)
    assert result.exit_code == 2
    assert result.output.startswith(f"isletops: error: {message}") and len(result.output.strip().splitlines()) == 1
    assert "nginx work" in isletops(config, "silence", "--list").output


def test_install_cron_is_idempotent_and_keeps_other_lines(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=ops@hospital.test\n0 3 * * * /usr/local/bin/backup\n")
    first = isletops(config, "monitor", "install-cron", "--crontab-file", str(crontab))
    assert first.exit_code == 0 and first.output.startswith("Installed in ")
    text = crontab.read_text()
    assert text.startswith("MAILTO=ops@hospital.test\n0 3 * * * /usr/local/bin/backup\n*/5 * * * * ")
    assert f"--config {config.resolve()} --instance h5cli probe --quiet # isletops-probe:h5cli" in text
    second = isletops(config, "monitor", "install-cron", "--crontab-file", str(crontab))
    assert second.output.startswith("Already installed in ") and crontab.read_text() == text
    changed = isletops(config, "monitor", "install-cron", "--crontab-file", str(crontab), "--schedule", "*/2 * * * *")
    assert changed.output.startswith("Installed in ")
    lines = crontab.read_text().splitlines()
    assert len(lines) == 3 and lines[2].startswith("*/2 * * * * ") and lines[:2] == text.splitlines()[:2]
    dry = isletops(config, "monitor", "install-cron", "--crontab-file", str(crontab), "--schedule", "@hourly",
                   "--dry-run")  # fmt: skip
    assert dry.output.startswith("Would write to ") and crontab.read_text().splitlines()[2].startswith("*/2 ")
    bad = isletops(config, "monitor", "install-cron", "--crontab-file", str(crontab), "--schedule", "every 5 min")
    assert bad.exit_code == 2 and "is not a cron schedule" in bad.output
    assert crontab.read_text().splitlines() == lines


def test_every_command_help_has_an_example() -> None:
    for args in (["probe"], ["silence"], ["unsilence"], ["alerts"], ["monitor"], ["monitor", "install-cron"],
                 ["monitor", "send-outbox"]):  # fmt: skip
        result = CliRunner().invoke(main, [*args, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, args
