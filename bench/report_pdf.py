"""Size and build time of `report.pdf` for a 12-image job whose overlays are full size (4096×3072,
as noisy as a photograph, the worst case for compression), and the peak memory of building it:
from the previews the shepherd stores (the normal path) and from the full overlays (jobs from
before previews). Target (issue 13): ≤ 10 MB and ≤ 5 s.

    PYTHONPATH=$PWD .venv/bin/python bench/report_pdf.py [--images 12]
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from services.backend import reports
from services.common.previews import PREVIEW_MAX_PX, overlay_preview


def noisy_overlay(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // width), (y * 255 // height), np.full_like(x, 120)], axis=2).astype(np.int16)
    noisy = np.clip(base + rng.integers(-40, 40, size=base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--height", type=int, default=3072)
    arguments = parser.parse_args()
    # Distinct overlays: reportlab embeds identical images once.
    overlays = [noisy_overlay(arguments.width, arguments.height, seed) for seed in range(arguments.images)]
    job = {"id": "bench", "state": "done", "model": "classical", "pixel_size_um": 0.843,
           "file_names": [f"image-{n}.png" for n in range(arguments.images)]}
    result = {"images": [], "summary": {"islet_count": 0}}
    previews = [overlay_preview(overlay) for overlay in overlays]
    total = sum(len(overlay) for overlay in overlays)
    print(f"overlay PNGs: {arguments.images} × {arguments.width}×{arguments.height}, {total / 1e6:.0f} MB in all; "
          f"previews (≤ {PREVIEW_MAX_PX} px JPEG): {sum(map(len, previews)) / 1e6:.1f} MB")
    for label, images in (("from the stored previews", previews), ("from the full overlays", overlays)):
        resident = rss_mib()
        Path("/proc/self/clear_refs").write_text("5")  # restart the peak (VmHWM) from here
        started = time.perf_counter()
        pdf = reports.job_pdf(job, result, iter(images))
        elapsed = time.perf_counter() - started
        print(f"report.pdf {label}: {len(pdf) / 1e6:.2f} MB in {elapsed:.2f} s, "
              f"peak RSS {peak_mib():.0f} MiB (resident before, inputs included: {resident:.0f} MiB)")


def _status(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def rss_mib() -> float:
    return _status("VmRSS")


def peak_mib() -> float:
    return _status("VmHWM")


if __name__ == "__main__":
    main()
