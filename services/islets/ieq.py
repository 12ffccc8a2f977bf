"""Islet equivalent (IEQ) formulas: the reference definitions of SPEC.md §1, in one place.

One IEQ is the volume of a sphere of 150 µm diameter. Three ways to turn a measured islet into
IEQ are reported side by side, because labs compare against different ones.
"""

from __future__ import annotations

import math

IEQ_DIAMETER_UM = 150.0
IEQ_VOLUME_UM3 = 1_767_146.0  # π/6·150³ = 1 767 145.87 µm³, the rounded figure the literature uses

# Ricordi diameter classes (lower bound inclusive, upper bound exclusive) and their factors.
RICORDI_CLASSES: tuple[tuple[str, float, float, float], ...] = (
    ("50-100", 50.0, 100.0, 0.167),
    ("100-150", 100.0, 150.0, 0.667),
    ("150-200", 150.0, 200.0, 1.70),
    ("200-250", 200.0, 250.0, 3.50),
    ("250-300", 250.0, 300.0, 6.30),
    ("300-350", 300.0, 350.0, 10.4),
    (">=350", 350.0, math.inf, 15.8),
)
SIZE_CLASS_NAMES: tuple[str, ...] = tuple(name for name, *_ in RICORDI_CLASSES)


def equivalent_diameter(area: float) -> float:
    """Diameter of the circle with this area: d = 2·√(area/π) (any unit, consistently)."""
    return 2.0 * math.sqrt(max(area, 0.0) / math.pi)


def size_class(d_um: float) -> str | None:
    """Ricordi class name for a diameter, or None below 50 µm."""
    for name, low, high, _factor in RICORDI_CLASSES:
        if low <= d_um < high:
            return name
    return None


def ricordi_ieq(d_um: float) -> float:
    """IEQ of one islet by the Ricordi class method (0 below 50 µm)."""
    for _name, low, high, factor in RICORDI_CLASSES:
        if low <= d_um < high:
            return factor
    return 0.0


def sphere_ieq(d_um: float) -> float:
    """IEQ of a sphere of diameter d: (π/6·d³) / IEQ volume."""
    return math.pi / 6.0 * d_um**3 / IEQ_VOLUME_UM3


def ellipsoid_ieq(major_um: float, minor_um: float) -> float:
    """IEQ of the ellipsoid of revolution about the major axis: (π/6·a·b²) / IEQ volume."""
    return math.pi / 6.0 * major_um * minor_um**2 / IEQ_VOLUME_UM3
