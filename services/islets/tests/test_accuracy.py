"""The classical model end to end against synthetic samples with known ground truth.

Tolerances (stated once, used below):
- separated islets: islet count exact;
- total IEQ within 5 % of the truth for each method (sphere, ellipsoid, Ricordi). Diameters are
  chosen at least 5 % away from the Ricordi class bounds, so the class method is not judged on
  coin flips at 100/150/200 µm;
- touching pairs: at least 90 % split into their two islets;
- purity within 0.05 (absolute) of the rendered truth.
"""

import numpy as np
import pytest

from services.islets import analyse_image, make_dtz_image, measure
from services.islets.classical import ClassicalParameters, segment
from services.islets.synthetic import FAMILIES, family_arguments

IEQ_TOLERANCE = 0.05
PURITY_TOLERANCE = 0.05
SPLIT_RATE = 0.90
HARD_DIAMETERS = (60, 85, 125, 175, 225, 275, 325, 400)

CASES = {
    "default-seed0": {"seed": 0},
    "default-seed1": {"seed": 1},
    "default-seed2": {"seed": 2},
    "noisy-uneven-all-classes": {"seed": 3, "diameters_um": HARD_DIAMETERS, "noise": 8, "uneven_illumination": 0.5},
    "elliptic": {"seed": 4, "ellipticity": 0.4, "uneven_illumination": 0.3, "exocrine_clumps": 6},
    "elliptic-strong": {"seed": 5, "ellipticity": 0.6, "diameters_um": (70, 130, 180, 230)},
}


@pytest.fixture(scope="module", params=sorted(CASES), ids=sorted(CASES))
def analysed(request):
    rgb, truth = make_dtz_image(**CASES[request.param])
    return rgb, truth, analyse_image(rgb)


def test_separated_islets_are_counted_exactly(analysed):
    _rgb, truth, result = analysed
    assert result["summary"]["islet_count"] == truth["islet_count"]


@pytest.mark.parametrize("method", ["ieq_sphere", "ieq_ellipsoid", "ieq_ricordi"])
def test_total_ieq_within_5_percent(analysed, method):
    _rgb, truth, result = analysed
    assert result["summary"][method] == pytest.approx(truth[method], rel=IEQ_TOLERANCE)


def test_each_islet_diameter_and_position(analysed):
    _rgb, truth, result = analysed
    for expected in truth["islets"]:
        x, y = expected["center_px"]
        nearest = min(result["islets"], key=lambda i: np.hypot(i["centroid_px"][0] - x, i["centroid_px"][1] - y))
        assert np.hypot(nearest["centroid_px"][0] - x, nearest["centroid_px"][1] - y) < 3.0  # pixels
        assert nearest["equivalent_diameter_um"] == pytest.approx(expected["diameter_um"], rel=0.03)
        assert nearest["major_axis_um"] == pytest.approx(expected["major_um"], rel=0.03)
        assert nearest["minor_axis_um"] == pytest.approx(expected["minor_um"], rel=0.03)


def test_purity(analysed):
    _rgb, truth, result = analysed
    assert result["summary"]["purity"] == pytest.approx(truth["purity"], abs=PURITY_TOLERANCE)


def test_touching_pairs_are_split():
    split = total = 0
    for seed in range(4):
        rgb, truth = make_dtz_image(seed=seed, diameters_um=(), touching_pairs=5, noise=6)
        islets = analyse_image(rgb)["islets"]
        for pair in truth["pairs"]:
            total += 1
            found = 0
            for index in pair:
                expected = truth["islets"][index]
                x, y = expected["center_px"]
                radius_px = expected["diameter_um"] / 0.843 / 2
                # one detected islet centred on each of the two (within a quarter radius)
                found += any(np.hypot(i["centroid_px"][0] - x, i["centroid_px"][1] - y) < radius_px / 4 for i in islets)
            split += found == 2
    assert total == 20
    assert split / total >= SPLIT_RATE


def test_fragments_under_50_um_are_not_islets_but_count_as_fragmentation():
    rgb, truth = make_dtz_image(seed=6, diameters_um=(30, 40, 45, 170), exocrine_clumps=0)
    summary = analyse_image(rgb)["summary"]
    assert summary["islet_count"] == truth["islet_count"] == 1
    areas = [d**2 for d in (30, 40, 45)]
    expected = sum(areas) / (sum(areas) + 170**2)
    assert summary["fragmentation"] == pytest.approx(expected, abs=0.01)
    assert summary["ieq_ricordi"] == 1.70


def test_empty_sample_is_zero_islets():
    rgb, truth = make_dtz_image(seed=7, diameters_um=(), exocrine_clumps=0, size=(400, 500))
    result = analyse_image(rgb)
    assert truth["islet_count"] == 0
    assert result["islets"] == [] and result["summary"]["islet_count"] == 0
    assert result["summary"]["purity"] == 0.0


def test_exocrine_only_is_zero_islets_and_zero_purity():
    rgb, _truth = make_dtz_image(seed=8, diameters_um=(), exocrine_clumps=5, size=(600, 600))
    summary = analyse_image(rgb)["summary"]
    assert summary["islet_count"] == 0 and summary["purity"] == 0.0
    assert summary["exocrine_area_um2"] > 5000


def test_strong_uneven_illumination_does_not_turn_background_into_tissue():
    rgb, truth = make_dtz_image(seed=9, uneven_illumination=0.6, exocrine_clumps=0)
    classes = segment(rgb)
    # all tissue is islet here; background misread as exocrine would show up as exocrine pixels
    assert np.count_nonzero(classes == 1) < 0.002 * classes.size
    assert analyse_image(rgb)["summary"]["ieq_sphere"] == pytest.approx(truth["ieq_sphere"], rel=IEQ_TOLERANCE)


def test_tiles_give_the_same_class_map_as_one_piece():
    rgb, _truth = make_dtz_image(seed=3, diameters_um=HARD_DIAMETERS, noise=8, uneven_illumination=0.5)
    whole = segment(rgb, ClassicalParameters(tile_px=4096))
    tiled = segment(rgb, ClassicalParameters(tile_px=300))
    assert np.count_nonzero(whole != tiled) <= 1e-4 * whole.size


def test_holes_are_filled_and_specks_ignored():
    # pale spots of 8-20 µm inside every islet, 60 red specks of 2-8 µm over the background
    rgb, truth = make_dtz_image(seed=12, holes=2, specks=60, noise=6)
    summary = analyse_image(rgb)["summary"]
    assert summary["islet_count"] == truth["islet_count"]
    for method in ("ieq_sphere", "ieq_ellipsoid", "ieq_ricordi"):
        assert summary[method] == pytest.approx(truth[method], rel=IEQ_TOLERANCE)
    assert summary["fragmentation"] < 0.005  # specks are noise, not fragments


def test_black_corners_outside_a_round_field_of_view_are_background():
    rgb, truth = make_dtz_image(seed=2, exocrine_clumps=2)
    plain = analyse_image(rgb)["summary"]
    # the sample inside a round field of view, black (sensor noise) around it, as microscope
    # cameras often record
    height, width = rgb.shape[:2]
    radius = int(np.hypot(height, width) / 2) + 10
    side = 2 * radius - 60
    canvas = np.random.default_rng(0).normal(8, 3, (side, side, 3)).clip(0, 255).astype(np.uint8)
    ys, xs = np.mgrid[:side, :side]
    canvas[np.hypot(ys - side / 2, xs - side / 2) < radius] = (232, 226, 214)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = rgb
    summary = analyse_image(canvas)["summary"]
    assert summary["islet_count"] == truth["islet_count"]
    assert summary["ieq_sphere"] == pytest.approx(truth["ieq_sphere"], rel=IEQ_TOLERANCE)
    # the black corners are neither exocrine nor islet: same tissue as without them (within 5 %)
    assert summary["exocrine_area_um2"] == pytest.approx(plain["exocrine_area_um2"], rel=0.05)
    assert summary["purity"] == pytest.approx(plain["purity"], abs=0.01)


# The harder families (issue 17): clusters of 2-5 touching islets (necks 15-40 % of the smaller
# diameter, compact clumps enclosing a pocket included) must be split; lobed islets and
# elongated islets (axis ratio up to 1:2) must not. Two images per family: one fully stained,
# one weakly stained and noisier. Every count exact, every IEQ method within 5 %.
FAMILY_IMAGES = [(family, index) for family in FAMILIES for index in range(2)]


@pytest.fixture(scope="module", params=FAMILY_IMAGES, ids=[f"{family}-{index}" for family, index in FAMILY_IMAGES])
def family_image(request):
    family, index = request.param
    rgb, truth = make_dtz_image(**family_arguments(family, index))
    return truth, analyse_image(rgb)


def test_family_count_is_exact(family_image):
    truth, result = family_image
    assert result["summary"]["islet_count"] == truth["islet_count"]


@pytest.mark.parametrize("method", ["ieq_sphere", "ieq_ellipsoid", "ieq_ricordi"])
def test_family_ieq_within_5_percent(family_image, method):
    truth, result = family_image
    assert result["summary"][method] == pytest.approx(truth[method], rel=IEQ_TOLERANCE)


def test_family_images_raise_no_quality_flag(family_image):
    _truth, result = family_image
    assert result["quality_flags"] == []


def test_each_cluster_islet_is_found_at_its_place():
    rgb, truth = make_dtz_image(**family_arguments("cluster-5", 0))
    islets = analyse_image(rgb)["islets"]
    for index in (i for cluster in truth["clusters"] for i in cluster):
        expected = truth["islets"][index]
        x, y = expected["center_px"]
        nearest = min(islets, key=lambda i: np.hypot(i["centroid_px"][0] - x, i["centroid_px"][1] - y))
        assert np.hypot(nearest["centroid_px"][0] - x, nearest["centroid_px"][1] - y) < 0.25 * expected["diameter_um"]
        assert nearest["equivalent_diameter_um"] == pytest.approx(expected["diameter_um"], rel=0.05)


def test_clusters_at_a_coarse_pixel_size_are_split():
    # 1.5 µm/px (a low-magnification objective): a 50 µm islet is 33 px across
    rgb, truth = make_dtz_image(seed=17, pixel_size_um=1.5, diameters_um=(80, 130, 180), clusters=(3, 3, 4))
    summary = analyse_image(rgb, pixel_size_um=1.5)["summary"]
    assert summary["islet_count"] == truth["islet_count"] == 13
    assert summary["ieq_sphere"] == pytest.approx(truth["ieq_sphere"], rel=IEQ_TOLERANCE)


def test_the_pocket_between_touching_islets_is_not_islet_but_a_hole_inside_one_is():
    class_map = np.zeros((300, 400), dtype=np.uint8)
    ys, xs = np.mgrid[:300, :400]
    for cx, cy in ((100, 100), (194, 100), (147, 181)):  # three discs of r = 50 px, necks 34 %
        class_map[np.hypot(xs - cx, ys - cy) < 50] = 2
    pocket = np.hypot(xs - 147, ys - 127) < 3
    assert not class_map[pocket].any()
    class_map[np.hypot(xs - 320, ys - 150) < 50] = 2  # a separate islet...
    spot = np.hypot(xs - 330, ys - 145) < 8
    class_map[spot] = 0  # ...with a pale spot inside
    result = measure(class_map, pixel_size_um=1.0)
    assert result["summary"]["islet_count"] == 4
    # the spot is part of its islet; the pocket (and the notches around it) are not islet
    expected = np.count_nonzero(class_map == 2) + np.count_nonzero(spot)
    assert result["summary"]["islet_area_um2"] == pytest.approx(expected)
