"""`isletops probe --only <probe>` as the check command of a real Nagios 4 core (Debian's
`nagios4-core`), with its own configuration and state in the test's folder: the state, plugin
output and perfdata that the core records in status.dat are what the plugin conventions promise.

The core runs as the current user (`nagios_user`), so the set-up works for root and non-root.
The situations need no Docker stack: the disk probe on the test's folder, and broken invocations.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

NAGIOS = shutil.which("nagios4") or "/usr/sbin/nagios4"
REPO_ROOT = Path(__file__).resolve().parents[2]
ISLETOPS = Path(sys.executable).parent / "isletops"
CHECK_INTERVAL_S = 5
WAIT_S = 45

OBJECTS = """
define timeperiod {{
    timeperiod_name always
    alias always
    sunday 00:00-24:00
    monday 00:00-24:00
    tuesday 00:00-24:00
    wednesday 00:00-24:00
    thursday 00:00-24:00
    friday 00:00-24:00
    saturday 00:00-24:00
}}
define command {{
    command_name isletops-probe
    command_line /usr/bin/env PYTHONPATH={pythonpath} {isletops} $ARG1$
}}
define contact {{
    contact_name nobody
    host_notifications_enabled 0
    service_notifications_enabled 0
    host_notification_period always
    service_notification_period always
    host_notification_options n
    service_notification_options n
    host_notification_commands isletops-probe
    service_notification_commands isletops-probe
}}
define host {{
    host_name isletnet
    address 127.0.0.1
    max_check_attempts 1
    check_period always
    active_checks_enabled 0
    contacts nobody
}}
"""

SERVICE = """
define service {{
    host_name isletnet
    service_description {name}
    check_command isletops-probe!{arguments}
    max_check_attempts 1
    check_interval {interval}
    retry_interval {interval}
    check_period always
    notification_period always
    contacts nobody
}}
"""


def _main_config(folder: Path) -> str:
    settings = {
        "log_file": folder / "nagios.log",
        "cfg_file": folder / "objects.cfg",
        "status_file": folder / "status.dat",
        "status_update_interval": 1,
        "object_cache_file": folder / "objects.cache",
        "precached_object_file": folder / "objects.precache",
        "temp_file": folder / "nagios.tmp",
        "temp_path": folder,
        "lock_file": folder / "nagios.lock",
        "state_retention_file": folder / "retention.dat",
        "retain_state_information": 0,
        "command_file": folder / "nagios.cmd",
        "check_external_commands": 0,
        "query_socket": folder / "nagios.qh",
        "check_result_path": folder / "checkresults",
        "nagios_user": pwd.getpwuid(os.getuid()).pw_name,
        "nagios_group": grp.getgrgid(os.getgid()).gr_name,
        "interval_length": 1,  # check_interval counts seconds
        "service_inter_check_delay_method": "n",  # first checks at once, not spread over minutes
        "max_service_check_spread": 1,
        "check_result_reaper_frequency": 1,
        "execute_host_checks": 0,
        "enable_notifications": 0,
        "enable_flap_detection": 0,
        "use_syslog": 0,
        "log_rotation_method": "n",
        "illegal_macro_output_chars": '`~$&|"<>',
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _site_config(folder: Path, **disk: object) -> Path:
    off = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    config = {
        "instances_root": str(folder / "instances"),
        "default_instance": "nagios",
        "instances": {"nagios": {}},
        "monitoring": {"probes": {**off, "disk": {"paths": [str(folder)], "docker_root": str(folder), **disk}}},
    }
    path = folder / f"isletops-{len(list(folder.glob('isletops-*.yml')))}.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_status(path: Path) -> dict[str, dict[str, str]]:
    """status.dat's `servicestatus` blocks, by service description."""
    services = {}
    for block in re.findall(r"servicestatus \{\n(.*?)\n\t\}", path.read_text() if path.exists() else "", re.S):
        fields = dict(line.strip().split("=", 1) for line in block.splitlines() if "=" in line)
        services[fields["service_description"]] = fields
    return services


@pytest.fixture
def nagios_core(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], dict[str, dict[str, str]]]]:
    if not Path(NAGIOS).exists():
        pytest.skip("Nagios 4 is not installed (apt-get install nagios4-core; scripts/bootstrap.sh does it)")
    folder = tmp_path / "nagios"
    (folder / "checkresults").mkdir(parents=True)
    started: list[subprocess.Popen] = []

    def start(services: dict[str, str]) -> dict[str, dict[str, str]]:
        """Run the core with one service per `name: isletops arguments`; the status once each was checked."""
        objects = OBJECTS.format(pythonpath=f"{REPO_ROOT / 'ops'}:{REPO_ROOT}", isletops=ISLETOPS)
        for name, arguments in services.items():
            assert ";" not in arguments and "!" not in arguments  # Nagios' comment and argument marks
            objects += SERVICE.format(name=name, arguments=arguments, interval=CHECK_INTERVAL_S)
        (folder / "objects.cfg").write_text(objects)
        (folder / "nagios.cfg").write_text(_main_config(folder))
        verified = subprocess.run([NAGIOS, "-v", str(folder / "nagios.cfg")], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout[-2000:]
        started.append(subprocess.Popen([NAGIOS, str(folder / "nagios.cfg")], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True))  # fmt: skip
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            status = read_status(folder / "status.dat")
            if len(status) == len(services) and all(s["has_been_checked"] == "1" for s in status.values()):
                return status
            assert started[-1].poll() is None, (folder / "nagios.log").read_text()[-2000:]
            time.sleep(0.5)
        raise AssertionError(f"Nagios did not check every service in {WAIT_S} s: {read_status(folder / 'status.dat')}")

    yield start
    for process in started:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)


def test_nagios_reads_state_output_and_perfdata_of_one_check_per_probe(nagios_core, tmp_path: Path) -> None:
    healthy = _site_config(tmp_path)
    full = _site_config(tmp_path, warning_percent=0.0, critical_percent=0.0)
    started = time.monotonic()
    status = nagios_core({
        "disk-ok": f"--config {healthy} probe --only disk",
        "disk-full": f"--config {full} probe --only disk",
        "bogus-probe": f"--config {healthy} probe --only bogus",
        "missing-config": f"--config {tmp_path / 'missing.yml'} probe --only disk",
    })  # fmt: skip
    assert time.monotonic() - started < WAIT_S

    ok = status["disk-ok"]
    assert ok["current_state"] == "0" and ok["state_type"] == "1"  # OK, HARD
    folder = re.escape(str(tmp_path))
    assert re.fullmatch(rf"ISLETNET OK - disk: fullest path {folder} at \d+%, not filling", ok["plugin_output"])
    assert re.fullmatch(rf"'disk_used {folder}'=[\d.]+%;80;90;0;100 'disk_free {folder}'=\d+B;;;0;\d+",
                        ok["performance_data"]), ok["performance_data"]  # fmt: skip
    assert ok["long_plugin_output"].startswith("OK       disk ")

    full_disk = status["disk-full"]
    assert full_disk["current_state"] == "2"
    assert full_disk["plugin_output"].startswith(f"ISLETNET CRITICAL - disk: path {tmp_path} ")
    assert ";0;0;0;100" in full_disk["performance_data"]

    bogus = status["bogus-probe"]
    assert bogus["current_state"] == "3"
    assert bogus["plugin_output"] == "ISLETNET UNKNOWN - 'bogus' is not a probe. Probes: " + (
        "containers, http, e2e, disk, gpu, tls, pruner."
    )
    missing = status["missing-config"]
    assert missing["current_state"] == "3"
    assert missing["plugin_output"].startswith(f"ISLETNET UNKNOWN - Config file {tmp_path / 'missing.yml'} does not")
