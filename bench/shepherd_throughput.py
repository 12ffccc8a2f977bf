"""Throughput of the shepherd's per-image pipeline (decode -> model -> postprocess) on this
machine: one image at a time vs. concurrent jobs whose model stage goes through the
DynamicBatcher, where the time goes per stage, and the peak memory for one very large image.

    .venv/bin/python bench/shepherd_throughput.py                 # all of it
    .venv/bin/python bench/shepherd_throughput.py --huge-side 0   # skip the large-image run

Models: "classical" (the default, no weights) and "colour", a tiny ONNX network built on the
spot (services.islets.demo_models), which shows what batching does for a network backend.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.islets import DynamicBatcher, encode_png, make_dtz_image, measure, postprocess, preprocess, render_overlay
from services.islets.classical import ClassicalModel
from services.islets.demo_models import colour_model
from services.islets.models import OnnxModel


@dataclass
class Timing:
    decode: float
    model: float  # includes the wait in the batcher's queue when batched
    postprocess: float

    @property
    def total(self) -> float:
        return self.decode + self.model + self.postprocess


def make_inputs(count: int) -> list[bytes]:
    """PNG uploads of realistic content: 4-8 islets, a touching pair, exocrine, noise."""
    blobs = []
    for seed in range(count):
        rgb, _truth = make_dtz_image(
            seed=seed, diameters_um=(70, 110, 160, 230)[: 2 + seed % 3], touching_pairs=1, uneven_illumination=0.3
        )
        blobs.append(encode_png(rgb))
    return blobs


def one_image(blob: bytes, predict, model_name: str) -> Timing:
    started = time.perf_counter()
    rgb = preprocess(blob)
    decoded = time.perf_counter()
    classes = predict(rgb)
    predicted = time.perf_counter()
    postprocess(rgb, classes, 0.843, model_name)
    return Timing(decoded - started, predicted - decoded, time.perf_counter() - predicted)


def run_sequential(blobs: list[bytes], model) -> tuple[float, float, list[Timing]]:
    """Wall seconds, CPU seconds (all threads) and per-image timings."""
    started, cpu = time.perf_counter(), time.process_time()
    timings = [one_image(blob, lambda rgb: model.predict([rgb])[0], model.name) for blob in blobs]
    return time.perf_counter() - started, time.process_time() - cpu, timings


def run_batched(
    blobs: list[bytes], model, workers: int, max_batch: int, max_wait: float
) -> tuple[float, float, list[Timing], list[int]]:
    """`workers` jobs at once (threads, like the shepherd's concurrent jobs), the model stage
    through one DynamicBatcher."""
    with DynamicBatcher(model.predict, max_batch_size=max_batch, max_wait_s=max_wait) as batcher:
        started, cpu = time.perf_counter(), time.process_time()

        def job(blob: bytes) -> Timing:
            return one_image(blob, lambda rgb: batcher.submit(rgb).result(), model.name)

        with ThreadPoolExecutor(workers) as pool:
            timings = list(pool.map(job, blobs))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return wall, cpu, timings, batcher.batch_sizes


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


def report(label: str, wall: float, cpu: float, timings: list[Timing], batches: list[int] | None = None) -> None:
    totals = [t.total for t in timings]
    decode, model, post = (
        statistics.mean(getattr(t, stage) for t in timings) * 1000 for stage in Timing.__annotations__
    )
    line = (
        f"  {label:<34} {len(timings) / wall:6.2f} img/s   p50 {percentile(totals, 0.5) * 1000:7.0f} ms"
        f"   p95 {percentile(totals, 0.95) * 1000:7.0f} ms"
        f"   decode {decode:5.0f} / model {model:6.0f} / post {post:5.0f} ms"
        f"   CPU {cpu / len(timings) * 1000:5.0f} ms/img"
    )
    if batches:
        line += f"   batches: mean {statistics.mean(batches):.1f}, max {max(batches)}"
    print(line, flush=True)


def peak_rss_mib(reset: bool = False) -> float:
    """This process's peak resident memory in MiB (VmHWM: unlike ru_maxrss it does not inherit
    the parent's peak across fork+exec). reset=True starts a new peak afterwards (Linux)."""
    peak = float("nan")
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    if reset:
        with contextlib.suppress(OSError):  # not Linux, or not allowed: the peak just keeps counting
            Path("/proc/self/clear_refs").write_text("5")
    return peak


def huge_child(path: str) -> None:
    """Runs in a fresh process: the whole pipeline on one big PNG; prints wall and CPU seconds and
    the peak RSS of each stage (and overall)."""
    imports = peak_rss_mib(reset=True)
    data = Path(path).read_bytes()
    marks = [(time.perf_counter(), time.process_time())]
    peaks: dict[str, float] = {}

    def stage(name: str) -> None:
        marks.append((time.perf_counter(), time.process_time()))
        peaks[name] = peak_rss_mib(reset=True)

    rgb = preprocess(data)
    del data
    stage("decode")
    classes = ClassicalModel().predict([rgb])[0]
    stage("model")
    result = measure(classes, 0.843, model="classical")
    stage("measure")
    overlay = render_overlay(rgb, result)
    stage("overlay")
    times = ", ".join(
        f"{name} {end[0] - start[0]:.1f} s ({end[1] - start[1]:.1f} s CPU)"
        for name, start, end in zip(peaks, marks, marks[1:], strict=False)
    )
    print(
        f"{rgb.shape[1]}x{rgb.shape[0]}: {times}; {result['summary']['islet_count']} islets; "
        f"overlay PNG {len(overlay) / 1e6:.1f} MB\n"
        f"  peak RSS {max(peaks.values()):.0f} MiB (per stage: "
        + ", ".join(f"{name} {value:.0f}" for name, value in peaks.items())
        + f"; after imports {imports:.0f} MiB; the RGB image alone is {rgb.nbytes / 2**20:.0f} MiB)"
    )


def run_huge(side: int) -> None:
    tile, _truth = make_dtz_image(
        seed=42, diameters_um=(70, 90, 120, 150, 180, 220, 260), touching_pairs=3, size=(2000, 2000)
    )
    repeats = -(-side // tile.shape[0])
    big = np.tile(tile, (repeats, repeats, 1))[:side, :side]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "huge.png"
        path.write_bytes(encode_png(big, compress_level=1))
        del big
        print(f"  input PNG {path.stat().st_size / 1e6:.0f} MB", flush=True)
        output = subprocess.run(
            [sys.executable, __file__, "--huge-child", str(path)], capture_output=True, text=True, check=True
        )
    print("  " + output.stdout.strip(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--workers", type=int, nargs="+", default=[2, 8], help="concurrent jobs in batched mode")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait", type=float, default=0.02)
    parser.add_argument("--huge-side", type=int, default=10_000, help="side of the large-image run; 0 skips it")
    parser.add_argument("--huge-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.huge_child:
        huge_child(args.huge_child)
        return

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}; Python {platform.python_version()}"
    )
    if args.images:
        run_throughput(args)
    if args.huge_side:
        print(f"large image {args.huge_side}x{args.huge_side} (classical, tiled), separate process:", flush=True)
        run_huge(args.huge_side)


def run_throughput(args: argparse.Namespace) -> None:
    blobs = make_inputs(args.images)
    print(f"{len(blobs)} synthetic images, {statistics.mean(len(b) for b in blobs) / 1e6:.1f} MB PNG each on average")
    with tempfile.TemporaryDirectory() as folder:
        models = [ClassicalModel(), OnnxModel("colour", colour_model(Path(folder) / "colour.onnx"))]
        for model in models:
            print(f"model {model.name} on {model.device}:")
            one_image(blobs[0], lambda rgb, m=model: m.predict([rgb])[0], model.name)  # warm-up
            report("one at a time", *run_sequential(blobs, model))
            for workers in args.workers:
                wall, cpu, timings, batches = run_batched(blobs, model, workers, args.max_batch, args.max_wait)
                label = f"{workers} jobs, DynamicBatcher({args.max_batch}, {args.max_wait}s)"
                report(label, wall, cpu, timings, batches)


if __name__ == "__main__":
    main()
