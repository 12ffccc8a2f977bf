"""The shepherd's settings, read once from the environment.

| variable | default | meaning |
|---|---|---|
| `LEASE_SECONDS` | 60 | job lease; heartbeats every lease/3 |
| `DRAIN_SECONDS` | 30 | on SIGTERM, time to finish running jobs before their leases are released |
| `POLL_SECONDS` | 1 | pause between claims when the queue is empty |
| `SHEPHERD_PIPELINE` | overlap | `overlap`: the stages overlap (worker.py); `serial`: as before issue 19 |
| `WORKERS` | per GPU, else per core | worker processes, each pinned to one GPU (`serial`: 1 on CPU) |
| `SHEPHERD_DEVICE` | auto | `cpu` skips GPU discovery; `gpu`/`auto` count GPUs with NVML |
| `SHEPHERD_CONCURRENCY` | 2 | jobs one worker runs at once (their images share model batches) |
| `POSTPROCESS_THREADS` | 2 | CPU threads for postprocessing per worker |
| `POSTPROCESS_PROCESSES` | 0; GPU: cores/GPUs − 1 | processes per worker that measure and draw; 0: threads |
| `STORAGE_THREADS` | 4 | threads per worker for S3 reads ahead and concurrent result writes (`overlap`) |
| `MODEL_THREADS` | cores / workers | threads a CPU model (BLAS, onnxruntime, torch) may use in each worker process |
| `MAX_BATCH_SIZE`, `MAX_BATCH_WAIT_S` | 4, 0.05 | dynamic batching of the model stage |
| `MAX_IMAGE_PIXELS` | 200000000 | decompression-bomb limit |
| `SHEPHERD_PIXEL_BUDGET` | 100000000 | pixels in flight in the container, shared by its workers (budget.py) |
| `SHEPHERD_OVERSIZED_LOCK` | /tmp/isletnet-shepherd-oversized.lock | one oversized image at a time |
| `SHEPHERD_HEARTBEAT_FILE` | /tmp/shepherd.heartbeat | touched while the worker loop is healthy |
| `SHEPHERD_HEARTBEAT_MAX_AGE` | 60 | the healthcheck fails when the file is older |
| `SHEPHERD_STALL_SECONDS` | 900 | a job stage hung this long: health fails, its lease expires, another worker retries |
| `SHEPHERD_HEALTH_PORT` | 8001 | `GET /health` (200/503 from the heartbeat); 0 turns it off |
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

# ConfigError is re-exported: callers catch it from here.
from services.common.settings import ConfigError, read_number

__all__ = ["PIPELINES", "ConfigError", "ShepherdConfig"]

PIPELINES = ("overlap", "serial")


@dataclass(frozen=True)
class ShepherdConfig:
    lease_s: float = 60.0
    drain_s: float = 30.0
    poll_s: float = 1.0
    workers: int | None = None
    device: str = "auto"
    pipeline: str = "overlap"
    concurrency: int = 2
    postprocess_threads: int = 2
    postprocess_processes: int = 0
    storage_threads: int = 4
    model_threads: int | None = None
    max_batch_size: int = 4
    max_batch_wait_s: float = 0.05
    max_image_pixels: int = 200_000_000
    pixel_budget: int = 100_000_000
    # This worker's share of `pixel_budget` (the supervisor sets SHEPHERD_PIXEL_SHARE for each
    # worker it starts); None: the whole budget (a worker run on its own).
    pixel_share: int | None = None
    # A lock only, in the container's own /tmp (no other user shares it).
    oversized_lock_file: str = "/tmp/isletnet-shepherd-oversized.lock"  # nosec B108
    # A timestamp only, in the container's own /tmp (no other user shares it).
    heartbeat_file: str = "/tmp/shepherd.heartbeat"  # nosec B108
    heartbeat_max_age_s: float = 60.0
    stall_s: float = 900.0
    health_port: int = 8001
    worker_id: str = ""

    @property
    def heartbeat_interval_s(self) -> float:
        return self.lease_s / 3

    @property
    def worker_pixel_limit(self) -> int:
        """Pixels this worker may hold in flight before it waits (budget.PixelBudget)."""
        return self.pixel_share or self.pixel_budget

    @property
    def overlap(self) -> bool:
        """True for the overlapped pipeline, False for the serial one kept for comparison."""
        return self.pipeline == "overlap"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShepherdConfig:
        env = os.environ if env is None else env
        device = (env.get("SHEPHERD_DEVICE") or "auto").strip().lower()
        if device not in ("auto", "cpu", "gpu"):
            raise ConfigError(f"SHEPHERD_DEVICE={device!r} is unknown; use auto, cpu or gpu.")
        pipeline = (env.get("SHEPHERD_PIPELINE") or "overlap").strip().lower()
        if pipeline not in PIPELINES:
            raise ConfigError(f"SHEPHERD_PIPELINE={pipeline!r} is unknown; use {' or '.join(PIPELINES)}.")
        workers = env.get("WORKERS", "").strip()
        model_threads = env.get("MODEL_THREADS", "").strip()
        pixel_share = env.get("SHEPHERD_PIXEL_SHARE", "").strip()
        return cls(
            lease_s=read_number(env, "LEASE_SECONDS", cls.lease_s, 1),
            drain_s=read_number(env, "DRAIN_SECONDS", cls.drain_s, 0),
            poll_s=read_number(env, "POLL_SECONDS", cls.poll_s, 0.01),
            workers=int(read_number(env, "WORKERS", 1, 1)) if workers else None,
            device=device,
            pipeline=pipeline,
            concurrency=int(read_number(env, "SHEPHERD_CONCURRENCY", cls.concurrency, 1)),
            postprocess_threads=int(read_number(env, "POSTPROCESS_THREADS", cls.postprocess_threads, 1)),
            postprocess_processes=int(read_number(env, "POSTPROCESS_PROCESSES", cls.postprocess_processes, 0)),
            storage_threads=int(read_number(env, "STORAGE_THREADS", cls.storage_threads, 1)),
            model_threads=int(read_number(env, "MODEL_THREADS", 1, 1)) if model_threads else None,
            max_batch_size=int(read_number(env, "MAX_BATCH_SIZE", cls.max_batch_size, 1)),
            max_batch_wait_s=read_number(env, "MAX_BATCH_WAIT_S", cls.max_batch_wait_s, 0),
            max_image_pixels=int(read_number(env, "MAX_IMAGE_PIXELS", cls.max_image_pixels, 1)),
            pixel_budget=int(read_number(env, "SHEPHERD_PIXEL_BUDGET", cls.pixel_budget, 1)),
            pixel_share=int(read_number(env, "SHEPHERD_PIXEL_SHARE", 1, 1)) if pixel_share else None,
            oversized_lock_file=env.get("SHEPHERD_OVERSIZED_LOCK") or cls.oversized_lock_file,
            heartbeat_file=env.get("SHEPHERD_HEARTBEAT_FILE") or cls.heartbeat_file,
            heartbeat_max_age_s=read_number(env, "SHEPHERD_HEARTBEAT_MAX_AGE", cls.heartbeat_max_age_s, 1),
            stall_s=read_number(env, "SHEPHERD_STALL_SECONDS", cls.stall_s, 1),
            health_port=int(read_number(env, "SHEPHERD_HEALTH_PORT", cls.health_port, 0)),
            worker_id=env.get("WORKER_ID") or f"{socket.gethostname()}-{os.getpid()}",
        )
