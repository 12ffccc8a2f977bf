"""The status page in headless Chromium: the monitor daemon (real probes, real SMTP) serves `/`
on 127.0.0.1; the page shows probes, the open incident, deploys, self-healing, the disk forecast
and the e2e chart, escapes what it shows and runs no script. Screenshot: artifacts/status_page/."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from isletops.config import InstanceConfig
from isletops.history import History, HistoryEntry
from monitors import healing, status_page
from monitors.daemon import MonitorDaemon
from monitors.result import ProbeResult, Status
from tests.integration.test_monitor_daemon import critical_disk_site

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "artifacts" / "status_page"
CHROMIUM = "/usr/bin/chromium"
HOSTILE = "<script>document.title='owned'</script><img src=x>"


def seed(instance: InstanceConfig, now: float) -> None:
    """A day of e2e results, two deploys (one with a hostile message), a self-healing event."""
    e2e = [ProbeResult("e2e", Status.OK if i % 7 else Status.WARNING, 20.0 + (i % 5) * 3, "ok",
                       {"unit": "s"}, checked_at=now - 86000 + i * 1800) for i in range(48)]  # fmt: skip
    for result in e2e:
        status_page.record(instance, [result], result.checked_at)
    history = History(instance.state_dir, instance.name)
    history.append(HistoryEntry("deploy", "", "2026-12-01_01", "ok", 95.0))
    history.append(HistoryEntry("deploy", "2026-12-01_01", "2026-12-04_02", "rolled_back", 120.0, message=HOSTILE))
    path = healing.state_path(instance.state_dir)
    state = healing.new_state()
    healing.add_event(state, now - 600, "shepherd", "restarted", "restarted shepherd at 03:12, healthy again at 03:13")
    healing.save_state(path, state)


def test_status_page_in_chromium(tmp_path: Path, smtp_server) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    config = critical_disk_site(tmp_path, smtp_server)
    instance = InstanceConfig("h5page", tmp_path / "h5page")
    seed(instance, time.time())
    daemon = MonitorDaemon(config, instance, port=0)
    daemon.start()
    try:
        assert daemon.server.server_address[0] == "127.0.0.1"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not smtp_server.messages:
            time.sleep(0.2)
        url = f"http://127.0.0.1:{daemon.port}/"
        raw = requests.get(url, timeout=5)
        assert raw.headers["Content-Type"] == "text/html; charset=utf-8"
        assert '<meta http-equiv="refresh" content="30">' in raw.text
        assert "<script" not in raw.text and "&lt;script&gt;" in raw.text  # escaped, never markup
        with playwright_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900}, java_script_enabled=False)
                page.goto(url)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "status.png"), full_page=True)
                text = page.inner_text("body")
                title = page.title()
                polyline_points = page.get_attribute("svg polyline", "points") or ""
                circles = page.locator("svg circle").count()
                images = page.locator("img").count()
            finally:
                browser.close()
        assert title == "CRITICAL · IsletNet h5page"
        assert "h5page#1" in text and "firing: disk" in text  # the open incident
        assert "disk" in text and "CRITICAL" in text and "full" in text  # probe row and disk table
        assert "2026-12-01_01 → 2026-12-04_02" in text and "rolled_back" in text  # last deploys, newest first
        assert text.index("2026-12-04_02") < text.index("nothing → 2026-12-01_01")
        assert HOSTILE in text and images == 0  # shown as text, not run or loaded
        assert "restarted shepherd at 03:12, healthy again at 03:13" in text
        assert len(polyline_points.split()) == 48 and circles == 48  # the day of e2e samples
        assert "48 samples" in text
    finally:
        daemon.stop()
