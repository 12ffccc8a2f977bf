"""One shepherd worker: claims jobs from the durable queue and runs each image through
preprocess (CPU) -> model (batched across jobs, GPU when present) -> postprocess (CPU pool),
writing results to deterministic S3 keys, then marks the job done.

The stages overlap (`SHEPHERD_PIPELINE=overlap`, the default): the next image is read from
storage while this one decodes, the model runs on the batcher's thread while the next image
decodes, postprocessing runs in a small pool, an image's four result files are written at once,
and an idle worker is woken by the queue's NOTIFY instead of its next poll. The overlay is drawn
once and encoded twice: a PNG by `islets.encode_png_fast` (Up filter + run-length zlib, about
4× quicker than Pillow's) and the preview JPEG straight from the drawing. `serial` keeps the
behaviour before issue 19 for the burst bench's comparison. Every finished job logs its stage
times (`job <id> stages {...}`: wall and CPU seconds per stage, summed over its images), which
`bench/burst.py` adds up.

Guarantees (docs/architecture.md): a job is never lost (a dead worker's lease expires and the job
is claimed again), never completed twice (completion needs the current lease token), and a
retried job overwrites its outputs instead of duplicating them. Bad input or a failing model
fails that job with a one-sentence error; the worker itself keeps running. On SIGTERM the worker
stops claiming, gives running jobs `DRAIN_SECONDS` to finish, then releases their leases so
another worker takes them at once.

Run alone: `python -m services.shepherd.worker` (the supervisor `python -m services.shepherd`
starts one per GPU).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

import services.islets as islets
from services.common.database import JobDatabase
from services.common.errors import ServiceError, Unavailable
from services.common.jobs import Job
from services.common.layout import JobKeys
from services.common.lease_queue import ClaimedJob, LeaseQueue
from services.common.previews import PREVIEW_MAX_PX, overlay_preview, preview_jpeg
from services.common.storage import ObjectNotFound, ObjectStore
from services.shepherd.budget import Admission, PixelBudget
from services.shepherd.config import ShepherdConfig
from services.shepherd.heartbeat import write_heartbeat

log = logging.getLogger("services.shepherd")

# Pause after the queue or storage could not be reached, growing to this maximum.
_MAX_BACKOFF_S = 30.0

# The stages a job's time is reported in, in pipeline order ("stages" log line, bench/burst.py).
STAGES = ("queue_wait", "fetch", "decode", "model", "postprocess", "overlay", "storage_writes", "finish")

T = TypeVar("T")


class StageTimes:
    """Wall and CPU seconds per stage of one job, added up over its images; thread-safe. CPU is
    the measuring thread's own (`time.thread_time`), so concurrent jobs do not count each other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds: dict[str, list[float]] = {}

    def add(self, stage: str, wall_s: float, cpu_s: float) -> None:
        with self._lock:
            totals = self._seconds.setdefault(stage, [0.0, 0.0])
            totals[0] += wall_s
            totals[1] += cpu_s

    @contextmanager
    def measure(self, stage: str, *, wall: bool = True) -> Iterator[None]:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - started if wall else 0.0, time.thread_time() - cpu)

    def to_dict(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {
                stage: {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}
                for stage, (wall, cpu) in sorted(self._seconds.items(), key=lambda item: _stage_order(item[0]))
            }


def _stage_order(stage: str) -> int:
    return STAGES.index(stage) if stage in STAGES else len(STAGES)


class JobFailure(Exception):
    """The job cannot succeed (bad image, missing input, failing model); the message is the one
    sentence the user sees as the job's error."""


class JobAbandoned(Exception):
    """Stop working on the job now: the lease was lost or the worker is shutting down."""


@dataclass
class ActiveJob:
    claimed: ClaimedJob
    progress: float = 0.0
    stage: str = "starting"
    stage_since: float = field(default_factory=time.monotonic)
    lost: threading.Event = field(default_factory=threading.Event)
    times: StageTimes = field(default_factory=StageTimes)

    def enter(self, stage: str) -> None:
        self.stage = stage
        self.stage_since = time.monotonic()


def _sentence_tail(error: BaseException) -> str:
    """An error's message, lower-cased first letter, for "...: <message>" sentences."""
    text = str(error).strip() or type(error).__name__
    if text[1:2].islower():  # "The file..." -> "the file...", but "CUDA ..." stays
        text = text[:1].lower() + text[1:]
    return text if text.endswith(".") else text + "."


def job_summary(job: Job, summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """The job summary stored in `summary.json` and the job row: the islet library's one summary
    across images (`islets.summarise_images`: counts and IEQ add up, purity and fragmentation are
    area-weighted, 0.0 when there is no tissue) plus the job's identity and a line per image."""
    combined = islets.summarise_images([{"summary": summary} for summary in summaries])
    return {
        **combined,
        "job_id": job.id,
        "pixel_size_um": job.pixel_size_um,
        "model": job.model,
        "images": [
            {
                "index": index,
                "name": job.file_names[index],
                "islet_count": s.get("islet_count"),
                "ieq_ricordi": s.get("ieq_ricordi"),
                "purity": s.get("purity"),
            }
            for index, s in enumerate(summaries)
        ],
    }


def _json_bytes(document: Any) -> bytes:
    # Stable key order: a retried job writes byte-identical files.
    return json.dumps(document, sort_keys=True, indent=1).encode()


class Worker:
    """Claims and processes jobs until asked to stop. Thread-safe; `run()` is the service loop,
    `process_next()` claims and runs one job (tests, tools)."""

    def __init__(
        self,
        config: ShepherdConfig,
        store: ObjectStore,
        queue: LeaseQueue,
        *,
        model_loader: Callable[[str], Any] = islets.get_model,
    ) -> None:
        self.config = config
        self.store = store
        self.queue = queue
        self.worker_id = config.worker_id
        self._model_loader = model_loader
        self._batchers: dict[str, islets.DynamicBatcher] = {}
        self._batchers_lock = threading.Lock()
        # With a process pool (GPU workers), each postprocess thread waits on one process.
        threads = max(config.postprocess_threads, config.postprocess_processes)
        self._postprocess = ThreadPoolExecutor(threads, thread_name_prefix="postprocess")
        # Measuring and drawing in processes, past the GIL: a GPU worker is one process per GPU,
        # and its CPU stages must keep up with the model.
        self._processes = _process_pool(config.postprocess_processes) if config.overlap else None
        self._processes_lock = threading.Lock()
        # Storage reads ahead and result writes (overlap pipeline); I/O-bound, so a few threads.
        self._io = ThreadPoolExecutor(config.storage_threads, thread_name_prefix="storage")
        # Images in flight, in pixels: a worker holds only its share, an oversized image runs alone.
        self._pixels = PixelBudget(config.worker_pixel_limit, config.oversized_lock_file)
        # Bumped whenever the queue announces a claimable job; idle slots wait for it to change.
        self._claimable = threading.Condition()
        self._claimable_count = 0
        self._active: dict[str, ActiveJob] = {}
        self._active_lock = threading.Lock()
        self._stop = threading.Event()  # stop claiming
        self._abandon = threading.Event()  # drain time is over: leave running jobs
        self._lease_keeper: threading.Thread | None = None
        self.device = "unknown"
        self.counts = {"done": 0, "failed": 0, "released": 0, "lost": 0}

    # -- control ----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Graceful stop: no new claims; running jobs get the drain time."""
        if not self._stop.is_set():
            log.info("stop requested: finishing running jobs (up to %.0fs)", self.config.drain_s)
        self._stop.set()
        self._announce()  # idle slots stop waiting for work

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def active_jobs(self) -> list[str]:
        with self._active_lock:
            return list(self._active)

    # -- the service loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or `request_stop`); returns the exit status."""
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self.request_stop())
            signal.signal(signal.SIGINT, lambda *_: self.request_stop())
        self.warm_up()
        slots = [
            threading.Thread(target=self._slot_loop, name=f"slot-{index}", daemon=True)
            for index in range(self.config.concurrency)
        ]
        for slot in slots:
            slot.start()
        if self.config.overlap:
            threading.Thread(target=self._watch_queue, name="queue-watch", daemon=True).start()
        while not self._stop.wait(1.0):
            self._beat(slots)
        deadline = time.monotonic() + self.config.drain_s
        while any(slot.is_alive() for slot in slots) and time.monotonic() < deadline:
            self._beat(slots, state="stopping")
            time.sleep(0.2)
        self._release_unfinished()
        for slot in slots:
            slot.join(timeout=5)
        self.close()
        log.info("worker %s stopped (%s)", self.worker_id, ", ".join(f"{k} {v}" for k, v in self.counts.items()))
        return 0

    def warm_up(self) -> None:
        """Load the default model now, so the first job does not pay for it, and say where it runs."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            model = self._model(islets.DEFAULT_MODEL)
            self.device = str(getattr(model, "device", "cpu"))
            log.info(
                "worker %s: model %s on device %s (CUDA_VISIBLE_DEVICES=%s)",
                self.worker_id, islets.DEFAULT_MODEL, self.device, visible if visible is not None else "unset",
            )  # fmt: skip
        except JobFailure as problem:
            log.error("worker %s: default model unavailable: %s", self.worker_id, problem)

    def close(self) -> None:
        self._stop.set()
        self._announce()
        self._postprocess.shutdown(wait=False, cancel_futures=True)
        self._io.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)
        with self._batchers_lock:
            for batcher in self._batchers.values():
                batcher.close(timeout=5)

    def _announce(self) -> None:
        """A job may be claimable now: wake the idle slots."""
        with self._claimable:
            self._claimable_count += 1
            self._claimable.notify_all()

    def _wait_for_work(self, seen: int) -> None:
        """Sleep until the queue announces a job after `seen` or the poll interval passes (a job
        whose lease expired is never announced: the poll finds it)."""
        with self._claimable:
            self._claimable.wait_for(
                lambda: self._claimable_count != seen or self._stop.is_set(), timeout=self.config.poll_s
            )

    def _watch_queue(self) -> None:
        """LISTEN for new and released jobs while the worker runs; on trouble, poll and retry."""
        backoff = 1.0
        while not self._stop.is_set():
            try:
                self.queue.watch(self._announce, self._stop)
            except ServiceError as problem:
                log.warning("not woken by new jobs for now (polling every %.1fs): %s", self.config.poll_s, problem)
                self._stop.wait(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
            except Exception:  # a bug here must not end the worker: polling still finds the jobs
                log.exception("unexpected error while listening for new jobs")
                self._stop.wait(_MAX_BACKOFF_S)

    def _slot_loop(self) -> None:
        backoff = self.config.poll_s
        while not self._stop.is_set():
            with self._claimable:
                seen = self._claimable_count
            try:
                outcome = self.process_next()
            except ServiceError as problem:
                if isinstance(problem, Unavailable):
                    log.warning("queue unavailable, retrying in %.0fs: %s", backoff, problem)
                else:  # e.g. wrong database credentials: say it, keep trying
                    log.error("cannot take jobs, retrying in %.0fs: %s", backoff, problem)
                self._stop.wait(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
                continue
            except Exception:  # a bug in one claim must not end the slot
                log.exception("unexpected error in the worker loop")
                self._stop.wait(backoff)
                backoff = min(_MAX_BACKOFF_S, backoff * 2)
                continue
            backoff = self.config.poll_s
            if outcome is None:
                if self.config.overlap:
                    self._wait_for_work(seen)
                else:
                    self._stop.wait(self.config.poll_s)
            elif outcome == "released":
                # Storage or database trouble: give them a moment before the next claim.
                self._stop.wait(min(_MAX_BACKOFF_S, self.config.lease_s / 3))

    def _beat(self, slots: list[threading.Thread], state: str | None = None) -> None:
        """Touch the heartbeat file unless a slot died or a job stage hangs."""
        now = time.monotonic()
        with self._active_lock:
            active = list(self._active.values())
        stalled = [job for job in active if now - job.stage_since > self.config.stall_s]
        dead = [slot.name for slot in slots if not slot.is_alive()]
        if (stalled or dead) and state != "stopping":
            log.error(
                "not healthy: %s",
                "; ".join([f"slot {name} died" for name in dead]
                          + [f"job {job.claimed.id} stuck in {job.stage}" for job in stalled]),
            )  # fmt: skip
            return
        status = {
            "worker_id": self.worker_id,
            "pid": os.getpid(),
            "device": self.device,
            "state": state or ("busy" if active else "idle"),
            "active_jobs": [job.claimed.id for job in active],
            **self.counts,
        }
        try:
            write_heartbeat(self.config.heartbeat_file, status)
        except OSError as problem:
            log.error("cannot write the heartbeat file %s: %s", self.config.heartbeat_file, problem)

    def _release_unfinished(self) -> None:
        """After the drain time: stop the running jobs and hand them back to the queue."""
        self._abandon.set()
        with self._active_lock:
            unfinished = list(self._active.values())
        for active in unfinished:
            job_id, token = active.claimed.id, active.claimed.token
            try:
                released = self.queue.release(job_id, token, "the worker stopped before the job finished")
            except ServiceError as problem:
                log.warning("could not release job %s (its lease will expire instead): %s", job_id, problem)
                continue
            if released:
                self.counts["released"] += 1
                log.warning("job %s not finished within the drain time; released to the queue", job_id)

    # -- one job ----------------------------------------------------------------------------

    def process_next(self) -> str | None:
        """Claim one job and process it. Returns None when the queue was empty, else the outcome:
        "done", "failed", "released" (storage/queue trouble), "lost" (lease taken over) or
        "abandoned" (stopping)."""
        claimed = self.queue.claim(self.worker_id, self.config.lease_s)
        if claimed is None:
            return None
        return self.process(claimed)

    def process(self, claimed: ClaimedJob) -> str:
        job = claimed.job
        active = ActiveJob(claimed)
        with self._active_lock:
            self._active[job.id] = active
        self._ensure_lease_keeper()
        started = time.monotonic()
        log.info(
            "job %s claimed%s: attempt %d of %d, %d images, model %s",
            job.id, " again (previous lease expired)" if claimed.reclaimed else "",
            job.attempts, job.max_attempts, job.image_count, job.model,
        )  # fmt: skip
        try:
            outcome = self._run_job(active)
        finally:
            with self._active_lock:
                self._active.pop(job.id, None)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        log.info("job %s %s after %.1fs", job.id, outcome, time.monotonic() - started)
        return outcome

    def _run_job(self, active: ActiveJob) -> str:
        claimed = active.claimed
        job_id, token = claimed.id, claimed.token
        try:
            summary = self._analyse(active)
            active.enter("completing")
            with active.times.measure("finish"):
                completed = self.queue.complete(job_id, token, summary)
            if completed:
                self._log_stages(active)
                return "done"
            log.warning("job %s finished here, but this worker lost its lease; the other worker's run counts", job_id)
            return "lost"
        except JobFailure as failure:
            message = str(failure)
            log.warning("job %s failed: %s", job_id, message)
            return "failed" if self._settle(self.queue.fail, job_id, token, message) else "lost"
        except JobAbandoned as reason:
            log.warning("job %s abandoned: %s", job_id, reason)
            return "abandoned"
        except Unavailable as problem:
            log.warning("job %s paused, storage or queue unavailable: %s", job_id, problem)
            self._settle(self.queue.release, job_id, token, f"storage or queue unavailable: {problem}")
            return "released"
        except Exception as error:  # a bug or an unexpected library error: fail the job, keep the worker
            log.exception("job %s: unexpected error", job_id)
            message = (
                f"Processing failed unexpectedly ({type(error).__name__}: {_sentence_tail(error)[:-1]}); "
                "the shepherd log has the details."
            )
            return "failed" if self._settle(self.queue.fail, job_id, token, message) else "lost"

    def _log_stages(self, active: ActiveJob) -> None:
        """One line per finished job: wall and CPU seconds per stage (bench/burst.py reads it)."""
        job = active.claimed.job
        if job.started_at is not None:
            active.times.add("queue_wait", max(0.0, (job.started_at - job.created_at).total_seconds()), 0.0)
        stages = active.times.to_dict()
        document = {"images": job.image_count, "pipeline": self.config.pipeline, "stages": stages}
        log.info("job %s stages %s", job.id, json.dumps(document))  # stages in pipeline order

    @staticmethod
    def _settle(action: Callable[[str, str, str], bool], job_id: str, token: str, message: str) -> bool:
        """fail/release that tolerates a database outage (the lease then simply expires)."""
        try:
            return action(job_id, token, message)
        except ServiceError as problem:
            log.warning("could not record the outcome of job %s (its lease will expire): %s", job_id, problem)
            return False

    def _analyse(self, active: ActiveJob) -> dict[str, Any]:
        job = active.claimed.job
        times = active.times
        if not job.file_names:
            raise JobFailure("The job has no images.")
        active.enter("loading the model")
        model = self._model(job.model)
        batcher = self._batcher(job.model, model)
        count = len(job.file_names)
        overlap = self.config.overlap
        summaries: list[dict[str, Any] | None] = [None] * count
        in_flight: deque[tuple[int, Future[dict[str, Any]], Admission]] = deque()
        # Enough images in flight to fill a model batch, few enough to bound memory.
        window = max(2, self.config.max_batch_size)
        finished = 0

        def fetch(index: int) -> bytes:
            name = job.file_names[index]
            with times.measure("fetch"):
                try:
                    return self.store.get(JobKeys(job.id).input(index, name))
                except ObjectNotFound:
                    raise JobFailure(
                        f"Image {index} ({name}) is missing from storage; submit the job again."
                    ) from None

        def collect_oldest() -> None:
            nonlocal finished
            index, future, admission = in_flight[0]
            try:
                summaries[index] = self._wait(active, future)
            finally:
                in_flight.popleft()
                self._pixels.release(admission)
            finished += 1
            active.progress = finished / count
            self._report_progress(active)

        def admit(index: int, width: int, height: int) -> Admission:
            """Room in memory before decoding: finish this job's own images in flight first, then
            wait for the other jobs of this worker (or, oversized, for the whole container)."""
            admission = self._pixels.try_admit(width * height)
            while admission is None and in_flight:
                collect_oldest()
                admission = self._pixels.try_admit(width * height)
            if admission is None:
                log.info("job %s: waiting for memory for image %d (%d×%d px, over this worker's free "
                         "pixel share or behind another oversized image)", job.id, index, width, height)
            while admission is None:
                self._checkpoint(active, f"waiting for memory for image {index}")
                admission = self._pixels.admit(width * height, wait_s=1.0)
            return admission

        # overlap: the next image is read from storage while this one decodes.
        ahead: Future[bytes] | None = self._io.submit(fetch, 0) if overlap else None
        try:
            for index, name in enumerate(job.file_names):
                self._checkpoint(active, f"reading image {index}")
                if ahead is not None:
                    data = self._wait(active, ahead)
                    ahead = self._io.submit(fetch, index + 1) if index + 1 < count else None
                else:
                    data = fetch(index)
                self._checkpoint(active, f"preprocessing image {index}")
                try:
                    width, height = islets.image_size(data, self.config.max_image_pixels)
                    admission = admit(index, width, height)
                    try:
                        with times.measure("decode"):
                            rgb = islets.preprocess(data, self.config.max_image_pixels)
                        del data
                        model_result = batcher.submit(rgb)
                        finishing = self._postprocess.submit(self._finish_image, active, index, rgb, model_result)
                    except BaseException:
                        self._pixels.release(admission)
                        raise
                except islets.InvalidImageError as problem:
                    raise JobFailure(f"Image {index} ({name}) cannot be analysed: {_sentence_tail(problem)}") from None
                in_flight.append((index, finishing, admission))
                while len(in_flight) >= window:
                    collect_oldest()
            while in_flight:
                collect_oldest()
        finally:
            if ahead is not None:
                ahead.cancel()
            for _index, future, admission in in_flight:
                future.cancel()
                self._pixels.release(admission)  # a running one may still finish; its job has failed
        active.enter("writing the summary")
        self._checkpoint(active, "writing the summary")
        summary = job_summary(job, [s for s in summaries if s is not None])
        with times.measure("finish"):
            self.store.put(JobKeys(job.id).summary, _json_bytes(summary), "application/json")
        return summary

    def _finish_image(self, active: ActiveJob, index: int, rgb: np.ndarray, model_result: Future) -> dict[str, Any]:
        """Postprocess one image (CPU pool) and store its result files."""
        job, times = active.claimed.job, active.times
        name = job.file_names[index]
        try:
            class_map, (model_wall_s, model_cpu_s) = model_result.result()
        except Exception as error:
            raise JobFailure(
                f"The model {job.model} failed on image {index} ({name}): {_sentence_tail(error)}"
            ) from None
        times.add("model", model_wall_s, model_cpu_s)
        try:
            if self.config.overlap:
                result, overlay, preview, stage_times = self._measure_and_draw(
                    rgb, class_map, job.pixel_size_um, job.model
                )
                for stage, (wall_s, cpu_s) in stage_times.items():
                    times.add(stage, wall_s, cpu_s)
            else:  # as before issue 19: Pillow's PNG; the preview drawn again, made a PNG, decoded, a JPEG
                with times.measure("postprocess"):
                    result = islets.measure_with_flags(rgb, class_map, job.pixel_size_um, job.model)
                with times.measure("overlay"):
                    overlay = islets.encode_png(np.asarray(islets.draw_overlay(rgb, result)))
                    preview = overlay_preview(islets.encode_png(np.asarray(islets.draw_overlay(rgb, result,
                                                                                              PREVIEW_MAX_PX))))
        except islets.IsletsError as error:
            raise JobFailure(f"Measuring image {index} ({name}) failed: {_sentence_tail(error)}") from None
        keys = JobKeys(job.id)
        self._write(times, [
            (keys.result(index), _json_bytes(result), "application/json"),
            (keys.overlay(index), overlay, "image/png"),
            (keys.preview(index), preview, "image/jpeg"),
            (keys.csv(index), islets.islets_csv(result).encode(), "text/csv"),
        ])  # fmt: skip
        return result["summary"]

    def _measure_and_draw(
        self, rgb: np.ndarray, class_map: np.ndarray, pixel_size_um: float, model_name: str
    ) -> tuple[dict[str, Any], bytes, bytes, dict[str, tuple[float, float]]]:
        """`measure_and_draw` here, or in the process pool when there is one (GPU workers)."""
        pool = self._processes
        if pool is None:
            return measure_and_draw(rgb, class_map, pixel_size_um, model_name)
        try:
            return pool.submit(measure_and_draw, rgb, class_map, pixel_size_um, model_name).result()
        except BrokenProcessPool:
            # A process died (killed for memory, a crash in a C library): every image it had in
            # hand fails with this sentence, and the next image gets a fresh pool.
            log.error("a measuring process died; starting a new pool of %d", self.config.postprocess_processes)
            with self._processes_lock:
                if self._processes is pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self._processes = _process_pool(self.config.postprocess_processes)
            raise JobFailure(
                "The measuring process stopped unexpectedly while measuring this image (out of memory?); "
                "the shepherd log has the details."
            ) from None

    def _write(self, times: StageTimes, files: list[tuple[str, bytes, str]]) -> None:
        """Store an image's result files: all at once (overlap) or one after another (serial)."""

        def put(key: str, data: bytes, content_type: str) -> None:
            with times.measure("storage_writes", wall=False):
                self.store.put(key, data, content_type)

        started = time.perf_counter()
        if self.config.overlap:
            futures = [self._io.submit(put, *file) for file in files]
            errors = [error for error in (future.exception() for future in futures) if error is not None]
            if errors:
                raise errors[0]
        else:
            for file in files:
                put(*file)
        times.add("storage_writes", time.perf_counter() - started, 0.0)

    def _wait(self, active: ActiveJob, future: Future[T]) -> T:
        """Wait for an image while still noticing a lost lease or the end of the drain time."""
        while True:
            try:
                return future.result(timeout=0.5)
            except FutureTimeout:
                self._checkpoint(active, active.stage)

    def _checkpoint(self, active: ActiveJob, stage: str) -> None:
        if stage != active.stage:
            active.enter(stage)
        if active.lost.is_set():
            raise JobAbandoned("another worker holds the job now (this worker's lease expired)")
        if self._abandon.is_set():
            raise JobAbandoned("the worker is stopping and the drain time is over")

    def _report_progress(self, active: ActiveJob) -> None:
        try:
            if not self.queue.heartbeat(active.claimed.id, active.claimed.token, active.progress):
                active.lost.set()
        except Unavailable as problem:
            log.warning("progress of job %s not recorded: %s", active.claimed.id, problem)

    # -- leases -----------------------------------------------------------------------------

    def _ensure_lease_keeper(self) -> None:
        with self._active_lock:
            if self._lease_keeper is not None and self._lease_keeper.is_alive():
                return
            self._lease_keeper = threading.Thread(target=self._keep_leases, name="lease-keeper", daemon=True)
            self._lease_keeper.start()

    def _keep_leases(self) -> None:
        """Every lease/3 seconds, extend the lease of every running job (and record progress)."""
        interval = self.config.heartbeat_interval_s
        while not self._abandon.wait(interval):
            with self._active_lock:
                active = list(self._active.values())
            now = time.monotonic()
            for job in active:
                if now - job.stage_since > self.config.stall_s:
                    # A hung stage: stop extending its lease, so another worker takes the job over
                    # (the attempts limit ends a job that hangs every worker).
                    if not job.lost.is_set():
                        log.error("job %s stuck in %s for %.0fs; letting its lease expire", job.claimed.id,
                                  job.stage, now - job.stage_since)  # fmt: skip
                    job.lost.set()
                    continue
                self._report_progress(job)
            if not active and self._stop.is_set():
                return

    # -- models -----------------------------------------------------------------------------

    def _model(self, name: str) -> Any:
        try:
            return self._model_loader(name)
        except islets.UnknownModelError as problem:
            raise JobFailure(str(problem)) from None
        except islets.IsletsError as problem:
            raise JobFailure(f"The model {name} could not be loaded: {_sentence_tail(problem)}") from None

    def _batcher(self, name: str, model: Any) -> islets.DynamicBatcher:
        with self._batchers_lock:
            batcher = self._batchers.get(name)
            if batcher is None:
                batcher = islets.DynamicBatcher(
                    _timed_predict(model), self.config.max_batch_size, self.config.max_batch_wait_s,
                    name=f"batch-{name}",
                )  # fmt: skip
                self._batchers[name] = batcher
            return batcher


def measure_and_draw(
    rgb: np.ndarray, class_map: np.ndarray, pixel_size_um: float, model_name: str
) -> tuple[dict[str, Any], bytes, bytes, dict[str, tuple[float, float]]]:
    """An image's postprocessing: the measured result, the overlay PNG, the preview JPEG, and the
    wall and CPU seconds of the "postprocess" and "overlay" stages. Module-level, so a process
    pool can run it; the CPU seconds are those of the thread that ran it."""
    started, cpu = time.perf_counter(), time.thread_time()
    result = islets.measure_with_flags(rgb, class_map, pixel_size_um, model_name)
    measured, measured_cpu = time.perf_counter(), time.thread_time()
    picture = islets.draw_overlay(rgb, result)
    overlay = islets.encode_png_fast(np.asarray(picture))
    preview = preview_jpeg(picture)
    stages = {
        "postprocess": (measured - started, measured_cpu - cpu),
        "overlay": (time.perf_counter() - measured, time.thread_time() - measured_cpu),
    }
    return result, overlay, preview, stages


def _process_pool(processes: int) -> ProcessPoolExecutor | None:
    """`processes` spawned processes (never forked: the worker has threads, maybe CUDA), or None."""
    if processes < 1:
        return None
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"))


def _timed_predict(model: Any) -> Callable[[list[np.ndarray]], list[tuple[np.ndarray, tuple[float, float]]]]:
    """`model.predict` for the batcher, each class map paired with its share of the batch's wall
    and CPU seconds (the batcher's thread runs it, so its thread time is the model's)."""

    def predict(batch: list[np.ndarray]) -> list[tuple[np.ndarray, tuple[float, float]]]:
        started, cpu = time.perf_counter(), time.thread_time()
        maps = model.predict(batch)
        share = ((time.perf_counter() - started) / max(1, len(batch)), (time.thread_time() - cpu) / max(1, len(batch)))
        return [(class_map, share) for class_map in maps]

    return predict


def run_worker(config: ShepherdConfig | None = None) -> int:
    """Entry point of one worker process."""
    configure_logging()
    try:
        config = config or ShepherdConfig.from_env()
        store = ObjectStore.from_env()
        queue = LeaseQueue(JobDatabase.from_env())
    except ServiceError as problem:
        log.error("cannot start: %s", problem)
        return 2
    return Worker(config, store, queue).run()


def configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s [%(process)d %(threadName)s]: %(message)s",
        stream=sys.stderr,
    )


if __name__ == "__main__":
    sys.exit(run_worker())
