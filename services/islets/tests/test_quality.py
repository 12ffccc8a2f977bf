"""Quality flags: each raised on a synthetic image made to trigger it, none on clean images."""

import numpy as np
import pytest
from scipy import ndimage

from services.islets import analyse_image, make_dtz_image
from services.islets.quality import QualityThresholds, quality_flags

CODES = {"unsplit_cluster", "out_of_focus", "overexposed", "underexposed", "pixel_size_mismatch", "stain_out_of_range"}


def codes(result):
    return [flag["code"] for flag in result["quality_flags"]]


@pytest.fixture(scope="module")
def clean():
    rgb, _truth = make_dtz_image(seed=5, noise=6, uneven_illumination=0.3, holes=1, specks=20)
    return rgb


def blurred(rgb, sigma):
    out = np.stack([ndimage.gaussian_filter(rgb[..., c].astype(np.float32), sigma) for c in range(3)], axis=-1)
    out += np.random.default_rng(0).normal(0, 3, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def scaled(rgb, factor):
    return np.clip(rgb.astype(np.float32) * factor, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_clean_image_raises_no_flag(seed):
    rgb, _truth = make_dtz_image(seed=seed, noise=6, uneven_illumination=0.3, holes=1, specks=20)
    assert analyse_image(rgb)["quality_flags"] == []


def test_a_slight_blur_is_not_flagged(clean):
    assert analyse_image(blurred(clean, 1.5))["quality_flags"] == []


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("defocused", "out_of_focus"),
        ("overexposed", "overexposed"),
        ("underexposed", "underexposed"),
        ("pixel size 3x too large", "pixel_size_mismatch"),
        ("pixel size 5x too small", "pixel_size_mismatch"),
        ("weak stain", "stain_out_of_range"),
        ("clump with wide necks", "unsplit_cluster"),
    ],
)
def test_each_flag_is_raised_by_the_image_made_to_trigger_it(clean, name, code):
    rgb, pixel_size = {
        "defocused": lambda: (blurred(clean, 3.0), 0.843),
        "overexposed": lambda: (scaled(clean, 1.25), 0.843),
        "underexposed": lambda: (scaled(clean, 0.4), 0.843),
        "pixel size 3x too large": lambda: (clean, 0.843 * 3),
        "pixel size 5x too small": lambda: (clean, 0.843 / 5),
        "weak stain": lambda: (make_dtz_image(seed=5, stain=0.6)[0], 0.843),
        # five islets joined through necks of 70-80 % of their width: too wide to split, so
        # counted as one, and not convex
        "clump with wide necks": lambda: (
            make_dtz_image(seed=402, diameters_um=(), clusters=(5,), neck_range=(0.7, 0.8), exocrine_clumps=0)[0],
            0.843,
        ),
    }[name]()
    result = analyse_image(rgb, pixel_size_um=pixel_size)
    assert codes(result) == [code]
    flag = result["quality_flags"][0]
    assert set(flag) == {"code", "value", "message"}
    assert flag["message"].endswith(".") and len(flag["message"]) > 60  # a sentence saying what to do


def test_flags_are_json_and_come_with_the_staged_pipeline(clean):
    from services.islets import get_model, postprocess

    classes = get_model("classical").predict([scaled(clean, 0.4)])[0]
    result, _overlay = postprocess(scaled(clean, 0.4), classes, 0.843, "classical")
    assert codes(result) == ["underexposed"]
    assert all(flag["code"] in CODES and isinstance(flag["value"], float) for flag in result["quality_flags"])


def test_no_islets_raises_no_size_or_focus_flag():
    rgb, _truth = make_dtz_image(seed=7, diameters_um=(), exocrine_clumps=2, size=(400, 500))
    assert analyse_image(rgb)["quality_flags"] == []


def test_thresholds_are_settable():
    rgb, _truth = make_dtz_image(seed=1)
    result = analyse_image(rgb)
    classes = np.zeros(rgb.shape[:2], dtype=np.uint8)
    strict = QualityThresholds(max_median_diameter_um=100.0)
    assert [flag["code"] for flag in quality_flags(rgb, classes, result, strict)] == ["pixel_size_mismatch"]
