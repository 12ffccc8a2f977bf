"""The shepherd's three stages, the overlay and odd-but-valid inputs through the whole chain."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from services.islets import (
    InvalidImageError,
    analyse_image,
    encode_png,
    get_model,
    islets_csv,
    make_dtz_image,
    postprocess,
    preprocess,
    render_overlay,
)
from services.islets.overlay import OUTLINE_RGB


@pytest.fixture(scope="module")
def sample():
    return make_dtz_image(seed=11, touching_pairs=1)


@pytest.fixture(scope="module")
def result(sample):
    return analyse_image(sample[0])


def decode(png: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_stages_compose_to_the_same_result_as_analyse_image(sample, result):
    rgb, truth = sample
    decoded = preprocess(encode_png(rgb), max_pixels=10_000_000)
    assert np.array_equal(decoded, rgb)
    class_map = get_model("classical").predict([decoded])[0]
    assert class_map.shape == rgb.shape[:2] and class_map.dtype == np.uint8
    staged, overlay = postprocess(decoded, class_map, 0.843, "classical")
    assert staged == result
    assert staged["summary"]["islet_count"] == truth["islet_count"]
    json.loads(json.dumps(staged))
    assert decode(overlay).shape == rgb.shape


def test_preprocess_refuses_bad_bytes():
    with pytest.raises(InvalidImageError, match="not an image"):
        preprocess(b"GIF89a? no, just text")


def test_overlay_draws_every_outline_and_number(sample, result):
    rgb, _truth = sample
    picture = decode(render_overlay(rgb, result)).astype(int)
    green = np.all(np.abs(picture - OUTLINE_RGB) < 30, axis=2)
    for islet in result["islets"]:
        x, y = np.asarray(islet["contour_px"]).mean(axis=0)
        # some outline pixel lies on each islet's contour
        points = np.asarray(islet["contour_px"]).round().astype(int)
        hits = green[np.clip(points[:, 1], 0, rgb.shape[0] - 1), np.clip(points[:, 0], 0, rgb.shape[1] - 1)]
        assert hits.mean() > 0.5
        # the label box (dark) with white digits sits on the centroid
        cx, cy = (round(v) for v in islet["centroid_px"])
        patch = picture[cy - 6 : cy + 7, cx - 6 : cx + 7]
        assert (patch.sum(axis=2) > 700).any() and (patch.sum(axis=2) < 100).any()


def test_overlay_of_a_big_image_is_scaled_down(sample, result):
    rgb, _truth = sample
    picture = decode(render_overlay(rgb, result, max_side_px=300))
    assert max(picture.shape[:2]) == 300


def test_csv_rows_match_the_result(result):
    rows = islets_csv(result).strip().split("\n")
    assert len(rows) == 1 + len(result["islets"])
    assert rows[1].startswith("1,")


def grey_png(rgb: np.ndarray, bits: int) -> bytes:
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    if bits == 8:
        return encode_png(grey)
    buffer = io.BytesIO()
    Image.fromarray(grey.astype(np.uint16) * 257).save(buffer, format="PNG")  # mode I;16
    return buffer.getvalue()


@pytest.mark.parametrize("bits", [8, 16])
def test_grey_images_are_analysed_without_error(sample, bits):
    # Without colour there is no dithizone red: tissue is seen, no islet is claimed.
    rgb, _truth = sample
    result = analyse_image(preprocess(grey_png(rgb, bits)))
    assert result["summary"]["islet_count"] == 0
    assert result["summary"]["exocrine_area_um2"] > 0


def test_alpha_image_gives_the_same_result_as_rgb(sample, result):
    rgb, _truth = sample
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, dtype=np.uint8)])
    assert analyse_image(preprocess(encode_png(rgba))) == result


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (7, 5), (40, 40), (1, 500)])
def test_tiny_images_work(shape):
    rgb = np.full((*shape, 3), (230, 225, 215), dtype=np.uint8)
    rgb[: shape[0] // 2] = (170, 30, 50)
    result, overlay = postprocess(rgb, get_model("classical").predict([rgb])[0], 0.843, "classical")
    assert result["summary"]["islet_count"] == 0  # nothing is 50 µm wide
    assert decode(overlay).shape == rgb.shape


@pytest.mark.parametrize("fill", [0, 255])
def test_uniform_black_or_white_images_work(fill):
    rgb = np.full((300, 300, 3), fill, dtype=np.uint8)
    assert analyse_image(rgb)["summary"]["islet_count"] == 0
