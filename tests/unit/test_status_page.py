"""The status page's own logic: since-when bookkeeping, the 24 h e2e series, the chart
coordinates, and escaping of everything shown."""

from __future__ import annotations

from pathlib import Path

from isletops.config import InstanceConfig, SiteConfig
from monitors import status_page
from monitors.result import ProbeResult, Status

NOW = 1_800_000_000.0


def test_since_changes_only_with_the_state() -> None:
    page = status_page.fold({}, [ProbeResult("disk", Status.OK, checked_at=NOW)], NOW)
    page = status_page.fold(page, [ProbeResult("disk", Status.OK, checked_at=NOW + 60)], NOW + 60)
    assert page["probes"]["disk"] == {"status": "OK", "since": NOW}
    page = status_page.fold(page, [ProbeResult("disk", Status.WARNING, checked_at=NOW + 120)], NOW + 120)
    assert page["probes"]["disk"] == {"status": "WARNING", "since": NOW + 120}
    containers = ProbeResult("containers", Status.OK, details={"containers": [
        {"service": "shepherd", "state": "running", "health": "healthy"}]}, checked_at=NOW)  # fmt: skip
    page = status_page.fold(page, [containers], NOW)
    assert page["services"]["shepherd"] == {"state": "running, healthy", "since": NOW}


def test_e2e_series_keeps_one_day() -> None:
    page: dict = {}
    for hours in range(30, -1, -1):
        point = ProbeResult("e2e", Status.OK, 10.0 + hours, checked_at=NOW - hours * 3600)
        page = status_page.fold(page, [point], NOW)
    assert len(page["e2e"]) == 25 and page["e2e"][0][0] == NOW - 24 * 3600
    missing_value = ProbeResult("e2e", Status.CRITICAL, None, checked_at=NOW)
    assert len(status_page.fold(page, [missing_value], NOW)["e2e"]) == 25


def test_chart_coordinates() -> None:
    chart = status_page.chart([[NOW - 86400, 10.0, "OK"], [NOW, 20.0, "CRITICAL"]], NOW)
    pad = status_page.CHART_PAD
    first, last = chart["points"].split()
    assert first.startswith(f"{float(pad)},") and last.startswith(f"{float(status_page.CHART_W - pad)},")
    assert [dot["bad"] for dot in chart["dots"]] == [False, True] and chart["max"] == 22.0
    assert status_page.chart([], NOW)["count"] == 0


def test_everything_shown_is_escaped(tmp_path: Path) -> None:
    instance = InstanceConfig("h5page", tmp_path / "h5page")
    hostile = '<script>alert("x")</script>'
    document = {"status": "WARNING", "probes": {"http": {"name": "http", "status": "WARNING", "value": 1.5,
                "message": hostile, "details": {"unit": "s"}, "checked_at": NOW, "firing": False}},
                "silences": [{"target": "e2e", "reason": hostile}], "outbox_pending": 0,
                "heartbeat": hostile}  # fmt: skip
    html = status_page.render(SiteConfig(source=None), instance, document, NOW)
    assert "<script" not in html and html.count("&lt;script&gt;") == 3
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "default-src 'none'" in html  # no script could run even if one slipped in
    assert "1.5 s" in html and "No deploys recorded." in html and "No e2e results in the last 24 h." in html


def test_ago_and_values() -> None:
    assert status_page.ago(NOW - 30, NOW) == "30 s"
    assert status_page.ago(NOW - 600, NOW) == "10 min"
    assert status_page.ago(NOW - 3 * 3600 - 120, NOW) == "3 h 2 min"
    assert status_page.ago(NOW - 5 * 86400, NOW) == "5 d"
    assert status_page.value_text(None, "s") == "n/a" and status_page.value_text(12345.6, "%") == "12346 %"


def test_a_held_deploy_lock_is_shown(tmp_path: Path) -> None:
    from isletops.lock import InstanceLock, LockDetails

    instance = InstanceConfig("h5page", tmp_path / "h5page")
    document = {"status": "OK", "probes": {}, "silences": [], "outbox_pending": 0, "heartbeat": "sent"}
    assert "Deploy lock held" not in status_page.render(SiteConfig(source=None), instance, document, NOW)
    lock = InstanceLock(instance.state_dir, instance.name)
    lock.acquire(LockDetails.for_this_process("deploy", version="2026-12-04_02", message="<b>release</b>"))
    html = status_page.render(SiteConfig(source=None), instance, document, NOW)
    assert "Deploy lock held</strong> by " in html and "deploy 2026-12-04_02" in html
    assert "&lt;b&gt;release&lt;/b&gt;" in html
