"""`python -m services.shepherd`: decide how many workers to run and run them.

One worker: it runs in this process. Several GPUs (NVML count, or the CUDA_VISIBLE_DEVICES list
the container was given): one worker process per GPU, pinned with CUDA_VISIBLE_DEVICES, fed by
its dynamic batcher. No GPU: one worker process per core, capped by a CPU quota (the analysis is CPU-bound Python, so
processes, not threads, use the cores), each told to use cores/workers threads for BLAS, OpenMP,
onnxruntime and torch so that the workers do not oversubscribe the cores. `WORKERS=N` overrides
the count; `SHEPHERD_PIPELINE=serial` keeps the one worker of before. Workers are restarted when
they die and stopped with SIGTERM (each drains its jobs). The supervisor's heartbeat file is fresh
only while every worker's is.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from services.islets.models import MODEL_THREADS_ENV
from services.shepherd.config import ShepherdConfig
from services.shepherd.gpus import visible_gpu_ids
from services.shepherd.healthcheck import serve_health
from services.shepherd.heartbeat import heartbeat_age, write_heartbeat
from services.shepherd.worker import configure_logging, run_worker

log = logging.getLogger("services.shepherd")

_MAX_RESTART_DELAY_S = 60.0


@dataclass
class Child:
    index: int
    gpu: str | None
    heartbeat_file: str
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float = 0.0
    started_at: float = field(default_factory=time.monotonic)


# Thread-count variables of the numeric libraries a model may use, set per worker process.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", MODEL_THREADS_ENV)


def cpu_count(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """Cores this process may use: the affinity mask, lowered by the container's CPU quota when
    it has one (cgroup v2 `cpu.max`, e.g. "200000 100000" = 2 cores; Docker `--cpus`, a
    Kubernetes CPU limit), rounded up."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cores = max(1, os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or one that cannot be read: the mask counts
        pass
    return cores


def plan_workers(config: ShepherdConfig, cores: int | None = None) -> list[str | None]:
    """GPU id per worker (None: CPU). One per GPU; without a GPU one per core (`serial`: one).
    `WORKERS` overrides the count; GPUs are shared round-robin when there are more workers."""
    gpus = [] if config.device == "cpu" else visible_gpu_ids()
    if config.device == "gpu" and not gpus:
        log.warning("SHEPHERD_DEVICE=gpu but no GPU is visible: running on CPU")
    if config.workers:
        count = config.workers
    elif gpus:
        count = len(gpus)
    else:
        count = (cores or cpu_count()) if config.overlap else 1
    return [gpus[index % len(gpus)] if gpus else None for index in range(count)]


def thread_settings(config: ShepherdConfig, workers: int, cores: int | None = None) -> dict[str, str]:
    """The thread-count variables for each worker process: `MODEL_THREADS`, else the cores
    shared out between the workers (at least 1). Values already in the environment win."""
    threads = config.model_threads or max(1, (cores or cpu_count()) // max(1, workers))
    return {name: str(threads) for name in THREAD_VARIABLES}


def gpu_postprocess_processes(config: ShepherdConfig, gpus: int, cores: int | None = None) -> int:
    """Measuring processes per GPU worker: the cores shared out between the GPU workers, less the
    one the worker itself uses (decoding, the batcher, writes); `POSTPROCESS_PROCESSES` wins."""
    if config.postprocess_processes or not config.overlap:
        return config.postprocess_processes
    return max(1, (cores or cpu_count()) // max(1, gpus) - 1)


def pixel_share(config: ShepherdConfig, workers: int) -> int:
    """Each worker's share of the container's pixel budget (budget.PixelBudget)."""
    return max(1, config.pixel_budget // max(1, workers))


class Supervisor:
    def __init__(self, config: ShepherdConfig, gpus: list[str | None]) -> None:
        self.config = config
        self.threads = thread_settings(config, len(gpus))
        self.children = [Child(index, gpu, f"{config.heartbeat_file}.{index}") for index, gpu in enumerate(gpus)]
        self._stop = threading.Event()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        for child in self.children:
            self._start(child)
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    code = child.process.returncode
                    delay = min(_MAX_RESTART_DELAY_S, 2.0 ** min(child.restarts, 6))
                    log.error(
                        "worker %d (GPU %s) exited with %s; restarting in %.0fs", child.index, child.gpu, code, delay
                    )
                    child.process = None
                    child.restarts += 1
                    child.restart_at = now + delay
                if child.process is None and now >= child.restart_at:
                    self._start(child)
            self._beat()
        return self._stop_children()

    def _start(self, child: Child) -> None:
        env = {**self.threads, **os.environ}
        env["SHEPHERD_HEARTBEAT_FILE"] = child.heartbeat_file
        env["WORKER_ID"] = f"{self.config.worker_id}-w{child.index}"
        env.pop("WORKERS", None)
        env["SHEPHERD_PIXEL_SHARE"] = str(pixel_share(self.config, len(self.children)))
        if child.gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = child.gpu
            gpus = sum(other.gpu is not None for other in self.children)
            env["POSTPROCESS_PROCESSES"] = str(gpu_postprocess_processes(self.config, gpus))
        child.process = subprocess.Popen([sys.executable, "-m", "services.shepherd.worker"], env=env)
        child.started_at = time.monotonic()
        log.info("worker %d started (pid %d, %s)", child.index, child.process.pid,
                 f"GPU {child.gpu}" if child.gpu is not None else "CPU")  # fmt: skip

    def _beat(self) -> None:
        now = time.monotonic()
        fresh = []
        for child in self.children:
            age = heartbeat_age(child.heartbeat_file)
            starting = now - child.started_at < self.config.heartbeat_max_age_s
            fresh.append(child.process is not None and ((age is not None and age < self.config.heartbeat_max_age_s)
                                                        or starting))  # fmt: skip
        if all(fresh):
            write_heartbeat(self.config.heartbeat_file, {"pid": os.getpid(), "workers": len(self.children),
                                                         "state": "supervising"})  # fmt: skip

    def _stop_children(self) -> int:
        log.info("stopping %d workers (each drains up to %.0fs)", len(self.children), self.config.drain_s)
        running = [child.process for child in self.children if child.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.drain_s + 10
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error(
                    "worker pid %d did not stop in time; killing it (its jobs return after the lease)", process.pid
                )
                process.kill()
                process.wait()
        return 0


def main() -> int:
    configure_logging()
    config = ShepherdConfig.from_env()
    serve_health(config)
    gpus = plan_workers(config)
    if len(gpus) == 1:
        if gpus[0] is not None:
            # Before any CUDA library initialises in this process.
            os.environ["CUDA_VISIBLE_DEVICES"] = gpus[0]
            config = replace(config, postprocess_processes=gpu_postprocess_processes(config, 1))
        for name, value in thread_settings(config, 1).items():
            os.environ.setdefault(name, value)  # read when a model loads (BLAS was loaded already)
        log.info("shepherd: 1 worker on %s (%s pipeline)", f"GPU {gpus[0]}" if gpus[0] is not None else "CPU",
                 config.pipeline)  # fmt: skip
        return run_worker(config)
    log.info("shepherd: %d workers on %s (%s pipeline, %s threads each)", len(gpus),
             ", ".join(f"GPU {g}" if g is not None else "CPU" for g in gpus), config.pipeline,
             thread_settings(config, len(gpus))[MODEL_THREADS_ENV])  # fmt: skip
    return Supervisor(config, gpus).run()
