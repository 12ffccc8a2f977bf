"""The monitor daemon's /metrics read by Prometheus' own tools (Debian's `prometheus` package):
`promtool check metrics` lints a real exposition, a real Prometheus scrapes the daemon and answers
queries through its HTTP API, and the shipped alerting rules and Grafana dashboard name only
metrics that the exposition has."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors.daemon import MonitorDaemon
from monitors.metrics import metric_names
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "monitoring" / "prometheus" / "isletops-rules.yml"
RULES_TEST = REPO_ROOT / "monitoring" / "prometheus" / "isletops-rules.test.yml"
DASHBOARD = REPO_ROOT / "monitoring" / "grafana" / "isletops-dashboard.json"
INSTANCE = "h5prom"
METRIC_NAME = re.compile(r"\bisletops_[a-z0-9_]+")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed (apt-get install prometheus; scripts/bootstrap.sh does it)")
    return found


@dataclass
class Monitor:
    daemon: MonitorDaemon
    folder: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    def exposition(self) -> str:
        response = requests.get(f"{self.url}/metrics", timeout=5)
        assert response.status_code == 200
        return response.text


@pytest.fixture(scope="module")
def monitor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitor]:
    """A real daemon whose disk probe (on a temporary folder) is CRITICAL, run once at least."""
    folder = tmp_path_factory.mktemp("prom")
    off = {name: {"enabled": False} for name in ("containers", "http", "e2e", "gpu", "tls", "pruner")}
    disk = {"paths": [str(folder)], "docker_root": str(folder / "d"), "critical_percent": 0.0, "interval_s": 1}
    config = SiteConfig(source=None, monitoring=MonitoringConfig(probes={**off, "disk": disk}))
    daemon = MonitorDaemon(config, InstanceConfig(INSTANCE, folder / INSTANCE), port=0)
    daemon.start()
    try:
        deadline, metrics = time.monotonic() + 20, f"http://127.0.0.1:{daemon.port}/metrics"
        while "isletops_disk_used_ratio{" not in requests.get(metrics, timeout=5).text:
            assert time.monotonic() < deadline, "the daemon's disk probe did not run"
            time.sleep(0.2)
        yield Monitor(daemon, folder)
    finally:
        daemon.stop()


def test_promtool_finds_nothing_to_lint_in_the_exposition(monitor: Monitor) -> None:
    text = monitor.exposition()
    checked = subprocess.run([_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked.stdout + checked.stderr
    assert not re.search(r'[{,](instance|job)="', text)  # the scrape's own labels stay the scrape's
    declared = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert declared == metric_names()
    assert f'isletops_probe_state{{isletnet_instance="{INSTANCE}",probe="disk"}} 2.0' in text


def test_a_real_prometheus_scrapes_the_daemon_and_answers_queries(monitor: Monitor, tmp_path: Path) -> None:
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": "isletops", "static_configs": [{"targets": [f"127.0.0.1:{monitor.daemon.port}"]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    command = [_tool("prometheus"), f"--config.file={tmp_path / 'prometheus.yml'}",
               f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        series = _wait_for(lambda: _query(api, f'isletops_disk_used_ratio{{isletnet_instance="{INSTANCE}"}}'), server)
        (sample,) = series
        assert sample["metric"] == {
            "__name__": "isletops_disk_used_ratio",
            "isletnet_instance": INSTANCE,
            "path": str(monitor.folder),
            "instance": f"127.0.0.1:{monitor.daemon.port}",
            "job": "isletops",
        }
        assert 0 < float(sample["value"][1]) < 1
        (state,) = _query(api, 'isletops_probe_state{probe="disk"}')
        assert state["value"][1] == "2"
        alerts = _wait_for(lambda: [a for a in _get(api, "alerts")["alerts"] if a["labels"]["alertname"] ==
                                    "IsletopsProbeCritical"], server)  # fmt: skip
        assert alerts[0]["state"] == "pending" and alerts[0]["labels"]["probe"] == "disk"  # `for: 5m` not over yet
        rules = [rule for group in _get(api, "rules")["groups"] for rule in group["rules"]]
        assert rules and {rule["health"] for rule in rules} == {"ok"}, [r for r in rules if r["health"] != "ok"]
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def _get(api: str, path: str, **params: str) -> dict:
    reply = requests.get(f"{api}/{path}", params=params, timeout=5).json()
    assert reply["status"] == "success", reply
    return reply["data"]


def _query(api: str, expression: str) -> list[dict]:
    try:
        return _get(api, "query", query=expression)["result"]
    except requests.ConnectionError:
        return []


def _wait_for(found, server: subprocess.Popen, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert server.poll() is None, "prometheus exited"
        result = found()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"nothing after {timeout_s} s")


def test_the_example_rules_are_valid_and_fire_as_their_tests_say() -> None:
    promtool = _tool("promtool")
    checked = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run([promtool, "test", "rules", str(RULES_TEST)], capture_output=True, text=True)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rules_and_dashboard_name_only_metrics_of_the_exposition(monitor: Monitor) -> None:
    exposed = set(re.findall(r"^# TYPE (\S+) ", monitor.exposition(), re.M))
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    queries += [variable["definition"] for variable in dashboard["templating"]["list"] if "definition" in variable]
    rules = [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]
    for source, expressions in (("dashboard", queries), ("rules", rules)):
        named = {name for expression in expressions for name in METRIC_NAME.findall(expression)}
        assert named and named <= exposed, f"{source} names metrics the exposition lacks: {named - exposed}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
