"""The GPU figures of issue 19, for a session that is lent a GPU machine (shared/GPU.md): how busy
the GPU is while one shepherd worker's pipeline runs (NVML, target ≥ 80 %), and batched against
single-image throughput of the model stage (target ≥ 3×).

One worker's pipeline in-process, as `services/shepherd/worker.py` runs it: `--slots` threads
(the worker's concurrent jobs) each decode an image, submit it to one `DynamicBatcher` around
the model, then measure and draw the overlay (PNG + preview) on the CPU. The model is a small
TorchScript network built here (3×3 convolutions, random weights: the class maps are
meaningless, the arithmetic is real), on CUDA when torch sees a GPU. Without torch it falls back
to the ONNX colour network on the CPU and says that these are no GPU figures.

    PYTHONPATH=$PWD python3 bench/gpu_batching.py [--images 48] [--slots 8] [--max-batch 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

import services.islets as islets
from services.common.previews import preview_jpeg
from services.islets.demo_models import colour_model
from services.islets.models import OnnxModel, TorchModel


def build_model(folder: Path) -> Any:
    """A TorchScript net (CUDA when available) or, without torch, the ONNX colour rule (CPU)."""
    if importlib.util.find_spec("torch") is None:
        return OnnxModel("colour", colour_model(folder / "colour.onnx"))
    import torch

    torch.manual_seed(0)
    layers: list[Any] = []
    channels = 3
    for width in (32, 64, 64, 32):
        layers += [torch.nn.Conv2d(channels, width, 3, padding=1), torch.nn.ReLU()]
        channels = width
    layers.append(torch.nn.Conv2d(channels, 3, 1))
    path = folder / "net.pt"
    torch.jit.save(torch.jit.script(torch.nn.Sequential(*layers).eval()), str(path))
    return TorchModel("torch:net", path, tile_px=1024, max_batch=16)


class GpuSampler:
    """Mean NVML GPU utilisation of device 0 while running (None without NVML or a GPU)."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml: Any = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.name = str(pynvml.nvmlDeviceGetName(self._handle))
        except Exception:  # no NVML library, no driver, no device: no GPU figures
            self.name = "no GPU (NVML unavailable)"

    def __enter__(self) -> GpuSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(int(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def run(model: Any, pngs: list[bytes], slots: int, max_batch: int) -> tuple[float, float | None, list[int], float]:
    """Images/s through the whole pipeline, mean GPU utilisation, batch sizes, model seconds."""
    model_s = [0.0]

    def predict(batch: list[np.ndarray]) -> list[np.ndarray]:
        started = time.perf_counter()
        maps = model.predict(batch)
        model_s[0] += time.perf_counter() - started
        return maps

    def one(png: bytes) -> None:
        rgb = islets.preprocess(png)
        class_map = batcher.submit(rgb).result()
        result = islets.measure_with_flags(rgb, class_map, 0.843, model.name)
        picture = islets.draw_overlay(rgb, result)
        islets.encode_png_fast(np.asarray(picture))
        preview_jpeg(picture)

    with islets.DynamicBatcher(predict, max_batch, 0.01) as batcher, GpuSampler() as gpu:
        started = time.perf_counter()
        with ThreadPoolExecutor(slots) as pool:
            list(pool.map(one, pngs))
        wall = time.perf_counter() - started
    return len(pngs) / wall, gpu.mean, batcher.batch_sizes, model_s[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--slots", type=int, default=8, help="concurrent jobs of the worker")
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()
    pngs = []
    for seed in range(args.images):
        rgb, _truth = islets.make_dtz_image(seed=seed % 6, size=(1536, 2048), touching_pairs=2)
        pngs.append(islets.encode_png_fast(rgb))
    with tempfile.TemporaryDirectory() as folder:
        model = build_model(Path(folder))
        print(f"model {model.name} on {model.device}; GPU: {GpuSampler().name}")
        model.predict([islets.preprocess(pngs[0])])  # warm-up (CUDA context, kernels)
        # The model stage alone: one image per call against batches.
        rgbs = [islets.preprocess(png) for png in pngs[: args.max_batch * 2]]
        started = time.perf_counter()
        for rgb in rgbs:
            model.predict([rgb])
        single = len(rgbs) / (time.perf_counter() - started)
        started = time.perf_counter()
        for start in range(0, len(rgbs), args.max_batch):
            model.predict(rgbs[start : start + args.max_batch])
        batched = len(rgbs) / (time.perf_counter() - started)
        print(f"model stage alone: {single:.1f} images/s one at a time, {batched:.1f} in batches of "
              f"{args.max_batch}: ×{batched / single:.2f} (target ≥ 3× on a GPU)")  # fmt: skip
        for slots, max_batch in ((1, 1), (args.slots, args.max_batch)):
            rate, utilisation, sizes, model_s = run(model, pngs, slots, max_batch)
            shown = f"{utilisation:.0f} %" if utilisation is not None else "n/a"
            print(f"pipeline, {slots} jobs at once, batches ≤ {max_batch}: {rate:.2f} images/s, "
                  f"mean batch {statistics.mean(sizes):.1f}, model busy {model_s / (len(pngs) / rate):.0%} "
                  f"of the time, GPU utilisation (NVML) {shown} (target ≥ 80 %)")  # fmt: skip


if __name__ == "__main__":
    main()
