"""The IEQ formulas against values computed by hand from SPEC.md §1."""

import math

import pytest

from services.islets import (
    IEQ_VOLUME_UM3,
    SIZE_CLASS_NAMES,
    ellipsoid_ieq,
    equivalent_diameter,
    ricordi_ieq,
    size_class,
    sphere_ieq,
)


def test_ieq_volume_is_the_150_um_sphere():
    # π/6 · 150³ = 1 767 145.87 µm³ -> 1 767 146 as in the spec
    assert IEQ_VOLUME_UM3 == 1_767_146.0
    assert math.pi / 6 * 150**3 == pytest.approx(IEQ_VOLUME_UM3, abs=0.2)


@pytest.mark.parametrize(
    ("diameter", "factor"),
    [
        (49.99, 0.0),
        (50.0, 0.167),
        (99.99, 0.167),
        (100.0, 0.667),
        (149.99, 0.667),
        (150.0, 1.70),
        (199.0, 1.70),
        (200.0, 3.50),
        (250.0, 6.30),
        (300.0, 10.4),
        (349.99, 10.4),
        (350.0, 15.8),
        (900.0, 15.8),
        (0.0, 0.0),
    ],
)
def test_ricordi_classes_and_factors(diameter, factor):
    assert ricordi_ieq(diameter) == factor


def test_size_class_names_follow_the_ricordi_bounds():
    assert SIZE_CLASS_NAMES == ("50-100", "100-150", "150-200", "200-250", "250-300", "300-350", ">=350")
    assert size_class(49.0) is None
    assert size_class(50.0) == "50-100"
    assert size_class(150.0) == "150-200"
    assert size_class(351.0) == ">=350"


def test_sphere_method_hand_computed():
    # d = 150 µm is 1 IEQ by definition; volume scales with d³: 75 µm -> 1/8, 300 µm -> 8.
    assert sphere_ieq(150.0) == pytest.approx(1.0, rel=1e-6)
    assert sphere_ieq(75.0) == pytest.approx(0.125, rel=1e-6)
    assert sphere_ieq(300.0) == pytest.approx(8.0, rel=1e-6)
    # 100 µm: π/6·10⁶ = 523 598.8 µm³ / 1 767 146 = 0.296296
    assert sphere_ieq(100.0) == pytest.approx(0.296296, rel=1e-5)


def test_ellipsoid_method_hand_computed():
    # V = π/6·a·b²: a sphere when a = b; doubling a doubles V; halving b quarters it.
    assert ellipsoid_ieq(150.0, 150.0) == pytest.approx(1.0, rel=1e-6)
    assert ellipsoid_ieq(300.0, 150.0) == pytest.approx(2.0, rel=1e-6)
    assert ellipsoid_ieq(150.0, 75.0) == pytest.approx(0.25, rel=1e-6)
    # 200×100 µm: π/6·200·100² = 1 047 197.6 µm³ -> 0.592593 IEQ
    assert ellipsoid_ieq(200.0, 100.0) == pytest.approx(0.592593, rel=1e-5)


def test_equivalent_diameter():
    assert equivalent_diameter(math.pi * 100.0**2) == pytest.approx(200.0)
    assert equivalent_diameter(0.0) == 0.0
