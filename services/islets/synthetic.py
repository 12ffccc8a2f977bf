"""Synthetic dithizone-stained (DTZ) sample images with known ground truth.

Used by the tests (accuracy against known islets), by the monitor's end-to-end probe and by the
demo. Islets are crimson ellipses of given equivalent diameters with a soft one-pixel edge, on a
light background, beside pale brownish exocrine clumps; optional touching pairs, sensor noise and
uneven illumination make the job harder in the ways real photographs do.

The harder families of the accuracy bench and tests are here too: clusters of 2-5 islets
touching through necks of a given share of the smaller diameter (must be split), lobed single
islets and elongated single islets (must not be), and weak staining.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from services.islets.ieq import ellipsoid_ieq, ricordi_ieq, sphere_ieq

BACKGROUND_RGB = (232.0, 226.0, 214.0)
EXOCRINE_RGB = (206.0, 178.0, 142.0)
# DTZ islets range from bright red to dark crimson; each islet draws its own shade in this box.
ISLET_RGB_LOW = (150.0, 22.0, 38.0)
ISLET_RGB_HIGH = (192.0, 52.0, 72.0)
GAP_UM = 30.0  # free space kept between separate islets so "separated" really means separated
PAIR_DIAMETER_RANGE_UM = (70.0, 180.0)
CLUMP_REACH_UM = 110.0  # an exocrine clump extends about this far from its centre
HOLE_DIAMETER_RANGE_UM = (8.0, 20.0)
SPECK_DIAMETER_RANGE_UM = (2.0, 8.0)
TEXTURE_STRENGTH = 0.2  # times a σ=2 px smoothed unit noise (std ~0.14): about ±3 %
CLUSTER_DIAMETER_RANGE_UM = (60.0, 260.0)
NECK_RANGE = (0.15, 0.40)  # neck width / smaller islet's diameter, for clusters
LOBE_RADIUS_RANGE = (0.30, 0.55)  # lobe radius / main body radius
LOBE_OUTSIDE_RANGE = (-0.2, 0.5)  # lobe centre beyond the body's edge, in lobe radii (neck >= 0.85 of the lobe)
ELONGATED_RATIO_RANGE = (0.5, 0.7)  # minor/major axis of elongated single islets
# Ricordi class bounds: drawn diameters keep this relative distance from them, so the class
# method is not judged on coin flips at a class edge.
RICORDI_BOUNDS_UM = (50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0)
CLASS_MARGIN = 0.06


@dataclass
class _Ellipse:
    """One ellipse in pixel units: centre, semi-axes, rotation (radians)."""

    cx: float
    cy: float
    semi_major: float
    semi_minor: float
    angle: float

    def radius_towards(self, direction: float) -> float:
        """Distance from the centre to the edge along `direction` (radians, image axes)."""
        phi = direction - self.angle
        a, b = self.semi_major, self.semi_minor
        return a * b / math.hypot(b * math.cos(phi), a * math.sin(phi))


@dataclass
class _Unit:
    """What is placed as a whole: one islet, a touching pair or cluster, or a lobed islet
    (ellipse offsets from the unit centre). `islet_of` says which islet of the unit each ellipse
    belongs to (a lobed islet is several ellipses); None means one islet per ellipse."""

    ellipses: list[_Ellipse]
    radius: float
    islet_of: list[int] | None = None
    kind: str = "single"

    def islets(self) -> list[list[_Ellipse]]:
        owners = self.islet_of if self.islet_of is not None else list(range(len(self.ellipses)))
        grouped: dict[int, list[_Ellipse]] = {}
        for owner, ellipse in zip(owners, self.ellipses, strict=True):
            grouped.setdefault(owner, []).append(ellipse)
        return [grouped[key] for key in sorted(grouped)]


def safe_diameter(rng: np.random.Generator, low: float, high: float) -> float:
    """A diameter (µm) drawn from low..high, at least CLASS_MARGIN away from every Ricordi bound."""
    for _attempt in range(1000):
        d = float(rng.uniform(low, high))
        if all(abs(d / bound - 1.0) > CLASS_MARGIN for bound in RICORDI_BOUNDS_UM):
            return d
    raise ValueError(f"No diameter between {low} and {high} µm keeps clear of the Ricordi class bounds.")


def _recentred(ellipses: list[_Ellipse], kind: str, islet_of: list[int] | None = None) -> _Unit:
    """A unit whose centre is the mean of its ellipse centres, radius enclosing them all."""
    mean_x = sum(e.cx for e in ellipses) / len(ellipses)
    mean_y = sum(e.cy for e in ellipses) / len(ellipses)
    for ellipse in ellipses:
        ellipse.cx -= mean_x
        ellipse.cy -= mean_y
    radius = max(math.hypot(e.cx, e.cy) + e.semi_major for e in ellipses)
    return _Unit(ellipses, radius, islet_of, kind)


def _neck_share(first: _Ellipse, second: _Ellipse) -> float:
    """Width of the neck where two ellipses overlap as a share of the smaller one's width there
    (0 when they do not touch), treating each as the circle of its radius towards the other
    (exact for circles)."""
    distance = math.hypot(second.cx - first.cx, second.cy - first.cy)
    direction = math.atan2(second.cy - first.cy, second.cx - first.cx)
    r1, r2 = first.radius_towards(direction), second.radius_towards(direction + math.pi)
    if distance >= r1 + r2:
        return 0.0
    if distance <= abs(r1 - r2):
        return 1.0  # one inside the other
    along = (distance**2 + r1**2 - r2**2) / (2 * distance)
    if not 0 < along < distance:
        return 1.0  # the smaller one's centre lies inside the larger: mostly covered, not touching
    return math.sqrt(max(r1**2 - along**2, 0.0)) / min(r1, r2)


def _centre_distance(r_first: float, r_second: float, share: float) -> float:
    """Centre distance at which two circles overlap in a neck of `share` times the smaller
    one's diameter."""
    half = share * min(r_first, r_second)
    return math.sqrt(r_first**2 - half**2) + math.sqrt(r_second**2 - half**2)


def _attach_to_one(ellipses: list[_Ellipse], islet: _Ellipse, share: float, rng: np.random.Generator) -> None:
    """Put `islet` against a random earlier islet, through a neck of `share`."""
    parent = ellipses[int(rng.integers(len(ellipses)))]
    direction = rng.uniform(0, 2 * math.pi)
    r_parent, r_new = parent.radius_towards(direction), islet.radius_towards(direction + math.pi)
    distance = _centre_distance(r_parent, r_new, share)
    islet.cx = parent.cx + distance * math.cos(direction)
    islet.cy = parent.cy + distance * math.sin(direction)


def _attach_to_two(
    ellipses: list[_Ellipse], islet: _Ellipse, neck_range: tuple[float, float], rng: np.random.Generator
) -> bool:
    """Put `islet` into the notch of two earlier islets, touching both (a compact clump whose
    middle encloses a small pocket); False when the two chosen are too far apart."""
    if len(ellipses) < 2:
        return False
    first, second = (ellipses[int(i)] for i in rng.choice(len(ellipses), 2, replace=False))
    radius = math.sqrt(islet.semi_major * islet.semi_minor)
    r_first = math.sqrt(first.semi_major * first.semi_minor)
    r_second = math.sqrt(second.semi_major * second.semi_minor)
    to_first = _centre_distance(r_first, radius, rng.uniform(*neck_range))
    to_second = _centre_distance(r_second, radius, rng.uniform(*neck_range))
    base = math.hypot(second.cx - first.cx, second.cy - first.cy)
    if base == 0 or base >= to_first + to_second or base <= abs(to_first - to_second):
        return False
    along = (base**2 + to_first**2 - to_second**2) / (2 * base)
    across = math.sqrt(max(to_first**2 - along**2, 0.0)) * (1 if rng.uniform() < 0.5 else -1)
    ux, uy = (second.cx - first.cx) / base, (second.cy - first.cy) / base
    islet.cx = first.cx + along * ux - across * uy
    islet.cy = first.cy + along * uy + across * ux
    return True


def _cluster(size: int, neck_range: tuple[float, float], pixel_size_um: float, rng: np.random.Generator) -> _Unit:
    """`size` islets, each new one touching one or (half the time) two earlier ones through necks
    of a share of the smaller diameter drawn from `neck_range`; no contact is wider than the
    largest neck and every new islet touches at least one earlier one."""
    low, high = CLUSTER_DIAMETER_RANGE_UM
    for _attempt in range(200):
        ellipses = [_single(safe_diameter(rng, low, high), rng.uniform(0, 0.25), pixel_size_um, rng).ellipses[0]]
        while len(ellipses) < size:
            for _try in range(200):
                islet = _single(safe_diameter(rng, low, high), rng.uniform(0, 0.25), pixel_size_um, rng).ellipses[0]
                if not (rng.uniform() < 0.5 and _attach_to_two(ellipses, islet, neck_range, rng)):
                    _attach_to_one(ellipses, islet, rng.uniform(*neck_range), rng)
                shares = [_neck_share(other, islet) for other in ellipses]
                if max(shares) <= neck_range[1] + 0.02 and max(shares) >= neck_range[0] - 0.02:
                    ellipses.append(islet)
                    break
            else:
                break
        if len(ellipses) == size:
            return _recentred(ellipses, "cluster")
    raise ValueError(f"Could not build a cluster of {size} islets.")


def _lobed(pixel_size_um: float, rng: np.random.Generator) -> _Unit:
    """One islet with 1-3 lobes: small discs joined to the body through wide necks."""
    body = _single(safe_diameter(rng, 110.0, 260.0), rng.uniform(0, 0.2), pixel_size_um, rng).ellipses[0]
    parts = [body]
    body_radius = math.sqrt(body.semi_major * body.semi_minor)
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(*LOBE_RADIUS_RANGE) * body_radius
        direction = rng.uniform(0, 2 * math.pi)
        distance = body.radius_towards(direction) + rng.uniform(*LOBE_OUTSIDE_RANGE) * radius
        parts.append(_Ellipse(distance * math.cos(direction), distance * math.sin(direction), radius, radius, 0.0))
    return _recentred(parts, "lobed", [0] * len(parts))


def _elongated(pixel_size_um: float, rng: np.random.Generator) -> _Unit:
    """One elliptic islet with minor/major axis 0.5-0.7 (up to 1:2)."""
    ratio = rng.uniform(*ELONGATED_RATIO_RANGE)
    unit = _single(safe_diameter(rng, 70.0, 260.0), 1.0 - ratio, pixel_size_um, rng)
    unit.kind = "elongated"
    return unit


def _islet_axes(d_um: float, ellipticity: float) -> tuple[float, float]:
    """Major and minor axis (µm) of an ellipse with equivalent diameter d and minor/major = 1 - e."""
    ratio = 1.0 - min(max(ellipticity, 0.0), 0.9)
    return d_um / math.sqrt(ratio), d_um * math.sqrt(ratio)


def _single(d_um: float, ellipticity: float, pixel_size_um: float, rng: np.random.Generator) -> _Unit:
    major, minor = _islet_axes(d_um, ellipticity)
    ellipse = _Ellipse(0.0, 0.0, major / 2 / pixel_size_um, minor / 2 / pixel_size_um, rng.uniform(0, math.pi))
    return _Unit([ellipse], ellipse.semi_major)


def _pair(ellipticity: float, pixel_size_um: float, rng: np.random.Generator) -> _Unit:
    """Two islets that touch: their outlines overlap by 5-20 % of the smaller radius, so the
    mask joins them through a neck that a watershed must cut."""
    first, second = (
        _single(d, ellipticity, pixel_size_um, rng).ellipses[0] for d in rng.uniform(*PAIR_DIAMETER_RANGE_UM, 2)
    )
    direction = rng.uniform(0, 2 * math.pi)
    reach_first = first.radius_towards(direction)
    reach_second = second.radius_towards(direction + math.pi)
    overlap = rng.uniform(0.05, 0.20) * min(reach_first, reach_second)
    distance = reach_first + reach_second - overlap
    half = distance / 2
    first.cx, first.cy = -half * math.cos(direction), -half * math.sin(direction)
    second.cx, second.cy = half * math.cos(direction), half * math.sin(direction)
    return _Unit([first, second], half + max(first.semi_major, second.semi_major), kind="pair")


def _place(
    units: list[_Unit], height: int, width: int, gap: float, rng: np.random.Generator
) -> list[tuple[float, float]] | None:
    """Random non-overlapping centres (largest first); None when they do not fit."""
    order = sorted(range(len(units)), key=lambda i: -units[i].radius)
    centres: dict[int, tuple[float, float]] = {}
    for index in order:
        radius = units[index].radius
        low_x, high_x = radius + gap, width - radius - gap
        low_y, high_y = radius + gap, height - radius - gap
        if low_x > high_x or low_y > high_y:
            return None
        for _attempt in range(2000):
            x, y = rng.uniform(low_x, high_x), rng.uniform(low_y, high_y)
            if all(math.hypot(x - px, y - py) > radius + units[j].radius + gap for j, (px, py) in centres.items()):
                centres[index] = (x, y)
                break
        else:
            return None
    return [centres[i] for i in range(len(units))]


def _ellipse_alpha(ellipse: _Ellipse, height: int, width: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Coverage (0..1, soft one-pixel edge) of an ellipse over its bounding box."""
    reach = ellipse.semi_major + 2
    y0, y1 = max(int(ellipse.cy - reach), 0), min(int(ellipse.cy + reach) + 2, height)
    x0, x1 = max(int(ellipse.cx - reach), 0), min(int(ellipse.cx + reach) + 2, width)
    if y0 >= y1 or x0 >= x1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = xs - ellipse.cx, ys - ellipse.cy
    cos, sin = math.cos(ellipse.angle), math.sin(ellipse.angle)
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    a, b = ellipse.semi_major, ellipse.semi_minor
    level = np.sqrt((along / a) ** 2 + (across / b) ** 2)
    gradient = np.hypot(along / a**2, across / b**2) / np.maximum(level, 1e-9)
    # Signed distance to the outline to first order: (f - 1) / |∇f|.
    signed = (level - 1.0) / np.maximum(gradient, 1e-9)
    alpha = np.clip(0.5 - signed, 0.0, 1.0)
    alpha[level < 0.5] = 1.0
    return (slice(y0, y1), slice(x0, x1)), alpha


def _paint(image: np.ndarray, coverage: np.ndarray, ellipse: _Ellipse, colour: np.ndarray, texture: np.ndarray) -> None:
    placed = _ellipse_alpha(ellipse, image.shape[0], image.shape[1])
    if placed is None:
        return
    window, alpha = placed
    shade = colour[None, None, :] * texture[window][:, :, None]
    image[window] = image[window] * (1 - alpha[:, :, None]) + shade * alpha[:, :, None]
    coverage[window] = np.maximum(coverage[window], alpha)


def _exocrine_clump(centre: tuple[float, float], pixel_size_um: float, rng: np.random.Generator) -> list[_Ellipse]:
    """A clump of acinar tissue: a few overlapping small ellipses (irregular outline)."""
    parts = []
    for _ in range(int(rng.integers(3, 8))):
        offset = rng.uniform(0, 60.0) / pixel_size_um
        direction = rng.uniform(0, 2 * math.pi)
        major = rng.uniform(30.0, 80.0) / pixel_size_um
        parts.append(
            _Ellipse(
                centre[0] + offset * math.cos(direction),
                centre[1] + offset * math.sin(direction),
                major / 2,
                major / 2 * rng.uniform(0.5, 1.0),
                rng.uniform(0, math.pi),
            )
        )
    return parts


def _illumination(height: int, width: int, strength: float) -> np.ndarray:
    """Multiplicative light field: a corner-to-corner ramp plus vignetting, 1 - strength at worst."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    ramp = 0.5 * (xs + ys)
    vignette = ((xs - 0.5) ** 2 + (ys - 0.5) ** 2) * 2.0
    return (1.0 - strength * (0.7 * ramp + 0.3 * vignette)).astype(np.float32)


def _layout(
    units: list[_Unit], size: tuple[int, int] | None, gap: float, rng: np.random.Generator
) -> tuple[int, int, list[tuple[float, float]]]:
    """Image size and unit centres: in the given size, or in the smallest square (grown by 15 %
    steps from about 2.5x the units' footprint) where they fit."""
    if size is not None:
        height, width = int(size[0]), int(size[1])
        centres = _place(units, height, width, gap, rng) if units else []
        if centres is None:
            raise ValueError(f"The islets do not fit into {height}×{width} pixels; give a larger size.")
        return height, width, centres
    footprint = sum((2 * unit.radius + gap) ** 2 for unit in units)
    side = max(math.sqrt(footprint * 2.5), max((2 * u.radius + 2 * gap for u in units), default=0), 256.0)
    while True:
        height = width = int(math.ceil(side))
        centres = _place(units, height, width, gap, rng)
        if centres is not None:
            return height, width, centres
        side *= 1.15


def _clear_of_units(x: float, y: float, units: list[_Unit], centres: list[tuple[float, float]], margin: float) -> bool:
    return all(math.hypot(x - cx, y - cy) > unit.radius + margin for unit, (cx, cy) in zip(units, centres, strict=True))


def _paint_exocrine(
    image: np.ndarray,
    cover: np.ndarray,
    texture: np.ndarray,
    count: int,
    clear_of: tuple,
    pixel_size_um: float,
    rng: np.random.Generator,
) -> None:
    """Exocrine clumps where no islet is, so every islet's outline is its own."""
    height, width = cover.shape
    colour = np.asarray(EXOCRINE_RGB, dtype=np.float32)
    for _ in range(count):
        for _attempt in range(200):
            x, y = rng.uniform(0, width), rng.uniform(0, height)
            if _clear_of_units(x, y, *clear_of, margin=CLUMP_REACH_UM / pixel_size_um):
                for part in _exocrine_clump((x, y), pixel_size_um, rng):
                    _paint(image, cover, part, colour, texture)
                break


def _union_geometry(parts: list[_Ellipse], pixel_size_um: float) -> dict:
    """Diameter and ellipse axes (µm) of a union of ellipses, from its rendering at 4× the pixel
    resolution (second moments, as an ellipse fit does)."""
    scale = 4.0
    reach = max(math.hypot(p.cx, p.cy) + p.semi_major for p in parts) + 2
    side = int(math.ceil(2 * reach * scale)) + 2
    cover = np.zeros((side, side), dtype=np.float32)
    for part in parts:
        scaled = _Ellipse(
            (part.cx + reach) * scale,
            (part.cy + reach) * scale,
            part.semi_major * scale,
            part.semi_minor * scale,
            part.angle,
        )
        placed = _ellipse_alpha(scaled, side, side)
        if placed is not None:
            window, alpha = placed
            cover[window] = np.maximum(cover[window], alpha)
    ys, xs = np.nonzero(cover >= 0.5)
    area_px = len(xs) / scale**2
    covariance = np.cov(np.stack([xs, ys]).astype(np.float64)) / scale**2
    eigen = np.sort(np.linalg.eigvalsh(covariance))[::-1]
    major, minor = (4 * math.sqrt(max(value, 0.0)) * pixel_size_um for value in eigen)
    return {
        "diameter_um": 2 * math.sqrt(area_px / math.pi) * pixel_size_um,
        "major_um": float(major),
        "minor_um": float(minor),
    }


def _islet_record(parts: list[_Ellipse], cx: float, cy: float, pixel_size_um: float) -> dict:
    """Ground truth of one islet (one ellipse, or the union of a lobed islet's parts)."""
    if len(parts) == 1:
        major_um, minor_um = 2 * parts[0].semi_major * pixel_size_um, 2 * parts[0].semi_minor * pixel_size_um
        geometry = {"diameter_um": math.sqrt(major_um * minor_um), "major_um": major_um, "minor_um": minor_um}
        centre = [cx + parts[0].cx, cy + parts[0].cy]
    else:
        geometry = _union_geometry(parts, pixel_size_um)
        weights = [p.semi_major * p.semi_minor for p in parts]  # approximate: overlaps counted twice
        centre = [
            cx + sum(w * p.cx for w, p in zip(weights, parts, strict=True)) / sum(weights),
            cy + sum(w * p.cy for w, p in zip(weights, parts, strict=True)) / sum(weights),
        ]
    return {key: float(value) for key, value in geometry.items()} | {"center_px": [float(v) for v in centre]}


def _paint_islets(
    image: np.ndarray,
    cover: np.ndarray,
    texture: np.ndarray,
    units: list[_Unit],
    centres: list[tuple[float, float]],
    pixel_size_um: float,
    stain: float,
    rng: np.random.Generator,
) -> tuple[list[dict], dict[str, list[list[int]]]]:
    """Paint every islet in its own shade; return their truth records and the index groups:
    touching pairs, clusters, lobed and elongated islets."""
    islets: list[dict] = []
    groups: dict[str, list[list[int]]] = {"pair": [], "cluster": [], "lobed": [], "elongated": []}
    background = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    for unit, (cx, cy) in zip(units, centres, strict=True):
        indices = []
        for parts in unit.islets():
            colour = rng.uniform(ISLET_RGB_LOW, ISLET_RGB_HIGH).astype(np.float32)
            colour = background + stain * (colour - background)
            for part in parts:
                placed = _Ellipse(cx + part.cx, cy + part.cy, part.semi_major, part.semi_minor, part.angle)
                _paint(image, cover, placed, colour, texture)
            indices.append(len(islets))
            islets.append(_islet_record(parts, cx, cy, pixel_size_um))
        if unit.kind == "pair" or (unit.kind == "single" and len(indices) == 2):
            groups["pair"].append(indices)
        elif unit.kind in groups:
            groups[unit.kind].append(indices)
    return islets, groups


def _paint_holes_and_specks(
    image: np.ndarray,
    texture: np.ndarray,
    islets: list[dict],
    holes: int,
    specks: int,
    clear_of: tuple,
    pixel_size_um: float,
    rng: np.random.Generator,
) -> None:
    """Pale spots inside islets (part of them) and red debris on the background (not islets)."""
    height, width = texture.shape
    scratch = np.zeros((height, width), dtype=np.float32)  # decorations are not ground truth
    pale = np.asarray(BACKGROUND_RGB, dtype=np.float32) * 0.97
    for islet in islets:
        radius_px = islet["minor_um"] / 2 / pixel_size_um
        x, y = islet["center_px"]
        for _ in range(holes):
            offset, direction = rng.uniform(0, 0.5) * radius_px, rng.uniform(0, 2 * math.pi)
            size = rng.uniform(*HOLE_DIAMETER_RANGE_UM) / 2 / pixel_size_um
            spot = _Ellipse(x + offset * math.cos(direction), y + offset * math.sin(direction), size, size, 0.0)
            _paint(image, scratch, spot, pale, texture)
    speck_colour = np.asarray(ISLET_RGB_LOW, dtype=np.float32)
    for _ in range(specks):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        if _clear_of_units(x, y, *clear_of, margin=GAP_UM / 2 / pixel_size_um):
            size = rng.uniform(*SPECK_DIAMETER_RANGE_UM) / 2 / pixel_size_um
            _paint(image, scratch, _Ellipse(x, y, size, size, 0.0), speck_colour, texture)


def make_dtz_image(
    seed: int = 0,
    diameters_um: Sequence[float] = (80, 120, 160, 220),
    pixel_size_um: float = 0.843,
    size: tuple[int, int] | None = None,
    touching_pairs: int = 0,
    exocrine_clumps: int = 3,
    noise: float = 4.0,
    uneven_illumination: float = 0.0,
    ellipticity: float = 0.0,
    *,
    holes: int = 0,
    specks: int = 0,
    clusters: Sequence[int] = (),
    neck_range: tuple[float, float] = NECK_RANGE,
    lobed: int = 0,
    elongated: int = 0,
    stain: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """A synthetic DTZ image and its ground truth.

    `diameters_um` are equivalent diameters of separated islets; each touching pair adds two
    more islets (diameters drawn from 70-180 µm). `size` is (height, width) in pixels, chosen to
    fit when None. `ellipticity` e makes every islet an ellipse with minor/major = 1 - e and the
    same equivalent diameter. `uneven_illumination` is the darkening of the worst corner (0..1).
    `holes` pale spots (8-20 µm, glare or a pale core) are put inside each islet: they belong to
    the islet. `specks` red dots of 2-8 µm (debris, single stained cells) are scattered over the
    background: they are no islets and too small to be fragments.

    The harder families: `clusters` gives one clump per entry with that many touching islets
    (60-260 µm, each joined to an earlier one through a neck of `neck_range` times the smaller
    diameter); `lobed` islets have 1-3 lobes on wide necks (one islet each); `elongated` islets
    have minor/major axis 0.5-0.7. Their diameters keep 6 % away from the Ricordi class bounds.
    `stain` scales the islets' colour contrast against the background (1 = full DTZ crimson,
    0.6 = weakly stained).

    Returns ``(rgb, truth)`` with truth = {"islets": [{"diameter_um", "major_um", "minor_um",
    "center_px": [x, y]}], "pairs": [[i, j], ...], "clusters": [[i, j, ...], ...], "lobed": [[i], ...],
    "elongated": [[i], ...], "ieq_ricordi", "ieq_sphere", "ieq_ellipsoid",
    "islet_count", "purity", "pixel_size_um"} (IEQ and count over islets of 50 µm and more).
    """
    if pixel_size_um <= 0:
        raise ValueError("The pixel size must be a positive number of micrometres.")
    rng = np.random.default_rng(seed)
    units = [_single(float(d), ellipticity, pixel_size_um, rng) for d in diameters_um]
    units += [_pair(ellipticity, pixel_size_um, rng) for _ in range(touching_pairs)]
    units += [_cluster(int(n), neck_range, pixel_size_um, rng) for n in clusters]
    units += [_lobed(pixel_size_um, rng) for _ in range(lobed)]
    units += [_elongated(pixel_size_um, rng) for _ in range(elongated)]
    height, width, centres = _layout(units, size, GAP_UM / pixel_size_um, rng)

    # Slight stain/tissue texture (a few per cent), shared by all objects.
    texture = 1.0 + TEXTURE_STRENGTH * ndimage.gaussian_filter(
        rng.standard_normal((height, width)).astype(np.float32), 2.0
    )
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = np.asarray(BACKGROUND_RGB, dtype=np.float32)
    islet_cover = np.zeros((height, width), dtype=np.float32)
    exocrine_cover = np.zeros((height, width), dtype=np.float32)
    _paint_exocrine(image, exocrine_cover, texture, exocrine_clumps, (units, centres), pixel_size_um, rng)
    islets, groups = _paint_islets(image, islet_cover, texture, units, centres, pixel_size_um, stain, rng)
    _paint_holes_and_specks(image, texture, islets, holes, specks, (units, centres), pixel_size_um, rng)

    if uneven_illumination:
        image *= _illumination(height, width, float(uneven_illumination))[:, :, None]
    if noise:
        image += rng.normal(0.0, float(noise), image.shape).astype(np.float32)
    rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    counted = [islet for islet in islets if islet["diameter_um"] >= 50.0]
    islet_area = float(np.count_nonzero(islet_cover >= 0.5))
    tissue_area = float(np.count_nonzero((islet_cover >= 0.5) | (exocrine_cover >= 0.5)))
    truth = {
        "islets": islets,
        "pairs": groups["pair"],
        "clusters": groups["cluster"],
        "lobed": groups["lobed"],
        "elongated": groups["elongated"],
        "islet_count": len(counted),
        "ieq_ricordi": float(sum(ricordi_ieq(i["diameter_um"]) for i in counted)),
        "ieq_sphere": float(sum(sphere_ieq(i["diameter_um"]) for i in counted)),
        "ieq_ellipsoid": float(sum(ellipsoid_ieq(i["major_um"], i["minor_um"]) for i in counted)),
        "purity": islet_area / tissue_area if tissue_area else 0.0,
        "pixel_size_um": pixel_size_um,
    }
    return rgb, truth


# The accuracy families of the tests and of bench/islet_accuracy.py: name -> make_dtz_image
# arguments for image number `index` of the family (even numbers fully stained, odd ones weakly
# stained and noisier, so every family is judged on both).
def family_arguments(family: str, index: int) -> dict:
    """make_dtz_image keyword arguments for image `index` of one accuracy family."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown family {family!r}; known: {', '.join(FAMILIES)}.")
    weak = index % 2 == 1
    arguments = {"seed": 1000 * (list(FAMILIES).index(family) + 1) + index, "uneven_illumination": 0.3}
    arguments |= {"stain": 0.75, "noise": 6.0} if weak else {}
    return arguments | FAMILIES[family]


FAMILIES: dict[str, dict] = {
    "separated": {"diameters_um": (60, 85, 125, 175, 225, 275)},
    "cluster-2": {"diameters_um": (90, 170), "clusters": (2, 2, 2)},
    "cluster-3": {"diameters_um": (70, 120, 170, 225, 90), "clusters": (3, 3, 3)},  # 14 islets, as in issue 17
    "cluster-4": {"diameters_um": (120,), "clusters": (4, 4)},
    "cluster-5": {"diameters_um": (), "clusters": (5, 5)},
    "lobed": {"diameters_um": (), "lobed": 6},
    "elongated": {"diameters_um": (), "elongated": 6},
}
