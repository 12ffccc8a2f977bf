"""A burst of simultaneous uploads, as when a technician uploads a whole sample at once (issue 19):
N single-image jobs of 3-Mpx DTZ images (2048×1536, `services.islets.make_dtz_image`) posted at
the same moment with the probe account's token, then waited for. It prints jobs/s, p50/p95/max
upload-to-result, one job alone, where the shepherd's time went per stage (wall and CPU, from
the `job <id> stages {...}` lines each finished job logs) and the host's load, for the serial
pipeline of before (`SHEPHERD_PIPELINE=serial`) and the overlapped one, and their ratio.

By default it starts a real stack on loopback, as bench/upload_memory.py does: PostgreSQL,
SeaweedFS, the backend under gunicorn as in its image (2 workers × 4 threads) and, per pipeline,
a real shepherd (`python -m services.shepherd`, CPU, its default worker count). Uploads go to the
backend's port (the stack's edge proxy is not started here).

    PYTHONPATH=$PWD .venv/bin/python bench/burst.py [--jobs 30] [--pipelines serial overlap] [--rounds 2]
    PYTHONPATH=$PWD .venv/bin/python bench/burst.py --url http://127.0.0.1:8080 --token $TOKEN
        # an instance that runs already, through its public port: one run, whatever its shepherd's
        # pipeline is (no stage figures: its log is the container's)

The host is shared while measuring: the 1-minute load average at the start and the end of each
burst and the share of the host's CPU that was busy during it are printed beside the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests
from PIL import Image

from services.islets import make_dtz_image

REPOSITORY = Path(__file__).resolve().parents[1]
STAGES = ("queue_wait", "fetch", "decode", "model", "postprocess", "overlay", "storage_writes", "finish")
_STAGE_LINE = re.compile(r"job ([0-9a-f]{32}) stages (\{.*\})\s*$")


def make_images(count: int, width: int, height: int) -> list[bytes]:
    """`count` different DTZ images as PNG (compress level 6, as a camera's software writes)."""
    blobs = []
    diameters = (70, 110, 160, 230, 90, 130, 180, 260, 75, 120)
    for seed in range(count):
        rgb, _truth = make_dtz_image(
            seed=seed, size=(height, width), diameters_um=diameters[: 6 + seed % 5], touching_pairs=2, clusters=(3,),
            uneven_illumination=0.3,
        )  # fmt: skip
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="PNG", compress_level=6)
        blobs.append(buffer.getvalue())
    return blobs


_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its descendants, the live ones and those already reaped
    (a PostgreSQL backend per connection exits; the postmaster's cutime counts it)."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15]) * _TICK_S  # utime stime cutime cstime
            for task in Path(f"/proc/{current}/task").iterdir():
                stack += [int(child) for child in (task / "children").read_text().split()]
        except (OSError, IndexError, ValueError):  # it exited meanwhile
            continue
    return total


class HostCpu:
    """CPU seconds of the whole host (/proc/stat) and of each of our process trees between
    start() and the reading: what the stack used, and what everything else on the host did."""

    def __init__(self, trees: dict[str, int] | None = None) -> None:
        self.trees = trees or {}

    @staticmethod
    def _host() -> tuple[float, float]:
        fields = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return (sum(fields) - idle) * _TICK_S, sum(fields) * _TICK_S

    def _ours(self) -> dict[str, float]:
        ours = {name: tree_cpu_s(pid) for name, pid in self.trees.items()}
        ours["bench client"] = time.process_time()  # this process alone: the stack is its children
        return ours

    def start(self) -> None:
        self.begin, self.begin_ours = self._host(), self._ours()

    def busy(self) -> float:
        busy, total = self._host()
        return (busy - self.begin[0]) / max(1e-9, total - self.begin[1])

    def used(self) -> dict[str, float]:
        """CPU seconds since start(): per process tree, and "host" for the whole machine."""
        now = self._ours()
        used = {name: now[name] - self.begin_ours.get(name, 0.0) for name in now}
        used["host"] = self._host()[0] - self.begin[0]
        return used


@dataclass
class Burst:
    label: str
    jobs: int
    accepted_s: float  # the last upload's 201, from the common start
    wall_s: float  # the last job done, from the common start
    latencies: list[float]  # upload start to result, per job
    single_s: float | None  # one job alone, upload to result
    failed: int
    load_start: float
    load_end: float
    host_busy: float
    job_ids: list[str] = field(default_factory=list)
    cpu_used: dict[str, float] = field(default_factory=dict)  # CPU seconds per process tree, and "host"
    workers: int | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)  # per job mean: wall_s, cpu_s

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.wall_s


def _quantile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def _finished_at(job: dict) -> float:
    return datetime.fromisoformat(job["finished_at"]).timestamp()


class Client:
    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"}

    def upload(self, png: bytes, name: str) -> str:
        response = requests.post(
            f"{self.url}/api/jobs", files=[("images", (name, png, "image/png"))], data={"pixel_size_um": "0.843"},
            headers=self.headers, timeout=300,
        )  # fmt: skip
        if response.status_code != 201:
            raise RuntimeError(f"upload refused: HTTP {response.status_code}: {response.text.strip()[:300]}")
        return str(response.json()["id"])

    def wait_done(self, ids: list[str], timeout_s: float) -> dict[str, dict]:
        """The jobs once every one is done or failed (the list endpoint, twice a second)."""
        pending, finished = set(ids), {}
        deadline = time.monotonic() + timeout_s
        while pending and time.monotonic() < deadline:
            response = requests.get(f"{self.url}/api/jobs", params={"limit": 500}, headers=self.headers, timeout=60)
            response.raise_for_status()
            for job in response.json()["jobs"]:
                if job["id"] in pending and job["state"] in ("done", "failed"):
                    pending.discard(job["id"])
                    finished[job["id"]] = job
            if pending:
                time.sleep(0.5)
        if pending:
            raise RuntimeError(f"{len(pending)} of {len(ids)} jobs not finished after {timeout_s:.0f} s")
        return finished

    def one_job(self, png: bytes, timeout_s: float = 120) -> float:
        started = time.time()
        job_id = self.upload(png, "alone.png")
        return _finished_at(self.wait_done([job_id], timeout_s)[job_id]) - started


def run_burst(
    client: Client, label: str, blobs: list[bytes], jobs: int, timeout_s: float, trees: dict[str, int] | None = None
) -> Burst:
    """One job alone (after a warm-up job), then `jobs` uploads at the same moment; `trees` are
    the stack's processes whose CPU time is counted."""
    client.one_job(blobs[0])  # warm-up: models loaded, connections open
    single = client.one_job(blobs[1 % len(blobs)])
    load_start = os.getloadavg()[0]
    cpu = HostCpu(trees)
    barrier = threading.Barrier(jobs + 1)
    ids: list[str | None] = [None] * jobs
    starts: list[float] = [0.0] * jobs
    accepted: list[float] = [0.0] * jobs
    errors: list[str] = []

    def upload(index: int) -> None:
        barrier.wait()
        starts[index] = time.time()
        try:
            ids[index] = client.upload(blobs[index % len(blobs)], f"burst-{index}.png")
        except (requests.RequestException, RuntimeError) as error:
            errors.append(str(error))
        accepted[index] = time.time()

    threads = [threading.Thread(target=upload, args=(index,)) for index in range(jobs)]
    for thread in threads:
        thread.start()
    cpu.start()
    began = time.time()
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} uploads failed, first: {errors[0]}")
    job_ids = [job_id for job_id in ids if job_id]
    finished = client.wait_done(job_ids, timeout_s)
    done_at = {job_id: _finished_at(job) for job_id, job in finished.items()}
    return Burst(
        label=label, jobs=jobs, accepted_s=max(accepted) - began, wall_s=max(done_at.values()) - began,
        latencies=[done_at[job_id] - start for job_id, start in zip(job_ids, starts, strict=True)],
        single_s=single, failed=sum(job["state"] == "failed" for job in finished.values()),
        load_start=load_start, load_end=os.getloadavg()[0], host_busy=cpu.busy(), job_ids=job_ids,
        cpu_used=cpu.used() if trees else {},
    )  # fmt: skip


def stage_means(log_text: str, job_ids: set[str] | None = None) -> dict[str, dict[str, float]]:
    """Mean wall and CPU seconds per job and stage, from the shepherd's `stages` log lines."""
    documents = []
    for line in log_text.splitlines():
        found = _STAGE_LINE.search(line)
        if found and (job_ids is None or found.group(1) in job_ids):
            documents.append(json.loads(found.group(2))["stages"])
    if not documents:
        return {}
    return {
        stage: {kind: statistics.mean(doc.get(stage, {}).get(kind, 0.0) for doc in documents)
                for kind in ("wall_s", "cpu_s")}
        for stage in STAGES
    }  # fmt: skip


class Stack:
    """PostgreSQL, SeaweedFS and the backend (gunicorn, as in its image) on loopback."""

    def __init__(self) -> None:
        from tests.fixtures.servers import free_port, start_postgres, start_seaweedfs

        self.token = secrets.token_hex(20)
        self.postgres, self.seaweed = start_postgres(), start_seaweedfs()
        self.env = {
            **os.environ, "PYTHONPATH": str(REPOSITORY), "DATABASE_URL": self.postgres.url(),
            "S3_ENDPOINT_URL": self.seaweed.endpoint_url, "S3_ACCESS_KEY": self.seaweed.access_key,
            "S3_SECRET_KEY": self.seaweed.secret_key, "S3_BUCKET": f"burst-{uuid.uuid4().hex[:8]}",
            "ISLETNET_PROBE_TOKEN": self.token,
        }  # fmt: skip
        self.folder = Path(tempfile.mkdtemp(prefix="bench-burst-"))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with open(self.folder / "backend.log", "wb") as log:
            self.backend = subprocess.Popen(
                [str(Path(sys.executable).parent / "gunicorn"), "--preload", "--bind", f"127.0.0.1:{port}",
                 "--workers", "2", "--threads", "4", "--timeout", "300", "services.backend.app:create_app()"],
                env=self.env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/api/health", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the backend did not answer; see {self.folder / 'backend.log'}")

    def trees(self, shepherd: subprocess.Popen[bytes]) -> dict[str, int]:
        """The stack's processes, by role, whose CPU time the bench counts."""
        postmaster = int((self.postgres.root / "data" / "postmaster.pid").read_text().split()[0])
        return {"shepherd": shepherd.pid, "backend": self.backend.pid, "storage": self.seaweed.process.pid,
                "queue": postmaster}  # fmt: skip

    def start_shepherd(self, pipeline: str) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = self.folder / f"shepherd-{pipeline}.log"
        env = {**self.env, "SHEPHERD_DEVICE": "cpu", "SHEPHERD_PIPELINE": pipeline, "SHEPHERD_HEALTH_PORT": "0",
               "SHEPHERD_HEARTBEAT_FILE": str(self.folder / f"heartbeat-{pipeline}")}  # fmt: skip
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "services.shepherd"], env=env, cwd=REPOSITORY, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return process, log_path

    @staticmethod
    def stop_shepherd(process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        os.killpg(self.backend.pid, signal.SIGTERM)
        self.backend.wait(timeout=30)
        self.seaweed.stop()
        self.postgres.stop()


def workers_started(log_text: str) -> int | None:
    found = re.search(r"shepherd: (\d+) workers? on", log_text)
    return int(found.group(1)) if found else None


def print_report(bursts: list[Burst]) -> None:
    print()
    print(
        "| pipeline | workers | jobs | all accepted | all done | jobs/s | p50 | p95 | max | one job alone "
        "| failed | load start → end | host CPU busy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for b in bursts:
        single = f"{b.single_s:.2f} s" if b.single_s is not None else "-"
        print(f"| {b.label} | {b.workers or '?'} | {b.jobs} | {b.accepted_s:.1f} s | {b.wall_s:.1f} s "
              f"| {b.jobs_per_s:.2f} | {_quantile(b.latencies, 0.5):.1f} s | {_quantile(b.latencies, 0.95):.1f} s "
              f"| {max(b.latencies):.1f} s | {single} | {b.failed} | {b.load_start:.1f} → {b.load_end:.1f} "
              f"| {b.host_busy:.0%} |")  # fmt: skip
    with_stages = [b for b in bursts if b.stages]
    if with_stages:
        print()
        print("Per job, mean seconds per stage, wall / CPU (the shepherd's stage log):")
        print()
        print("| stage | " + " | ".join(b.label for b in with_stages) + " |")
        print("|---|" + "---|" * len(with_stages))
        for stage in STAGES:
            cells = [f"{b.stages[stage]['wall_s']:.3f} / {b.stages[stage]['cpu_s']:.3f}" for b in with_stages]
            print(f"| {stage} | " + " | ".join(cells) + " |")
        totals = [sum(b.stages[s]["cpu_s"] for s in STAGES) for b in with_stages]
        print("| CPU, all stages | " + " | ".join(f"{total:.3f}" for total in totals) + " |")
    with_cpu = [b for b in bursts if b.cpu_used]
    if with_cpu:
        print()
        print("CPU seconds used during the burst (uploads to the last result), by process tree:")
        print()
        names = [name for name in with_cpu[0].cpu_used if name != "host"]
        print(
            "| pipeline | " + " | ".join(names) + " | the stack, all | whole host | everything else on the host "
            "| the stack's CPU / cores |"
        )
        print("|---|" + "---|" * (len(names) + 4))
        cores = os.cpu_count() or 1
        for b in with_cpu:
            ours = sum(b.cpu_used[name] for name in names if name != "bench client")
            print(f"| {b.label} | " + " | ".join(f"{b.cpu_used[name]:.1f}" for name in names)
                  + f" | {ours:.1f} | {b.cpu_used['host']:.1f} | {max(0.0, b.cpu_used['host'] - ours):.1f} "
                  f"| {ours / cores:.1f} s |")  # fmt: skip
        print()
        print("The last column is the least time the burst could take on an idle host with these cores if the")
        print("stack's CPU work were spread perfectly over them (an estimate, not a measurement).")
    pairs = len({b.label for b in bursts}) == 2 and len(bursts) % 2 == 0
    for before, after in zip(bursts[::2], bursts[1::2], strict=True) if pairs else ():
        print()
        print(
            f"ratio {after.label} / {before.label}: jobs/s ×{after.jobs_per_s / before.jobs_per_s:.2f}, "
            f"all done in ×{after.wall_s / before.wall_s:.2f} of the time, "
            f"p95 ×{_quantile(after.latencies, 0.95) / _quantile(before.latencies, 0.95):.2f}"
            + (f", one job ×{after.single_s / before.single_s:.2f}" if after.single_s and before.single_s else "")
            + (f", the stack's CPU ×{_stack_cpu(after) / _stack_cpu(before):.2f}" if _stack_cpu(before) else "")
        )


def _stack_cpu(burst: Burst) -> float:
    return sum(seconds for name, seconds in burst.cpu_used.items() if name not in ("host", "bench client"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=30, help="simultaneous uploads (default 30)")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--height", type=int, default=1536)
    parser.add_argument("--distinct", type=int, default=6, help="different images, used in turn (default 6)")
    parser.add_argument("--pipelines", nargs="+", default=["serial", "overlap"], choices=["serial", "overlap"])
    parser.add_argument("--rounds", type=int, default=1, help="run the pipelines in turn this many times")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a burst")
    parser.add_argument("--url", help="a running instance's public URL (then --token; no stack is started)")
    parser.add_argument("--token", help="a token that may submit jobs (the probe account's)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.distinct < 2 or args.rounds < 1:
        parser.error("--jobs and --rounds must be at least 1, --distinct at least 2.")
    if args.url and not args.token:
        parser.error("--url needs --token (the instance's probe token, or another account's API token).")
    print(
        f"host: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.jobs} uploads of "
        f"{args.width}×{args.height} ({args.width * args.height / 1e6:.1f} Mpx)",
        flush=True,
    )
    blobs = make_images(args.distinct, args.width, args.height)
    print(f"{len(blobs)} images, {statistics.mean(map(len, blobs)) / 1e6:.1f} MB PNG each", flush=True)
    if args.url:
        print_report([run_burst(Client(args.url, args.token), "as deployed", blobs, args.jobs, args.timeout)])
        return 0
    stack = Stack()
    bursts = []
    try:
        client = Client(stack.url, stack.token)
        for pipeline in args.pipelines * args.rounds:
            shepherd, log_path = stack.start_shepherd(pipeline)
            try:
                burst = run_burst(client, pipeline, blobs, args.jobs, args.timeout, stack.trees(shepherd))
            finally:
                Stack.stop_shepherd(shepherd)
            text = log_path.read_text(errors="replace")
            burst.workers = workers_started(text) or 1
            burst.stages = stage_means(text, set(burst.job_ids))
            bursts.append(burst)
            print(f"{pipeline}: {burst.jobs} jobs in {burst.wall_s:.1f} s (load {burst.load_end:.1f})", flush=True)
    finally:
        stack.close()
    print_report(bursts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
