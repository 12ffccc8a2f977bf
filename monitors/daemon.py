"""`isletops monitor`: the long-running monitor. APScheduler runs each probe on its own interval;
a small HTTP server on 127.0.0.1 serves `/status` (JSON) and `/metrics` (Prometheus text).

Each probe run goes through the same steps as a cron pass (save result, update alerts under
their lock, mail through the outbox), so cron and daemon can even run side by side. A
housekeeping job flushes the outbox and pings the heartbeat every minute.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric as PrometheusFamily

from isletops.config import InstanceConfig, SiteConfig
from isletops.errors import IsletOpsError
from monitors import metrics, notify, probes, runner, self_heal, silences, status_page
from monitors.result import ProbeEngine, worst
from monitors.state import read_json

log = logging.getLogger(__name__)
HOUSEKEEPING_S = 60


class MonitorError(IsletOpsError):
    """The monitor daemon cannot start."""


class MonitorDaemon:
    """Scheduler + status server for one instance. `start()` returns; `stop()` ends both."""

    def __init__(
        self, config: SiteConfig, instance: InstanceConfig, port: int | None = None, engine: ProbeEngine | None = None
    ) -> None:
        probes.validate(config.monitoring)
        self.config, self.instance, self.engine = config, instance, engine
        self.port = config.monitoring.status_port if port is None else port
        self.enabled = runner.default_probes(config, instance)
        self.scheduler = BackgroundScheduler(timezone="UTC")
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self.started_at = time.time()
        self.last_heartbeat = "not yet"
        self._probes_ran = threading.Event()  # set by each probe run, cleared by each heartbeat
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    # -- jobs -----------------------------------------------------------------------------

    def run_probe(self, name: str) -> None:
        """One scheduled probe run: result, alerts, mail."""
        results = runner.run_probes(self.config, self.instance, [name], engine=self.engine)
        runner.save_results(self.instance, results)
        self._probes_ran.set()
        healed = self_heal.heal(self.config, self.instance, results)
        notifications = runner.update_alerts(self.config, self.instance, results, set(self.enabled), time.time())
        if notifications or healed:
            report = notify.deliver(notifications, self.instance, self.config.monitoring, self.config.mail)
            if report.error:
                log.warning("%s", report.error)

    def housekeeping(self) -> None:
        """Retry the outbox; ping the heartbeat when probes ran since the last ping and every mail got out."""
        report = notify.flush(self.instance, self.config.mail)
        if report.pending:
            self.last_heartbeat = f"withheld: {report.pending} mail(s) wait in the outbox"
        elif not self._probes_ran.is_set():
            self.last_heartbeat = "withheld: no probe ran since the last heartbeat"
        else:
            self._probes_ran.clear()
            self.last_heartbeat = runner.ping_heartbeat(self.config.monitoring.heartbeat_url)

    # -- status ---------------------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        latest = runner.latest_results(self.instance)
        state = read_json(runner.alerts_path(self.instance), {}) or {}
        jobs = {job.id: job for job in self.scheduler.get_jobs()} if self.scheduler.running else {}
        probe_entries = {}
        for name in self.enabled:
            entry: dict[str, Any] = latest[name].to_dict() if name in latest else {"name": name, "status": "PENDING"}
            job = jobs.get(f"probe:{name}")
            entry["next_run_at"] = job.next_run_time.timestamp() if job and job.next_run_time else None
            entry["firing"] = bool((state.get("probes") or {}).get(name, {}).get("firing"))
            probe_entries[name] = entry
        overall = worst([latest[name].status for name in self.enabled if name in latest])
        return {
            "instance": self.instance.name,
            "generated_at": time.time(),
            "started_at": self.started_at,
            "status": overall.name,
            "probes": probe_entries,
            "incident": state.get("open"),
            "silences": [vars(entry) for entry in silences.list_silences(self.instance.state_dir)],
            "outbox_pending": len(notify.pending(self.instance)),
            "heartbeat": self.last_heartbeat,
        }

    def status_page(self) -> str:
        return status_page.render(self.config, self.instance, self.status_document(), time.time())

    def exposition(self) -> bytes:
        """The Prometheus exposition: probe states and every measurement (monitors/metrics.py)."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[PrometheusFamily]:
        """prometheus_client's collector interface: families built from the latest results."""
        latest = runner.latest_results(self.instance)
        results = [latest[name] for name in self.enabled if name in latest]
        state = read_json(runner.alerts_path(self.instance), {}) or {}
        firing = {name: bool(entry.get("firing")) for name, entry in (state.get("probes") or {}).items()}
        yield from metrics.probe_families(self.instance.name, results, firing)
        yield from metrics.families(self.instance.name, [m for result in results for m in result.measurements])
        yield from metrics.monitor_families(
            self.instance.name,
            incident_open=state.get("open") is not None,
            outbox_messages=len(notify.pending(self.instance)),
            silences_active=len(silences.list_silences(self.instance.state_dir)),
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for name in self.enabled:
            interval = float(probes.options(name, self.config.monitoring)["interval_s"])
            self.scheduler.add_job(
                self.run_probe, "interval", args=[name], id=f"probe:{name}", seconds=interval,
                next_run_time=_now_utc(), max_instances=1, coalesce=True, misfire_grace_time=max(1, int(interval)),
            )  # fmt: skip
        self.scheduler.add_job(
            self.housekeeping, "interval", id="housekeeping", seconds=HOUSEKEEPING_S, next_run_time=_now_utc(),
            max_instances=1, coalesce=True,
        )  # fmt: skip
        try:
            self.server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        except OSError as exc:
            raise MonitorError(
                f"Cannot serve the status page on 127.0.0.1:{self.port} ({exc.strerror}).",
                "Another monitor may run already; stop it, or set monitoring.status_port / pass --port.",
            ) from None
        self.scheduler.start()
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="isletops-status", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self._stopped.set()

    def wait(self) -> None:
        """Block until `stop()` (the CLI calls it from its signal handler)."""
        while not self._stopped.wait(1.0):
            pass


def _now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC)



def _handler(daemon: MonitorDaemon) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            path = self.path.split("?")[0]
            if path == "/":
                self._reply(200, "text/html; charset=utf-8", daemon.status_page().encode())
            elif path == "/status.css":
                self._reply(200, "text/css; charset=utf-8", status_page.STYLESHEET)
            elif path == "/status":
                body = json.dumps(daemon.status_document(), default=str, indent=2).encode()
                self._reply(200, "application/json", body)
            elif path == "/metrics":
                self._reply(200, CONTENT_TYPE_PLAIN_0_0_4, daemon.exposition())
            else:
                served = b'{"error": "Only /, /status.css, /status and /metrics are served."}'
                self._reply(404, "application/json", served)

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("status server: " + format, *args)

    return Handler

