"""The status page for people: plain HTML + CSS served by the monitor daemon at `/`.

No JavaScript, no build step: a `<meta http-equiv="refresh">` reloads it, every value goes
through jinja2's autoescaping, and a Content-Security-Policy forbids scripts outright. It shows
every service and probe (state, value, since when), the open incident, what self-healing did,
the last deploys, the disk forecast and an inline-SVG chart of the e2e latency of the last day.

`record()` keeps what the page needs beyond the latest results in `state/status_page.json`:
since when each probe and service is in its state, and the e2e latency series (24 h). The
runner calls it whenever results are saved, so cron passes and the daemon both feed it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import jinja2

from isletops.config import InstanceConfig, SiteConfig
from monitors import healing, notify, ops_adapter
from monitors.result import ProbeResult
from monitors.state import locked, read_json, write_json_atomic

SERIES_S = 24 * 3600
SERIES_MAX = 2000
REFRESH_S = 30
DEPLOYS_SHOWN = 8
EVENTS_SHOWN = 8
CHART_W, CHART_H, CHART_PAD = 600, 140, 28


def state_path(instance: InstanceConfig) -> Path:
    return instance.state_dir / "status_page.json"


def _service_word(container: dict[str, Any]) -> str:
    health = container.get("health")
    return f"{container.get('state')}" + (f", {health}" if health else "")


def fold(page: dict[str, Any], results: list[ProbeResult], now: float) -> dict[str, Any]:
    """Pure: fold results into the page state (since-when per probe and service, e2e series)."""
    page = {"probes": {}, "services": {}, "e2e": [], **page}
    for result in results:
        entry = page["probes"].get(result.name)
        if not entry or entry.get("status") != result.status.name:
            page["probes"][result.name] = {"status": result.status.name, "since": result.checked_at or now}
        if result.name == "containers":
            for container in result.details.get("containers", []):
                word, service = _service_word(container), str(container.get("service"))
                known = page["services"].get(service)
                if not known or known.get("state") != word:
                    page["services"][service] = {"state": word, "since": result.checked_at or now}
        if result.name == "e2e" and isinstance(result.value, int | float):
            page["e2e"].append([result.checked_at or now, float(result.value), result.status.name])
    page["e2e"] = [point for point in page["e2e"] if now - point[0] <= SERIES_S][-SERIES_MAX:]
    return page


def record(instance: InstanceConfig, results: list[ProbeResult], now: float) -> None:
    path = state_path(instance)
    with locked(path):
        write_json_atomic(path, fold(read_json(path, {}) or {}, results, now))


# -- rendering ------------------------------------------------------------------------------------


def when(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return dt.datetime.fromtimestamp(float(timestamp), dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(timestamp: float | None, now: float) -> str:
    if not timestamp:
        return ""
    seconds = max(0, int(now - float(timestamp)))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 172800:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d"


def value_text(value: Any, unit: str) -> str:
    return notify._value(value, unit)  # the mails' way of writing a measured value


def chart(series: list[list[Any]], now: float) -> dict[str, Any]:
    """Coordinates for the inline SVG: x is the last 24 h, y 0..max seconds."""
    if not series:
        return {"points": "", "dots": [], "max": 0, "count": 0}
    top = max(point[1] for point in series) * 1.1 or 1.0
    width, height = CHART_W - 2 * CHART_PAD, CHART_H - 2 * CHART_PAD

    def xy(point: list[Any]) -> tuple[float, float]:
        x = CHART_PAD + width * (1 - min(SERIES_S, max(0.0, now - point[0])) / SERIES_S)
        y = CHART_PAD + height * (1 - point[1] / top)
        return round(x, 1), round(y, 1)

    coordinates = [xy(point) for point in series]
    dots = [{"x": x, "y": y, "bad": point[2] != "OK", "title": f"{when(point[0])}: {point[1]:.1f} s {point[2]}"}
            for (x, y), point in zip(coordinates, series, strict=True)]  # fmt: skip
    return {
        "points": " ".join(f"{x},{y}" for x, y in coordinates),
        "dots": dots,
        "max": round(top, 1),
        "count": len(series),
        "last": series[-1][1],
    }


def _disk_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not result:
        return []
    rows = []
    for fs in (result.get("details") or {}).get("filesystems", []):
        full_in = fs.get("full_in_s")
        forecast = "not filling" if full_in is None else f"full in {ago(0.0, float(full_in)) or '0 s'}"
        rows.append({"label": fs.get("label"), "path": fs.get("path"), "percent": fs.get("percent"),
                     "free_gib": round((fs.get("available") or 0) / 2**30, 1), "forecast": forecast,
                     "status": fs.get("status", "OK")})  # fmt: skip
    return rows


def build_view(config: SiteConfig, instance: InstanceConfig, document: dict[str, Any], now: float) -> dict[str, Any]:
    """Everything the template shows, from the daemon's /status document and the state files."""
    page = read_json(state_path(instance), {}) or {}
    probes = []
    for name, entry in document.get("probes", {}).items():
        since = (page.get("probes", {}).get(name) or {}).get("since")
        unit = (entry.get("details") or {}).get("unit", "")
        probes.append({"name": name, "status": entry.get("status", "PENDING"),
                       "value": value_text(entry.get("value"), unit),
                       "message": entry.get("message", ""), "since": when(since), "for": ago(since, now),
                       "checked": ago(entry.get("checked_at"), now), "firing": entry.get("firing")})  # fmt: skip
    containers = ((document.get("probes", {}).get("containers") or {}).get("details") or {}).get("containers", [])
    services = []
    for container in containers:
        known = page.get("services", {}).get(str(container.get("service"))) or {}
        since = known.get("since")
        ready = container.get("state") == "running" and container.get("health") in (None, "healthy")
        services.append({"name": container.get("service"), "state": _service_word(container), "ok": ready,
                         "restarts": container.get("restart_count", 0), "started": container.get("started_at") or "—",
                         "since": when(since), "for": ago(since, now)})  # fmt: skip
    alerts = read_json(instance.state_dir / "alerts.json", {}) or {}
    incident = alerts.get("open")
    deploys = list(reversed(ops_adapter.deploy_history(instance)))[:DEPLOYS_SHOWN]
    events = healing.load_state(healing.state_path(instance.state_dir)).get("events", [])[-EVENTS_SHOWN:]
    lock = ops_adapter.lock_status(instance)
    holder = (lock.details.describe() if lock.details else lock.problem) if lock.held else ""
    return {
        "instance": instance.name,
        "overall": document.get("status", "UNKNOWN"),
        "generated": when(now),
        "refresh_s": REFRESH_S,
        "probes": probes,
        "services": services,
        "incident": incident and {
            "name": incident.get("name"), "severity": incident.get("severity"),
            "opened": when(incident.get("opened_at")),
            "for": ago(incident.get("opened_at"), now), "firing": ", ".join(incident.get("firing", [])),
        },  # fmt: skip
        "deploys": [{"time": d.time, "command": d.command, "moved": f"{d.from_tag or 'nothing'} → {d.to_tag}",
                     "result": d.result, "user": d.user, "message": d.message} for d in deploys],  # fmt: skip
        "events": [{"when": when(e.get("at")), "text": e.get("text", ""), "kind": e.get("kind", "")}
                   for e in reversed(events)],  # fmt: skip
        "disk": _disk_rows(document.get("probes", {}).get("disk")),
        "chart": chart(page.get("e2e", []), now),
        "chart_size": {"w": CHART_W, "h": CHART_H, "pad": CHART_PAD},
        "silences": document.get("silences", []),
        "outbox": document.get("outbox_pending", 0),
        "heartbeat": document.get("heartbeat", ""),
        "lock": holder + (" (stale: its process is gone)" if lock.stale else ""),
    }


TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)  # fmt: skip


STYLESHEET = (TEMPLATES / "status.css").read_bytes()


def render(config: SiteConfig, instance: InstanceConfig, document: dict[str, Any], now: float) -> str:
    return _ENVIRONMENT.get_template("status.html.j2").render(**build_view(config, instance, document, now))
