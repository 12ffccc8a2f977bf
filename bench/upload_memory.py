"""Peak memory of the backend for one upload of a 14000×14000 PNG (196 Mpx, under the default
200 Mpx limit; a few hundred KB on the wire), and of the shepherd that analyses it. Target
(issue 13): backend ≤ 300 MiB.

It starts a real PostgreSQL and SeaweedFS on loopback (as the tests do) and the backend under
gunicorn (one sync worker, as in the image), uploads the PNG with the probe account's token and
reads the worker's VmHWM (peak resident set) from /proc, reset just before the upload so the figure
is the request's own peak. Then a real shepherd (`python -m services.shepherd`, CPU) takes the
job; its peak is the largest resident set of its process tree (getrusage of the waited children),
printed with the job's outcome. `--no-shepherd` skips that part.

    PYTHONPATH=$PWD .venv/bin/python bench/upload_memory.py [--side 14000]
"""

from __future__ import annotations

import argparse
import os
import resource
import secrets
import signal
import struct
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import requests

from tests.fixtures.servers import free_port, start_postgres, start_seaweedfs

REPOSITORY = Path(os.environ.get("ISLETNET_REPOSITORY") or Path(__file__).resolve().parents[1])


def colour_png(side: int) -> bytes:
    """A complete, valid RGB PNG of side×side pixels (a pink DTZ-like gradient), compressed row by
    row so this script never holds the pixels either."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    parts = []
    for row in range(side):
        shade = 120 + row * 100 // side
        parts.append(compressor.compress(b"\x00" + bytes((230, shade, shade)) * side))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for process {pid}")


def worker_pid(master: int) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.2)
    raise RuntimeError("gunicorn started no worker")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=14000)
    parser.add_argument("--no-shepherd", action="store_true", help="measure the backend only")
    arguments = parser.parse_args()
    png = colour_png(arguments.side)
    postgres, seaweed = start_postgres(), start_seaweedfs()
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "DATABASE_URL": postgres.url(),
           "S3_ENDPOINT_URL": seaweed.endpoint_url, "S3_ACCESS_KEY": seaweed.access_key,
           "S3_SECRET_KEY": seaweed.secret_key, "S3_BUCKET": f"bench-{uuid.uuid4().hex[:8]}",
           "ISLETNET_PROBE_TOKEN": secrets.token_hex(20)}
    auth = {"Authorization": f"Bearer {env['ISLETNET_PROBE_TOKEN']}"}
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="bench-gunicorn-", suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--timeout", "120", "services.backend.app:create_app()"],
        env=env, cwd=REPOSITORY, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        worker = worker_pid(process.pid)
        idle = status_mib(worker, "VmRSS")
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # the peak (VmHWM) restarts from here
        started = time.perf_counter()
        response = requests.post(f"{url}/api/jobs", files=[("images", ("huge.png", png, "image/png"))],
                                 headers=auth, timeout=300)
        elapsed = time.perf_counter() - started
        peak = status_mib(worker, "VmHWM")
        after = status_mib(worker, "VmRSS")
        print(f"upload: {arguments.side}×{arguments.side} PNG ({arguments.side ** 2 / 1e6:.0f} Mpx), "
              f"{len(png) / 1024:.0f} KiB -> HTTP {response.status_code} in {elapsed:.2f} s: {response.text.strip()}")
        print(f"backend worker RSS: idle {idle:.0f} MiB, peak during the upload {peak:.0f} MiB, "
              f"after {after:.0f} MiB (target: peak <= 300 MiB)")
        if not arguments.no_shepherd and response.status_code == 201:
            measure_shepherd(env, url, auth, response.json()["id"])
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        seaweed.stop()
        postgres.stop()
        Path(log.name).unlink(missing_ok=True)


def measure_shepherd(env: dict[str, str], url: str, auth: dict[str, str], job_id: str, timeout_s: float = 900) -> None:
    """Run a real shepherd until the job is done or failed; print its tree's peak resident set."""
    workdir = tempfile.mkdtemp(prefix="bench-shepherd-")
    shepherd_env = {**env, "SHEPHERD_DEVICE": "cpu", "SHEPHERD_HEARTBEAT_FILE": f"{workdir}/heartbeat",
                    "SHEPHERD_HEALTH_PORT": "0", "ISLETNET_STATE_DIR": workdir}
    started = time.perf_counter()
    shepherd = subprocess.Popen([sys.executable, "-m", "services.shepherd"], env=shepherd_env, cwd=REPOSITORY,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    state, job = "?", {}
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and shepherd.poll() is None:
            job = requests.get(f"{url}/api/jobs/{job_id}", headers=auth, timeout=30).json()
            state = job.get("state", "?")
            if state in ("done", "failed"):
                break
            time.sleep(1.0)
    finally:
        os.killpg(shepherd.pid, signal.SIGTERM)
        shepherd.wait(timeout=120)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB -> MiB, largest waited child
    detail = f" ({job.get('error')})" if state == "failed" and job.get("error") else ""
    print(f"shepherd: job {state}{detail} after {time.perf_counter() - started:.1f} s; "
          f"peak RSS of its processes {peak:.0f} MiB")


if __name__ == "__main__":
    main()
