"""The http probe against a real HTTP server on loopback that can be made to misbehave."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from isletops.config import InstanceConfig, MonitoringConfig, SiteConfig
from monitors import probes
from monitors.probes import http
from monitors.result import ProbeContext, Status
from tests.fixtures.loopback_http import LoopbackFake, QuietHandler, serving

pytestmark = pytest.mark.integration


class Site(LoopbackFake):
    """Answers like the frontend: `/`, `/api/health`, the statistics download; behaviour per path."""

    def __init__(self) -> None:
        self.codes = {"/": 200, "/api/health": 200, "/api/statistics/access_statistics.xlsx": 401}
        self.health = {"status": "ok", "storage": "ok", "queue": "ok"}
        self.delay_s = 0.0
        site = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:  # noqa: N802
                time.sleep(site.delay_s)
                code = site.codes.get(self.path, 404)
                body = json.dumps(site.health).encode() if self.path == "/api/health" else b"<html></html>"
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.handler = Handler


@pytest.fixture
def site():
    with serving(Site()) as served:
        yield served


def check(tmp_path: Path, url: str, **options) -> object:
    monitoring = MonitoringConfig(probes={"http": {"base_url": url, **options}})
    config = SiteConfig(source=None, monitoring=monitoring)
    context = ProbeContext(config, InstanceConfig("h5http", tmp_path), probes.options("http", monitoring))
    return http.run(context)


def test_all_answer(tmp_path: Path, site: Site) -> None:
    result = check(tmp_path, site.url)
    assert result.status is Status.OK and result.message.startswith("3 URLs ok, slowest ")
    assert [c["code"] for c in result.details["checks"]] == [200, 200, 401]
    timed = {m.labels["path"]: m for m in result.measurements if m.quantity == "http_response_duration"}
    assert list(timed) == ["/", "/api/health", "/api/statistics/access_statistics.xlsx"]
    assert max(m.value for m in timed.values()) == result.value and timed["/"].crit == 10.0


def test_frontend_error_is_critical(tmp_path: Path, site: Site) -> None:
    site.codes["/"] = 502
    result = check(tmp_path, site.url)
    assert result.status is Status.CRITICAL and result.message == f"{site.url}/ answered 502, expected 200"


def test_health_naming_a_broken_dependency_is_critical(tmp_path: Path, site: Site) -> None:
    site.health = {"status": "degraded", "storage": "down", "queue": "ok"}
    result = check(tmp_path, site.url)
    assert result.status is Status.CRITICAL and "/api/health says" in result.message and "'storage': 'down'" in (
        result.message
    )


def test_statistics_download_failing_is_only_a_warning(tmp_path: Path, site: Site) -> None:
    site.codes["/api/statistics/access_statistics.xlsx"] = 500
    result = check(tmp_path, site.url)
    assert result.status is Status.WARNING and "access_statistics.xlsx answered 500" in result.message


def test_slow_answers_warn_and_timeouts_are_critical(tmp_path: Path, site: Site) -> None:
    site.delay_s = 0.4
    result = check(tmp_path, site.url, slow_s=0.2)
    assert result.status is Status.WARNING and "slow (0.4 s)" in result.message
    result = check(tmp_path, site.url, timeout_s=0.1)
    assert result.status is Status.CRITICAL and "timed out after 0.1 s" in result.message


def test_nothing_listening(tmp_path: Path) -> None:
    result = check(tmp_path, "http://127.0.0.1:1")
    assert result.status is Status.CRITICAL and result.message.startswith(
        "http://127.0.0.1:1/ unreachable (Connection refused)"
    )
