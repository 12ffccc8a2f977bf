"""Large images: the classical model works tile by tile and measure() per component, so their
working memory does not grow with the image the way a whole-image float pipeline would.

Measured with tracemalloc (numpy reports its buffers to it) on a 2000×2000 sample (12 MB RGB):
processed whole, the classical model peaks above 150 MB (float copies of the full image).
"""

import tracemalloc

import numpy as np
import pytest

from services.islets import make_dtz_image, measure
from services.islets.classical import ClassicalParameters, segment

MB = 1_000_000


@pytest.fixture(scope="module")
def large_sample() -> np.ndarray:
    tile, _truth = make_dtz_image(seed=42, size=(1000, 1000))
    return np.tile(tile, (2, 2, 1))  # 2000×2000, 16 islets


def traced_peak(function, *args, **kwargs):
    tracemalloc.start()
    try:
        value = function(*args, **kwargs)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return value, peak


def test_classical_model_memory_is_bounded_by_the_tile_not_the_image(large_sample):
    classes, peak = traced_peak(segment, large_sample, ClassicalParameters(tile_px=512))
    # the 4 MB class map itself plus one 544×544 tile's float planes and masks (~12 MB)
    assert peak < 30 * MB
    assert np.count_nonzero(classes == 2) > 0


def test_measure_memory_is_a_few_bytes_per_pixel(large_sample):
    classes = segment(large_sample)
    result, peak = traced_peak(measure, classes)
    assert result["summary"]["islet_count"] == 16
    # 16-bit labels (2 B/px) and one boolean mask at a time (1 B/px); per-islet work is per crop
    assert peak < 4.5 * classes.size
