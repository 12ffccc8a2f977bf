"""Where one 3-Mpx image's CPU goes in the shepherd, call by call: the image stages of the serial
pipeline of before (`SHEPHERD_PIPELINE=serial`) and of the overlapped one, in-process, without
storage or queue (bench/burst.py measures those on a real stack). It uses pyinstrument when it
is importable (`pip install pyinstrument`; the project does not need it) and cProfile otherwise.

    PYTHONPATH=$PWD .venv/bin/python bench/profile_job.py [--repeats 3] [--pipeline serial|overlap|both]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

import services.islets as islets
from services.common.previews import PREVIEW_MAX_PX, overlay_preview, preview_jpeg


def sample_png(width: int = 2048, height: int = 1536) -> bytes:
    rgb, _truth = islets.make_dtz_image(
        seed=1, size=(height, width), diameters_um=(70, 110, 160, 230, 90, 130, 180, 260, 75, 120),
        touching_pairs=3, clusters=(3, 4), uneven_illumination=0.3,
    )  # fmt: skip
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def one_image(png: bytes, pipeline: str) -> dict[str, float]:
    """The shepherd's per-image work (services/shepherd/worker.py `_finish_image`), timed per stage."""
    marks = [time.process_time()]
    model = islets.get_model(islets.DEFAULT_MODEL)
    rgb = islets.preprocess(png)
    marks.append(time.process_time())
    class_map = model.predict([rgb])[0]
    marks.append(time.process_time())
    result = islets.measure_with_flags(rgb, class_map, 0.843, islets.DEFAULT_MODEL)
    marks.append(time.process_time())
    if pipeline == "overlap":
        picture = islets.draw_overlay(rgb, result)
        islets.encode_png_fast(np.asarray(picture))
        preview_jpeg(picture)
    else:
        islets.encode_png(np.asarray(islets.draw_overlay(rgb, result)))
        overlay_preview(islets.encode_png(np.asarray(islets.draw_overlay(rgb, result, PREVIEW_MAX_PX))))
    marks.append(time.process_time())
    islets.islets_csv(result)
    marks.append(time.process_time())
    names = ("decode", "model", "postprocess", "overlay", "csv")
    return {name: end - start for name, start, end in zip(names, marks, marks[1:], strict=False)}


def profile(work: Callable[[], object]) -> str:
    try:
        from pyinstrument import Profiler
    except ImportError:
        profiler = cProfile.Profile()
        profiler.runcall(work)
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
        return "cProfile (pyinstrument is not installed):\n" + out.getvalue()
    sampler = Profiler(interval=0.001)
    sampler.start()
    work()
    sampler.stop()
    return str(sampler.output_text(unicode=True, color=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pipeline", choices=["serial", "overlap", "both"], default="both")
    args = parser.parse_args()
    png = sample_png()
    pipelines = ["serial", "overlap"] if args.pipeline == "both" else [args.pipeline]
    for pipeline in pipelines:
        one_image(png, pipeline)  # warm-up: model loaded, caches filled
        runs = [one_image(png, pipeline) for _ in range(args.repeats)]
        medians = {stage: float(np.median([run[stage] for run in runs])) for stage in runs[0]}
        print(f"{pipeline}: {sum(medians.values()):.3f} CPU-s per 2048×1536 image (median of {args.repeats}): "
              + ", ".join(f"{stage} {seconds:.3f}" for stage, seconds in medians.items()))  # fmt: skip
        print(profile(lambda p=pipeline: one_image(png, p)))  # type: ignore[misc]


if __name__ == "__main__":
    main()
