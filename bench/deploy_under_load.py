"""Do users notice a deploy? Requests to the public port while the release changes under them.

A bounded stream of loopback requests, signed in with the instance's probe token (`GET /`,
`/api/jobs`, `/api/models` and an image-less `POST /api/jobs` that the backend refuses with 400,
on the instance's `http_port`: the edge, then the frontend's nginx, as a browser would) runs
during each operation, and the script prints, side by side, how many failed, for how long the
service was out, and the host's load average:

  0. nothing changes for 30 s          (the noise floor of this host under this load)
  1. `isletops deploy --tag TO`       (the health-gated rollover)
  2. `isletops rollback --to FROM`    (the same path back)
  3. `isletops deploy --tag BROKEN`    (with --broken: a release whose backend runs but never
                                       serves; the time is until it was rolled back by itself)
  4. `compose up -d --force-recreate` (the plain way, for comparison), then wait healthy

Beside each deploy it prints how long the new backend took from its start to the start of its
first passing health check, and its check log (a check that waited for booting workers starts
early and passes late: read the log), and every failed request and every GET slower than 1 s
with its start time.

Usage (an instance already set up, two releases in the registry):

  python bench/deploy_under_load.py --config isletops.yml --instance demo \\
      --registry 127.0.0.1:5000 --from 2026-11-23_01 --to 2026-11-23_02 [--broken 2026-11-23_03] \
      [--rate 40] [--no-baseline] [--json]

`bench/run_on_test_stack.py` makes the instance and the three releases from the test fixtures.

The instance is first brought to FROM (not measured). Only 127.0.0.1 is ever targeted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from urllib.parse import urlparse

import requests

from isletops import deploy, stack
from isletops.config import load_config, read_env_file
from isletops.docker_engine import DockerEngine
from isletops.engines import engine_for
from isletops.engines.base import ServiceState
from isletops.errors import IsletOpsError

# What a browser does while a user works: the page, polling the job list, the model list, and a
# POST to the job endpoint (without an image: the backend answers 400 and stores nothing), so the
# non-idempotent path through both proxies is measured without filling the queue.
REQUESTS = (("GET", "/"), ("GET", "/api/jobs"), ("GET", "/api/models"), ("POST", "/api/jobs"))
STEADY_S = 30.0
SLOW_S = 1.0  # GETs slower than this are listed on stderr with their start time


@dataclass
class LoadReport:
    operation: str
    duration_s: float = 0.0
    total: int = 0
    failed: int = 0
    longest_outage_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    # The host's 1-minute load average when the operation ended: other work on a shared host
    # slows health checks and deploys, so figures are only comparable at a similar load.
    load_average: float = 0.0
    # Latency of the GETs (seconds): a request waiting on a dead address shows here, not in `failed`.
    get_p50_s: float = 0.0
    get_p99_s: float = 0.0
    get_max_s: float = 0.0
    # Seconds from a new backend container's start to its first passing health check (0: none).
    backend_ready_s: float = 0.0
    outcome: str = "ok"


class Load:
    """`workers` threads, each at most `rate / workers` requests per second, until stopped."""

    def __init__(self, base_url: str, rate: float, workers: int = 4, timeout_s: float = 10.0,
                 headers: dict[str, str] | None = None, also_allowed: tuple[str, ...] = ()) -> None:
        """`also_allowed`: addresses besides loopback that may be loaded (a test's own nested
        node on this host's Docker bridge); nothing else is ever targeted."""
        host = urlparse(base_url).hostname
        if host not in ("127.0.0.1", "localhost", *also_allowed):
            raise SystemExit(f"refusing to load {base_url}: only loopback addresses are targeted")
        self.base_url = base_url.rstrip("/")
        self.interval = workers / rate
        self.workers = workers
        self.timeout_s = timeout_s
        self.headers = headers or {}
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, bool, str]] = []  # (time, ok, error kind)
        self.get_latencies: list[float] = []
        self.slow: list[str] = []  # failed requests and GETs over SLOW_S, with their wall-clock start

    def _worker(self, index: int) -> None:
        session = self._session()
        n = index
        while not self.stop.is_set():
            started = time.monotonic()
            method, path = REQUESTS[n % len(REQUESTS)]
            n += 1
            try:
                data = {"priority": "0"} if method == "POST" else None
                response = session.request(method, self.base_url + path, data=data, timeout=self.timeout_s)
                ok, kind = response.status_code < 500, f"HTTP {response.status_code}"
            except requests.RequestException as exc:
                ok, kind = False, type(exc).__name__
                session = self._session()  # a broken keep-alive connection must not poison the rest
            with self.lock:
                self.results.append((started, ok, "" if ok else kind))
                if not ok:
                    at = time.strftime("%H:%M:%S", time.localtime(time.time() - (time.monotonic() - started)))
                    self.slow.append(f"{at} {method} {path} failed: {kind}")
                if method == "GET":
                    latency = time.monotonic() - started
                    self.get_latencies.append(latency)
                    if latency > SLOW_S:
                        at = time.strftime("%H:%M:%S", time.localtime(time.time() - latency))
                        self.slow.append(f"{at} GET {path} {latency:.2f} s ({'ok' if ok else kind})")
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self.headers)
        return session

    def measure(self, name: str, operation: Callable[[], str | None]) -> LoadReport:
        self.results = []
        self.get_latencies = []
        self.slow = []
        self.stop.clear()
        threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(self.workers)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)  # the stream is flowing before the operation starts
        started = time.monotonic()
        outcome = None
        try:
            outcome = operation()
        finally:
            duration = time.monotonic() - started
            time.sleep(1.0)
            self.stop.set()
            for thread in threads:
                thread.join(timeout=self.timeout_s + 1)
        report = LoadReport(name, round(duration, 1), len(self.results), load_average=round(os.getloadavg()[0], 2),
                            outcome=outcome or "ok")
        latencies = sorted(self.get_latencies)
        if latencies:
            report.get_p50_s = round(latencies[len(latencies) // 2], 3)
            report.get_p99_s = round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 3)
            report.get_max_s = round(latencies[-1], 3)
        outage_start = None
        for at, ok, kind in sorted(self.results):
            if not ok:
                report.failed += 1
                report.errors[kind] = report.errors.get(kind, 0) + 1
                outage_start = outage_start if outage_start is not None else at
                report.longest_outage_s = max(report.longest_outage_s, round(at - outage_start, 2))
            else:
                outage_start = None
        return report


def say(line: str) -> None:
    """Deploy progress on stderr with the time, so outages can be matched to steps."""
    print(f"  [{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def seconds_to_first_pass(states: list[ServiceState]) -> float:
    """The newest instance's start to its first passing health check (0.0 if none recorded)."""
    started = [s for s in states if s.started_at is not None]
    if not started:
        return 0.0
    newest = max(started, key=lambda s: s.started_at)
    passed = [c.started_at for c in newest.checks if not c.failed and c.started_at is not None]
    return round((min(passed) - newest.started_at).total_seconds(), 1) if passed else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--instance")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--from", dest="from_tag", required=True)
    parser.add_argument("--to", dest="to_tag", required=True)
    parser.add_argument("--broken", dest="broken_tag", help="a release whose backend never serves")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second in all (bounded)")
    parser.add_argument("--no-baseline", action="store_true", help="skip compose up --force-recreate")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    site = load_config(args.config)
    instance = site.instance(args.instance)
    engine = engine_for(site, instance)

    backend_ready: list[float] = []

    def progress(line: str) -> None:
        say(line)
        if line.startswith("backend") and line.endswith(": healthy"):
            states = engine.service_states(["backend"])
            backend_ready.append(seconds_to_first_pass(states))
            for state in states:
                begun = state.started_at.strftime("%H:%M:%S") if state.started_at else "?"
                say(f"{state.name} started {begun}, checks: " + ", ".join(
                    f"{c.started_at:%H:%M:%S} exit {c.exit_code}" for c in state.checks if c.started_at))

    def run_deploy(tag: str, command: str = "deploy") -> Callable[[], str | None]:
        def operation() -> str | None:
            options = deploy.DeployOptions(tag=tag, registry=args.registry, command=command,
                                           message="bench/deploy_under_load.py")
            try:
                deploy.deploy(instance, engine, options, progress=progress)
            except IsletOpsError as error:
                say(f"failed: {error}")
                return "failed, rolled back" if "rolled back" in str(error) else "failed"
            return None

        return operation

    def measure(name: str, operation: Callable[[], str | None]) -> LoadReport:
        backend_ready.clear()
        report = load.measure(name, operation)
        report.backend_ready_s = backend_ready[0] if backend_ready else 0.0
        for line in load.slow:
            say(f"slow: {line}")
        return report

    def force_recreate() -> None:
        stack.up(site, instance, force_recreate=True, registry=stack.current_registry(instance),
                 engine=DockerEngine())

    print(f"bringing '{instance.name}' to {args.from_tag} (not measured) ...", file=sys.stderr)
    deployed, _notes = deploy.current_deployment(instance, engine)
    if deployed.current != args.from_tag:
        run_deploy(args.from_tag)()
    # Signed in as the instance's probe account (its token is in the instance's 0600 env file), so
    # the API requests reach the job routes as a lab's browser would, not a 401 at the door.
    token = read_env_file(instance.env_file).get("ISLETNET_PROBE_TOKEN", "")
    load = Load(instance.frontend_url, args.rate, headers={"Authorization": f"Bearer {token}"} if token else None)
    reports = [
        measure("nothing (steady state)", lambda: time.sleep(STEADY_S)),
        measure(f"isletops deploy --tag {args.to_tag}", run_deploy(args.to_tag)),
        measure(f"isletops rollback --to {args.from_tag}", run_deploy(args.from_tag, "rollback")),
    ]
    if args.broken_tag:
        reports.append(measure(f"isletops deploy --tag {args.broken_tag} (broken)", run_deploy(args.broken_tag)))
    if not args.no_baseline:
        reports.append(measure("compose up -d --force-recreate", force_recreate))
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=2))
        return 0
    print(f"{'operation':<40} {'duration':>9} {'failed/total':>13} {'longest outage':>15} "
          f"{'GET p50/p99/max':>20} {'load':>5} {'backend ready':>13}  outcome; errors")
    for r in reports:
        errors = ", ".join(f"{k} x{v}" for k, v in sorted(r.errors.items())) or "-"
        counts = f"{r.failed}/{r.total}"
        latency = f"{r.get_p50_s:.2f}/{r.get_p99_s:.2f}/{r.get_max_s:.2f}s"
        print(f"{r.operation:<40} {r.duration_s:>8.1f}s {counts:>13} {r.longest_outage_s:>14.1f}s "
              f"{latency:>20} {r.load_average:>5.2f} {r.backend_ready_s:>12.1f}s  {r.outcome}; {errors}")
    print(f"host: {os.cpu_count()} cores; load = 1-minute load average at the end of each operation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
