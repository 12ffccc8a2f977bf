"""measure() on hand-drawn class maps, where every expected figure is known exactly."""

import json
import math

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from services.islets import CSV_COLUMNS, InvalidParameterError, islets_csv, measure, summarise_images

CONTRACT_ISLET_KEYS = {
    "number", "area_um2", "equivalent_diameter_um", "major_axis_um", "minor_axis_um", "circularity", "solidity",
    "centroid_px", "contour_px", "ieq_ricordi", "ieq_sphere", "ieq_ellipsoid",
}  # fmt: skip
CONTRACT_SUMMARY_KEYS = {
    "islet_count", "ieq_ricordi", "ieq_sphere", "ieq_ellipsoid", "ieq_per_islet", "purity",
    "fragmentation", "size_classes", "pixel_size_um", "model",
}  # fmt: skip


def blank(height=600, width=600):
    return np.zeros((height, width), dtype=np.uint8)


def add_disk(class_map, centre, radius, value=2):
    class_map[disk(centre, radius, shape=class_map.shape)] = value
    return int(np.count_nonzero(class_map == value))


def test_one_disc_all_figures_follow_from_its_pixel_count():
    class_map = blank()
    area_px = add_disk(class_map, (300, 300), 110)
    result = measure(class_map, pixel_size_um=1.0, min_diameter_um=50)
    assert set(result) == {"islets", "summary"}
    (islet,) = result["islets"]
    assert set(islet) == CONTRACT_ISLET_KEYS
    assert islet["number"] == 1
    assert islet["area_um2"] == pytest.approx(area_px, abs=0.05)
    diameter = 2 * math.sqrt(area_px / math.pi)
    assert islet["equivalent_diameter_um"] == pytest.approx(diameter, abs=0.01)
    assert diameter == pytest.approx(220.0, abs=0.5)  # the drawn disc
    assert islet["major_axis_um"] == pytest.approx(220.0, rel=0.01)
    assert islet["minor_axis_um"] == pytest.approx(220.0, rel=0.01)
    assert islet["circularity"] == pytest.approx(1.0, abs=0.03)
    assert islet["centroid_px"] == pytest.approx([300.0, 300.0], abs=0.1)
    assert islet["ieq_ricordi"] == 3.50  # 200-250 class
    assert islet["ieq_sphere"] == pytest.approx(math.pi / 6 * diameter**3 / 1_767_146, abs=1e-4)
    # contour: a closed polygon around the disc, within a pixel or so of radius 110
    contour = np.asarray(islet["contour_px"])
    assert len(contour) >= 16
    radii = np.hypot(contour[:, 0] - 300, contour[:, 1] - 300)
    assert radii.min() > 108 and radii.max() < 111.5

    summary = result["summary"]
    assert set(summary) >= CONTRACT_SUMMARY_KEYS
    assert summary["islet_count"] == 1
    assert summary["ieq_ricordi"] == 3.5
    assert summary["ieq_per_islet"] == 3.5
    assert summary["size_classes"] == {
        "50-100": 0, "100-150": 0, "150-200": 0, "200-250": 1, "250-300": 0, "300-350": 0, ">=350": 0,
    }  # fmt: skip
    assert summary["purity"] == 1.0
    assert summary["fragmentation"] == 0.0
    assert summary["pixel_size_um"] == 1.0
    assert summary["model"] == "classical"
    json.dumps(result)  # JSON-serialisable as stored in S3


def test_pixel_size_scales_lengths_and_areas():
    class_map = blank()
    add_disk(class_map, (300, 300), 100)
    at_one = measure(class_map, pixel_size_um=1.0)["islets"][0]
    at_half = measure(class_map, pixel_size_um=0.5)["islets"][0]
    assert at_half["area_um2"] == pytest.approx(at_one["area_um2"] / 4, rel=1e-4)
    assert at_half["equivalent_diameter_um"] == pytest.approx(at_one["equivalent_diameter_um"] / 2, rel=1e-4)
    assert at_half["major_axis_um"] == pytest.approx(at_one["major_axis_um"] / 2, rel=1e-3)
    assert at_half["ieq_sphere"] == pytest.approx(at_one["ieq_sphere"] / 8, rel=1e-3)


def test_ellipse_axes_and_ellipsoid_ieq():
    class_map = blank()
    class_map[ellipse(300, 300, 50, 100, shape=class_map.shape)] = 2  # 200 × 100 px
    (islet,) = measure(class_map, pixel_size_um=1.0)["islets"]
    assert islet["major_axis_um"] == pytest.approx(200.0, rel=0.01)
    assert islet["minor_axis_um"] == pytest.approx(100.0, rel=0.01)
    expected = math.pi / 6 * islet["major_axis_um"] * islet["minor_axis_um"] ** 2 / 1_767_146
    assert islet["ieq_ellipsoid"] == pytest.approx(expected, abs=1e-4)
    assert islet["ieq_ellipsoid"] == pytest.approx(0.5926, rel=0.03)  # hand value for 200×100 µm
    assert islet["circularity"] < 0.95  # an ellipse is less round than a disc


def test_objects_under_the_minimum_diameter_are_fragments_not_islets():
    class_map = blank()
    small = add_disk(class_map, (100, 100), 20)  # 40 µm
    both = add_disk(class_map, (400, 400), 60)  # 120 µm
    result = measure(class_map, pixel_size_um=1.0, min_diameter_um=50)
    assert result["summary"]["islet_count"] == 1
    assert result["islets"][0]["equivalent_diameter_um"] == pytest.approx(120, abs=1)
    assert result["summary"]["fragmentation"] == pytest.approx(small / both, abs=1e-4)
    # with a lower limit the small one counts
    assert measure(class_map, pixel_size_um=1.0, min_diameter_um=30)["summary"]["islet_count"] == 2


def test_purity_is_islet_over_islet_plus_exocrine_area():
    class_map = blank()
    class_map[0:100, 0:200] = 1  # 20 000 px exocrine
    islet_px = add_disk(class_map, (400, 400), 80)
    result = measure(class_map, pixel_size_um=1.0)
    assert result["summary"]["purity"] == pytest.approx(islet_px / (islet_px + 20_000), abs=1e-4)
    assert result["summary"]["exocrine_area_um2"] == pytest.approx(20_000)


def test_small_holes_are_filled_large_ones_are_not():
    class_map = blank()
    full = add_disk(class_map, (300, 300), 150)
    class_map[disk((300, 300), 5)] = 1  # pale pinhole: part of the islet
    (islet,) = measure(class_map, pixel_size_um=1.0)["islets"]
    assert islet["area_um2"] == pytest.approx(full, abs=0.5)
    void = disk((300, 300), 70)
    class_map[void] = 0  # a 140 µm void is not islet tissue (limit: 100 µm)
    (islet,) = measure(class_map, pixel_size_um=1.0)["islets"]
    assert islet["area_um2"] == pytest.approx(full - len(void[0]), abs=0.5)


def test_touching_discs_are_split_and_a_long_ellipse_is_not():
    class_map = blank(600, 900)
    add_disk(class_map, (300, 250), 100)
    add_disk(class_map, (300, 430), 85)  # overlaps by 5 px: a neck
    class_map[ellipse(100, 700, 25, 120, shape=class_map.shape)] = 2  # elongated, one islet
    result = measure(class_map, pixel_size_um=1.0)
    diameters = sorted(round(i["equivalent_diameter_um"]) for i in result["islets"])
    assert len(diameters) == 3
    assert diameters[1] == pytest.approx(168, abs=6)  # the 170 µm disc minus its share of the neck
    assert diameters[2] == pytest.approx(198, abs=6)


def test_a_lumpy_islet_stays_one():
    class_map = blank()
    add_disk(class_map, (300, 300), 100)
    add_disk(class_map, (300, 390), 30)  # a bump mostly inside the outline
    assert measure(class_map, pixel_size_um=1.0)["summary"]["islet_count"] == 1


def test_numbering_is_reading_order_and_matches_the_csv():
    class_map = blank(700, 700)
    for centre in [(500, 100), (100, 500), (100, 100), (500, 500)]:
        add_disk(class_map, centre, 60)
    result = measure(class_map, pixel_size_um=1.0)
    centres = [tuple(round(v) for v in islet["centroid_px"]) for islet in result["islets"]]
    assert centres == [(100, 100), (500, 100), (100, 500), (500, 500)]  # (x, y): top row first
    lines = islets_csv(result).splitlines()
    assert lines[0].split(",") == list(CSV_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    assert lines[1].split(",")[8] == "100-150"


def test_empty_class_map_is_zero_islets_not_an_error():
    result = measure(blank(), pixel_size_um=0.843)
    assert result["islets"] == []
    summary = result["summary"]
    assert summary["islet_count"] == 0
    assert summary["ieq_ricordi"] == summary["ieq_sphere"] == summary["ieq_ellipsoid"] == 0
    assert summary["ieq_per_islet"] == 0.0 and summary["purity"] == 0.0 and summary["fragmentation"] == 0.0
    assert sum(summary["size_classes"].values()) == 0
    assert islets_csv(result).strip() == ",".join(CSV_COLUMNS)
    json.dumps(result)


def test_islet_touching_the_image_border_is_measured():
    class_map = blank(300, 300)
    add_disk(class_map, (0, 150), 80)  # half outside
    (islet,) = measure(class_map, pixel_size_um=1.0)["islets"]
    assert islet["area_um2"] == pytest.approx(np.count_nonzero(class_map == 2))


@pytest.mark.parametrize("pixel_size", [0, -1.0, float("nan"), float("inf"), "0.8"])
def test_bad_pixel_size_is_refused_with_a_sentence(pixel_size):
    with pytest.raises(InvalidParameterError) as caught:
        measure(blank(10, 10), pixel_size_um=pixel_size)
    message = str(caught.value)
    assert message.startswith("The pixel size must be a positive number") and message.endswith(".")


def test_bad_class_map_and_min_diameter_are_refused():
    with pytest.raises(InvalidParameterError, match="2-D"):
        measure(np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.raises(InvalidParameterError, match="minimum diameter"):
        measure(blank(10, 10), min_diameter_um=-5)


def test_numpy_scalars_are_accepted_and_booleans_are_not():
    class_map = blank()
    add_disk(class_map, (300, 300), 60)
    assert measure(class_map, pixel_size_um=np.float32(1.0))["summary"]["pixel_size_um"] == 1.0
    with pytest.raises(InvalidParameterError):
        measure(class_map, pixel_size_um=True)


def test_job_summary_adds_counts_and_weights_ratios_by_area():
    first, second = blank(), blank()
    islet_a = add_disk(first, (300, 300), 60)
    first[0:50, 0:100] = 1  # 5 000 px exocrine
    fragment = add_disk(second, (50, 50), 10)  # 20 µm: a fragment
    islet_b = add_disk(second, (300, 300), 110) - fragment
    results = [measure(first, pixel_size_um=1.0), measure(second, pixel_size_um=1.0)]
    summary = summarise_images(results)
    assert summary["image_count"] == 2
    assert summary["islet_count"] == 2
    assert summary["ieq_ricordi"] == pytest.approx(0.667 + 3.50)
    assert summary["ieq_per_islet"] == pytest.approx((0.667 + 3.50) / 2, abs=1e-4)
    assert summary["ieq_sphere"] == pytest.approx(sum(r["summary"]["ieq_sphere"] for r in results), abs=1e-3)
    total_islet = islet_a + islet_b + fragment
    assert summary["purity"] == pytest.approx(total_islet / (total_islet + 5000), abs=1e-4)
    assert summary["fragmentation"] == pytest.approx(fragment / total_islet, abs=1e-3)
    assert summary["size_classes"]["100-150"] == 1 and summary["size_classes"]["200-250"] == 1
    assert summary["pixel_size_um"] == 1.0 and summary["model"] == "classical"
    mixed = summarise_images([results[0], measure(second, pixel_size_um=0.5)])
    assert mixed["pixel_size_um"] is None
    assert summarise_images([])["islet_count"] == 0


def test_polyline_simplification_keeps_corners_and_drops_collinear_points():
    from services.islets.measure import simplify_polyline

    square = np.array([[0, 0], [0, 5], [0, 10], [5, 10.4], [10, 10], [10, 0], [5, 0.2], [0, 0]], dtype=float)
    simplified = simplify_polyline(square, tolerance=1.0)
    assert simplified.tolist() == [[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]
    # with a tolerance below the 0.4 bump, the bump stays
    assert [5, 10.4] in simplify_polyline(square, tolerance=0.3).tolist()
    assert len(simplify_polyline(square[:2], tolerance=1.0)) == 2
