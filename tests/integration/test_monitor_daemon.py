"""The monitor daemon: APScheduler runs the probes, /status and /metrics answer on 127.0.0.1,
and alerts/mail go through the same path as a cron pass (real SMTP)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors.daemon import MonitorDaemon

pytestmark = pytest.mark.integration


def critical_disk_site(tmp_path: Path, smtp_server) -> SiteConfig:
    """A site whose only probe is a disk probe on `tmp_path` that is CRITICAL at any fill (0 %),
    every half second, alerting after 2 failures, with mail to the test's SMTP server."""
    disabled = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    monitoring = MonitoringConfig(
        failures_to_alert=2,
        probes={**disabled, "disk": {"paths": [str(tmp_path)], "docker_root": str(tmp_path / "d"),
                                     "critical_percent": 0.0, "interval_s": 0.5}},
    )  # fmt: skip
    return SiteConfig(source=None, monitoring=monitoring, mail=smtp_server.mail_config())


def test_status_and_metrics_and_mail(tmp_path: Path, smtp_server) -> None:
    config = critical_disk_site(tmp_path, smtp_server)
    instance = InstanceConfig("h5daemon", tmp_path / "h5daemon")
    daemon = MonitorDaemon(config, instance, port=0)
    daemon.start()
    try:
        assert daemon.enabled == ["disk"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not smtp_server.messages:
            time.sleep(0.2)
        assert smtp_server.messages, "the daemon sent no alert mail"
        assert smtp_server.messages[0]["Subject"].startswith("CRITICAL [isletnet h5daemon#1] disk:")
        status = requests.get(f"http://127.0.0.1:{daemon.port}/status", timeout=5).json()
        assert status["instance"] == "h5daemon" and status["status"] == "CRITICAL"
        assert status["probes"]["disk"]["status"] == "CRITICAL" and status["probes"]["disk"]["firing"] is True
        assert status["incident"]["name"] == "h5daemon#1" and status["outbox_pending"] == 0
        metrics = requests.get(f"http://127.0.0.1:{daemon.port}/metrics", timeout=5)
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = metrics.text
        assert 'isletops_probe_state{isletnet_instance="h5daemon",probe="disk"} 2.0' in text
        assert 'isletops_alert_firing{isletnet_instance="h5daemon",probe="disk"} 1.0' in text
        assert 'isletops_incident_open{isletnet_instance="h5daemon"} 1.0' in text
        assert f'isletops_disk_used_ratio{{isletnet_instance="h5daemon",path="{tmp_path}"}} ' in text
        missing = requests.get(f"http://127.0.0.1:{daemon.port}/other", timeout=5)
        assert missing.status_code == 404
        assert len(smtp_server.messages) == 1  # runs keep coming; no second mail for the same incident
    finally:
        daemon.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{daemon.port}/status", timeout=2)


def test_busy_status_port_is_one_sentence(tmp_path: Path) -> None:
    import socket

    from monitors.daemon import MonitorError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = MonitorDaemon(SiteConfig(source=None), InstanceConfig("h5daemon", tmp_path / "h5daemon"), port=port)
        with pytest.raises(MonitorError, match=f"Cannot serve the status page on 127.0.0.1:{port}"):
            daemon.start()
        assert not daemon.scheduler.running


def test_isletops_monitor_runs_until_sigterm(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    import yaml

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    disabled = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    config = tmp_path / "isletops.yml"
    config.write_text(yaml.safe_dump({
        "instances_root": str(tmp_path / "instances"), "default_instance": "h5cli",
        "monitoring": {"status_port": port, "probes": {**disabled, "disk": {"paths": [str(tmp_path)]}}},
    }))  # fmt: skip
    isletops = str(Path(sys.executable).with_name("isletops"))
    process = subprocess.Popen([isletops, "--config", str(config), "monitor"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline and status is None:
            try:
                status = requests.get(f"http://127.0.0.1:{port}/status", timeout=2).json()
            except requests.ConnectionError:
                time.sleep(0.3)
        assert status is not None and status["instance"] == "h5cli" and list(status["probes"]) == ["disk"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
        assert f"http://127.0.0.1:{port}/status" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
