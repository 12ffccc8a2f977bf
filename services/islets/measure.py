"""From a class map to the per-image result: islets found, split, measured, counted in IEQ.

The class map (0 background, 1 exocrine, 2 islet) comes from any model; everything after it is
here, so that every model is measured the same way: touching islets split by a
watershed on the distance transform of the mask with its holes still open (the pocket between
three touching islets keeps their necks narrow), then holes given to the islet around them,
pieces under the minimum diameter set aside as fragments, then per-islet geometry and the three
IEQ methods, and the sample statistics. Work is done one connected component at a time inside
its bounding box, so memory follows the islets, not the image.
"""

from __future__ import annotations

import csv
import io
import math
import numbers
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError
from skimage.feature import peak_local_max
from skimage.measure import find_contours, perimeter_crofton, regionprops
from skimage.segmentation import watershed

from services.islets.errors import InvalidParameterError
from services.islets.ieq import SIZE_CLASS_NAMES, ellipsoid_ieq, ricordi_ieq, size_class, sphere_ieq

ISLET_CLASS, EXOCRINE_CLASS = 2, 1
EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class SplitParameters:
    """How touching islets are told apart and how outlines are cleaned (µm where physical)."""

    # Two watershed basins stay separate when the neck between them is narrower than this share
    # of the smaller one's inscribed radius (touching spheres: ~0.3-0.5; one lumpy islet: ~0.8+).
    neck_ratio: float = 0.7
    # Holes inside an islet up to this equivalent diameter are part of it (pale cores, glare).
    max_hole_diameter_um: float = 100.0
    # Contour simplification tolerance (pixels): outlines stay within this of the mask edge.
    contour_tolerance_px: float = 1.0
    # Outlines are thinned to about this many points before simplification (speed on big islets).
    contour_max_points: int = 400
    # Islet-class pieces smaller than about one cell are noise, not fragments of islets.
    min_fragment_diameter_um: float = 10.0
    # Holes up to this equivalent diameter are closed before splitting (noise); larger ones stay
    # open while splitting, as the pocket between touching islets must.
    pinhole_diameter_um: float = 4.0
    # A component with more holes than this left is split with all of them filled: the holes are
    # the model's noise, not pockets (five touching islets enclose at most a few).
    max_open_holes: int = 12


@dataclass
class _Tally:
    islets: list[dict] = field(default_factory=list)
    islet_area_px: int = 0
    fragment_area_px: int = 0
    filled_exocrine_px: int = 0


def _is_number(value: object) -> bool:
    """int, float and numpy scalars; not bool, not numeric strings."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_parameters(class_map: np.ndarray, pixel_size_um: float, min_diameter_um: float) -> None:
    if class_map.ndim != 2:
        raise InvalidParameterError(f"The class map must be a 2-D array, got shape {class_map.shape}.")
    if not (_is_number(pixel_size_um) and math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InvalidParameterError(f"The pixel size must be a positive number of micrometres, got {pixel_size_um!r}.")
    if not (_is_number(min_diameter_um) and math.isfinite(min_diameter_um) and min_diameter_um >= 0):
        raise InvalidParameterError(f"The minimum diameter must be zero or more micrometres, got {min_diameter_um!r}.")


def _label(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected labels, in 16 bits when they fit (a quarter of the int32 memory on big images)."""
    try:
        return ndimage.label(mask, structure=EIGHT_CONNECTED, output=np.uint16)
    except RuntimeError:  # more than 65 535 components
        return ndimage.label(mask, structure=EIGHT_CONNECTED, output=np.int32)


def _fill_holes(
    component: np.ndarray, max_hole_px: float, pinhole_px: float = 0.0
) -> tuple[np.ndarray, np.ndarray, int]:
    """The component with its holes up to max_hole_px filled (larger enclosed areas are not
    islet), the component with only its pinholes (up to pinhole_px) filled, and how many holes
    the second keeps open."""
    holes = ndimage.binary_fill_holes(component) & ~component
    if not holes.any():
        return component, component, 0
    hole_labels, count = ndimage.label(holes)
    sizes = np.bincount(hole_labels.ravel(), minlength=count + 1)
    small, tiny = sizes <= max_hole_px, sizes <= pinhole_px
    small[0] = tiny[0] = False
    return component | small[hole_labels], component | tiny[hole_labels], int(np.count_nonzero(small & ~tiny))


# Each pixel's neighbours to the right, below, below-right and below-left (8-connectivity, each
# pair once) as (rows, cols) slices of the "from" and "to" pixels.
_NEIGHBOUR_SLICES = (
    ((slice(None), slice(None, -1)), (slice(None), slice(1, None))),
    ((slice(None, -1), slice(None)), (slice(1, None), slice(None))),
    ((slice(None, -1), slice(None, -1)), (slice(1, None), slice(1, None))),
    ((slice(None, -1), slice(1, None)), (slice(1, None), slice(None, -1))),
)


def _adjacent_saddles(regions: np.ndarray, distance: np.ndarray) -> dict[tuple[int, int], float]:
    """For each pair of touching regions, the highest distance value on their common border
    (the neck's half-width)."""
    firsts, seconds, values = [], [], []
    for here, there in _NEIGHBOUR_SLICES:
        a, b = regions[here], regions[there]
        border = (a != b) & (a > 0) & (b > 0)
        if border.any():
            firsts.append(np.minimum(a[border], b[border]))
            seconds.append(np.maximum(a[border], b[border]))
            values.append(np.minimum(distance[here][border], distance[there][border]))
    if not firsts:
        return {}
    first, second, value = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(values)
    pairs, inverse = np.unique(np.stack([first, second], axis=1), axis=0, return_inverse=True)
    highest = np.full(len(pairs), -np.inf)
    np.maximum.at(highest, inverse.ravel(), value)
    return {(int(a), int(b)): float(h) for (a, b), h in zip(pairs, highest, strict=True)}


def _hole_neighbours(holes: np.ndarray, regions: np.ndarray) -> dict[int, set[int]]:
    """For each labelled hole, the labels of the regions it touches (8-neighbourhood)."""
    neighbours: dict[int, set[int]] = {}
    for here, there in _NEIGHBOUR_SLICES:
        for hole_side, region_side in ((here, there), (there, here)):
            h, r = holes[hole_side], regions[region_side]
            touching = (h > 0) & (r > 0)
            for hole, region in set(zip(h[touching].tolist(), r[touching].tolist(), strict=True)):
                neighbours.setdefault(hole, set()).add(region)
    return neighbours


def _merge_saddles(saddles: dict[tuple[int, int], float], kept: int, gone: int) -> None:
    """Update pairwise saddles after basin `gone` joined `kept`: the merged basin's saddle with a
    neighbour is the higher of the two (the highest point of the joint border)."""
    for pair in [pair for pair in saddles if gone in pair]:
        value = saddles.pop(pair)
        other = pair[0] if pair[1] == gone else pair[1]
        if other != kept:
            key = (min(kept, other), max(kept, other))
            saddles[key] = max(saddles.get(key, -np.inf), value)


@dataclass
class _Holes:
    """The holes of a component during the merge of its basins (see split_touching).

    A hole enclosed by one basin belongs to it: the basin is sized by the distance transform of
    the mask with its holes filled. A hole that at the start touches at most two basins is a pale
    spot that may cut one islet in two (a pocket between touching islets is bordered by three or
    more): the basins around it are compared on the mask with such spots closed. Both views are
    computed once; merges only update the per-basin figures.
    """

    owners: dict[int, set[int]]  # hole label -> labels of the basins it touches now
    hole_peaks: np.ndarray  # per hole, the filled mask's distance transform at its maximum inside
    filled_heights: np.ndarray  # per basin, the filled mask's distance transform at its maximum
    spots: frozenset[int]  # holes that touched at most two basins at the start
    spot_saddles: dict[tuple[int, int], float]  # basin saddles with the spots closed

    @classmethod
    def find(cls, component: np.ndarray, filled: np.ndarray | None, regions: np.ndarray) -> _Holes | None:
        if filled is None:
            return None
        labels, count = ndimage.label(filled & ~component)
        if count == 0:
            return None
        owners = _hole_neighbours(labels, regions)
        filled_distance = ndimage.distance_transform_edt(filled)
        spots = frozenset(hole for hole, touching in owners.items() if len(touching) <= 2)
        spot_saddles: dict[tuple[int, int], float] = {}
        if spots:
            is_spot = np.zeros(count + 1, dtype=bool)
            is_spot[list(spots)] = True
            spot_mask = component | is_spot[labels]
            spot_distance = ndimage.distance_transform_edt(spot_mask)
            spot_saddles = _adjacent_saddles(watershed(-spot_distance, regions, mask=spot_mask), spot_distance)
        return cls(
            owners=owners,
            hole_peaks=ndimage.maximum(filled_distance, labels, index=np.arange(count + 1)),
            filled_heights=np.asarray(ndimage.maximum(filled_distance, regions, index=np.arange(regions.max() + 1))),
            spots=spots,
            spot_saddles=spot_saddles,
        )

    def peak_heights(self, open_heights: np.ndarray) -> np.ndarray:
        """Each basin's inscribed radius, with the holes it alone encloses filled."""
        heights = open_heights
        for hole, touching in self.owners.items():
            if len(touching) == 1:
                if heights is open_heights:
                    heights = open_heights.copy()
                (owner,) = touching
                heights[owner] = max(heights[owner], self.filled_heights[owner], self.hole_peaks[hole])
        return heights

    def saddles_across_spots(self) -> dict[tuple[int, int], float]:
        """Saddles, with the spots closed, between the two basins around each spot."""
        pairs = {tuple(sorted(self.owners[hole])) for hole in self.spots if len(self.owners[hole]) == 2}
        return {pair: self.spot_saddles[pair] for pair in pairs if pair in self.spot_saddles}

    def merge(self, kept: int, gone: int) -> None:
        self.filled_heights[kept] = max(self.filled_heights[kept], self.filled_heights[gone])
        _merge_saddles(self.spot_saddles, kept, gone)
        for touching in self.owners.values():
            if gone in touching:
                touching.discard(gone)
                touching.add(kept)


def split_touching(
    component: np.ndarray, min_radius_px: float, neck_ratio: float, filled: np.ndarray | None = None
) -> np.ndarray:
    """Label image of one connected islet mask, split into islets where it narrows into a neck.

    Watershed on the inverted distance transform from its local maxima, then neighbouring basins
    are merged back while the neck between them is wide compared with the smaller basin's
    inscribed radius (a lumpy outline is one islet; two spheres touching are two). The saddles
    and peaks are measured once and updated as basins merge.

    `component` keeps its holes open, so the pocket that touching islets enclose keeps their
    necks narrow. `filled` is the same mask with the holes that may belong to islets filled; a
    pale spot inside one islet then neither shrinks it nor cuts it in two (see _Holes).
    """
    distance = ndimage.distance_transform_edt(component)
    peaks = peak_local_max(
        distance, min_distance=max(2, int(min_radius_px / 2)), labels=component.astype(np.int32), exclude_border=False
    )
    if len(peaks) <= 1:
        return component.astype(np.int32)
    markers = np.zeros(component.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    regions = watershed(-distance, markers, mask=component)
    holes = _Holes.find(component, filled, regions)
    open_heights = np.asarray(ndimage.maximum(distance, regions, index=np.arange(len(peaks) + 1)))
    saddles = _adjacent_saddles(regions, distance)
    joined = np.arange(len(peaks) + 1)  # basin label -> the basin it was merged into
    while True:
        heights, candidates = open_heights, saddles
        if holes is not None:
            heights = holes.peak_heights(open_heights)
            candidates = saddles | holes.saddles_across_spots()
        best, best_ratio = None, neck_ratio
        for (a, b), saddle in candidates.items():
            ratio = saddle / max(min(heights[a], heights[b]), 1e-9)
            if ratio >= best_ratio:
                best, best_ratio = (a, b), ratio
        if best is None:
            break
        kept, gone = best
        open_heights[kept] = max(open_heights[kept], open_heights[gone])
        _merge_saddles(saddles, kept, gone)
        if holes is not None:
            holes.merge(kept, gone)
        joined[joined == gone] = kept
    return joined[regions]


def simplify_polyline(points: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker: the fewest of `points` (n×2) such that the dropped ones lie within
    `tolerance` of the kept line; vectorised per segment (skimage's runs point by point)."""
    if len(points) < 3:
        return points
    keep = np.zeros(len(points), dtype=bool)
    keep[0] = keep[-1] = True
    pending = [(0, len(points) - 1)]
    while pending:
        start, end = pending.pop()
        if end - start < 2:
            continue
        inner = points[start + 1 : end] - points[start]
        chord = points[end] - points[start]
        length = math.hypot(chord[0], chord[1])
        if length == 0:  # closed outline: first point == last point
            distances = np.hypot(inner[:, 0], inner[:, 1])
        else:
            distances = np.abs(chord[0] * inner[:, 1] - chord[1] * inner[:, 0]) / length
        farthest = int(np.argmax(distances))
        if distances[farthest] > tolerance:
            middle = start + 1 + farthest
            keep[middle] = True
            pending += [(start, middle), (middle, end)]
    return points[keep]


def _outline(mask: np.ndarray, offset: tuple[int, int], parameters: SplitParameters) -> list[list[float]]:
    """Simplified outer contour as [[x, y], ...] in image pixels."""
    contours = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    if not contours:
        return []
    longest = max(contours, key=len)
    # Thin very long outlines first (every k-th point of a sub-pixel contour still follows the
    # edge within a pixel), then simplify.
    step = max(1, len(longest) // parameters.contour_max_points)
    if step > 1:
        longest = np.vstack([longest[::step], longest[-1:]])
    simplified = simplify_polyline(longest, parameters.contour_tolerance_px)
    top, left = offset
    return [[round(float(col) - 1 + left, 1), round(float(row) - 1 + top, 1)] for row, col in simplified]


def _solidity(area_px: float, contour: list[list[float]]) -> float:
    """Area over the area of the convex hull of the outline (1.0 for a convex islet; two round
    islets joined by a narrow neck score about 0.85). The hull of the simplified outline is
    enough: it stays within a pixel of the mask."""
    if len(contour) < 3:
        return 1.0
    try:
        hull_area = ConvexHull(np.asarray(contour)).volume  # the "volume" of a 2-D hull is its area
    except QhullError:  # a degenerate (flat) outline
        return 1.0
    # The outline runs along pixel centres, half a pixel inside the mask's edge.
    return min(1.0, area_px / hull_area) if hull_area > 0 else 1.0


def _describe(
    region_mask: np.ndarray, offset: tuple[int, int], pixel_size_um: float, parameters: SplitParameters
) -> dict:
    """Geometry and IEQ of one islet (region_mask is its bounding-box crop)."""
    props = regionprops(region_mask.astype(np.uint8))[0]
    area_um2 = float(props.area) * pixel_size_um**2
    diameter = 2.0 * math.sqrt(area_um2 / math.pi)
    major = float(props.axis_major_length) * pixel_size_um
    minor = float(props.axis_minor_length) * pixel_size_um
    # Crofton's estimate: unbiased for digitised round shapes (a disc scores ~1.00, where the
    # pixel-edge perimeter gives ~0.91).
    perimeter_um = float(perimeter_crofton(region_mask, directions=4)) * pixel_size_um
    circularity = min(1.0, 4.0 * math.pi * area_um2 / perimeter_um**2) if perimeter_um > 0 else 1.0
    row, col = props.centroid
    contour = _outline(region_mask, offset, parameters)
    return {
        "area_um2": area_um2,
        "equivalent_diameter_um": diameter,
        "major_axis_um": major,
        "minor_axis_um": minor,
        "circularity": circularity,
        "centroid_px": [float(col) + offset[1], float(row) + offset[0]],
        "contour_px": contour,
        "solidity": _solidity(float(props.area), contour),
        "ieq_ricordi": ricordi_ieq(diameter),
        "ieq_sphere": sphere_ieq(diameter),
        "ieq_ellipsoid": ellipsoid_ieq(major, minor),
    }


def _disc_area_px(diameter_um: float, pixel_size_um: float) -> float:
    return math.pi / 4 * (diameter_um / pixel_size_um) ** 2


def _give_holes_to_regions(regions: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """`regions` with each hole that borders only one region added to it. A hole between several
    regions is the pocket that touching islets enclose: background, not islet."""
    hole_labels, count = ndimage.label(holes)
    if count == 0:
        return regions
    # The region labels around each hole: maximum and minimum over its 8-neighbour ring.
    ring_max = ndimage.maximum_filter(regions, footprint=EIGHT_CONNECTED)
    masked = np.where(regions > 0, regions, np.iinfo(np.int32).max)
    ring_min = ndimage.minimum_filter(masked, footprint=EIGHT_CONNECTED)
    index = np.arange(1, count + 1)
    highest = ndimage.maximum(ring_max, hole_labels, index)
    lowest = ndimage.minimum(ring_min, hole_labels, index)
    owner = np.zeros(count + 1, dtype=regions.dtype)
    owner[1:] = np.where(highest == lowest, highest, 0)
    out = regions.copy()
    out[holes] = owner[hole_labels[holes]]
    return out


def _measure_component(
    component: np.ndarray,
    offset: tuple[int, int],
    exocrine: np.ndarray,
    pixel_size_um: float,
    min_diameter_um: float,
    parameters: SplitParameters,
    tally: _Tally,
) -> None:
    max_hole_px = math.pi / 4 * (parameters.max_hole_diameter_um / pixel_size_um) ** 2
    pinhole_px = _disc_area_px(parameters.pinhole_diameter_um, pixel_size_um)
    filled, opened, open_holes = _fill_holes(component, max_hole_px, pinhole_px)
    area_px = int(np.count_nonzero(filled))
    if area_px < _disc_area_px(parameters.min_fragment_diameter_um, pixel_size_um):
        return  # noise
    min_area_px = _disc_area_px(min_diameter_um, pixel_size_um)
    if area_px < min_area_px:
        tally.islet_area_px += area_px
        tally.filled_exocrine_px += int(np.count_nonzero(filled & ~component & exocrine))
        tally.fragment_area_px += area_px
        return
    # Split the mask as it is, holes open: the pocket that three touching islets enclose keeps
    # their necks narrow (filled, it would join them into one fat blob). Then each hole goes to
    # the one islet around it; a pocket between several islets stays background.
    # Pinholes (a noisy model's speckle) are closed first: each would be a dip in the distance
    # transform, a peak more and a merge step more.
    if open_holes > parameters.max_open_holes:
        opened = filled  # riddled with holes (a noisy model): split it filled, as a cheese is one piece
    regions = split_touching(opened, min_diameter_um / pixel_size_um / 2, parameters.neck_ratio, filled)
    regions = _give_holes_to_regions(regions, filled & ~component)
    islet_pixels = regions > 0
    tally.islet_area_px += int(np.count_nonzero(islet_pixels))
    tally.filled_exocrine_px += int(np.count_nonzero(islet_pixels & ~component & exocrine))
    for label, window in enumerate(ndimage.find_objects(regions), start=1):
        if window is None:
            continue
        crop = regions[window] == label
        region_area = int(np.count_nonzero(crop))
        if region_area < min_area_px:
            tally.fragment_area_px += region_area
            continue
        top, left = window[0].start, window[1].start
        tally.islets.append(_describe(crop, (offset[0] + top, offset[1] + left), pixel_size_um, parameters))


def _rounded(islet: dict) -> dict:
    """JSON-friendly precision (well below the measurement's own uncertainty)."""
    out = dict(islet)
    for key, digits in (
        ("area_um2", 1),
        ("equivalent_diameter_um", 2),
        ("major_axis_um", 2),
        ("minor_axis_um", 2),
        ("circularity", 4),
        ("solidity", 4),
        ("ieq_ricordi", 4),
        ("ieq_sphere", 4),
        ("ieq_ellipsoid", 4),
    ):
        out[key] = round(float(islet[key]), digits)
    out["centroid_px"] = [round(value, 1) for value in islet["centroid_px"]]
    return out


def measure(
    class_map: np.ndarray,
    pixel_size_um: float = 0.843,
    min_diameter_um: float = 50.0,
    model: str = "classical",
    parameters: SplitParameters | None = None,
) -> dict:
    """Per-image result (docs/architecture.md "Result JSON per image"): numbered islets and the
    sample summary. Islets are numbered in reading order (top to bottom, then left to right).

    purity = islet area / (islet + exocrine area) and fragmentation = share of the islet area in
    pieces under `min_diameter_um`; both are 0.0 when there is no tissue / no islet tissue.
    Islet-class specks under ``parameters.min_fragment_diameter_um`` (10 µm, about a cell) are
    noise and count nowhere.
    """
    class_map = np.asarray(class_map)
    _check_parameters(class_map, pixel_size_um, min_diameter_um)
    parameters = parameters or SplitParameters()
    labels, _count = _label(class_map == ISLET_CLASS)
    tally = _Tally()
    noise_px = _disc_area_px(parameters.min_fragment_diameter_um, pixel_size_um)
    for index, window in enumerate(ndimage.find_objects(labels), start=1):
        if window is None:
            continue
        if (window[0].stop - window[0].start) * (window[1].stop - window[1].start) < noise_px:
            continue  # even filled it would be noise: skip the per-component work (noisy models)
        # One pixel of margin so holes and the distance transform see the component's edge.
        rows = slice(max(window[0].start - 1, 0), min(window[0].stop + 1, labels.shape[0]))
        cols = slice(max(window[1].start - 1, 0), min(window[1].stop + 1, labels.shape[1]))
        component = np.pad(labels[rows, cols] == index, 1)
        exocrine = np.pad(class_map[rows, cols] == EXOCRINE_CLASS, 1)
        _measure_component(
            component, (rows.start - 1, cols.start - 1), exocrine, pixel_size_um, min_diameter_um, parameters, tally
        )
    del labels

    islets = sorted(tally.islets, key=lambda islet: (islet["centroid_px"][1], islet["centroid_px"][0]))
    islets = [{"number": number, **_rounded(islet)} for number, islet in enumerate(islets, start=1)]
    pixel_area = pixel_size_um**2
    exocrine_px = int(np.count_nonzero(class_map == EXOCRINE_CLASS)) - tally.filled_exocrine_px
    tissue_px = tally.islet_area_px + exocrine_px
    classes = {name: 0 for name in SIZE_CLASS_NAMES}
    for islet in tally.islets:
        name = size_class(islet["equivalent_diameter_um"])
        if name is not None:
            classes[name] += 1
    total_ricordi = sum(islet["ieq_ricordi"] for islet in tally.islets)
    summary = {
        "islet_count": len(islets),
        "ieq_ricordi": round(total_ricordi, 4),
        "ieq_sphere": round(sum(islet["ieq_sphere"] for islet in tally.islets), 4),
        "ieq_ellipsoid": round(sum(islet["ieq_ellipsoid"] for islet in tally.islets), 4),
        "ieq_per_islet": round(total_ricordi / len(islets), 4) if islets else 0.0,
        "purity": round(tally.islet_area_px / tissue_px, 4) if tissue_px else 0.0,
        "fragmentation": round(tally.fragment_area_px / tally.islet_area_px, 4) if tally.islet_area_px else 0.0,
        "size_classes": classes,
        "islet_area_um2": round(tally.islet_area_px * pixel_area, 1),
        "exocrine_area_um2": round(exocrine_px * pixel_area, 1),
        "pixel_size_um": float(pixel_size_um),
        "min_diameter_um": float(min_diameter_um),
        "model": str(model),
    }
    return {"islets": islets, "summary": summary}


CSV_COLUMNS = (
    "number",
    "area_um2",
    "equivalent_diameter_um",
    "major_axis_um",
    "minor_axis_um",
    "circularity",
    "centroid_x_px",
    "centroid_y_px",
    "size_class",
    "ieq_ricordi",
    "ieq_sphere",
    "ieq_ellipsoid",
)


def islets_csv(result: dict) -> str:
    """The per-islet table as CSV text (header row, one row per islet, numbers as in the overlay)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for islet in result.get("islets", []):
        x, y = islet["centroid_px"]
        writer.writerow(
            [
                islet["number"],
                islet["area_um2"],
                islet["equivalent_diameter_um"],
                islet["major_axis_um"],
                islet["minor_axis_um"],
                islet["circularity"],
                x,
                y,
                size_class(islet["equivalent_diameter_um"]) or "",
                islet["ieq_ricordi"],
                islet["ieq_sphere"],
                islet["ieq_ellipsoid"],
            ]
        )
    return buffer.getvalue()


def summarise_images(results: list[dict]) -> dict:
    """One summary over several images of a job (what `jobs/<id>/outputs/summary.json` holds):
    counts, IEQ and size classes add up; purity and fragmentation are area-weighted (a ratio of
    the summed areas, not a mean of the per-image ratios); ieq_per_islet is recomputed.
    pixel_size_um and model are the images' common value, or None when they differ."""
    summaries = [result["summary"] for result in results]
    count = sum(s["islet_count"] for s in summaries)
    ricordi = sum(s["ieq_ricordi"] for s in summaries)
    islet_area = sum(s.get("islet_area_um2", 0.0) for s in summaries)
    exocrine_area = sum(s.get("exocrine_area_um2", 0.0) for s in summaries)
    fragment_area = sum(s["fragmentation"] * s.get("islet_area_um2", 0.0) for s in summaries)
    classes = {name: sum(s["size_classes"].get(name, 0) for s in summaries) for name in SIZE_CLASS_NAMES}

    def common(key: str) -> object:
        values = {s.get(key) for s in summaries}
        return values.pop() if len(values) == 1 else None

    return {
        "image_count": len(summaries),
        "islet_count": count,
        "ieq_ricordi": round(ricordi, 4),
        "ieq_sphere": round(sum(s["ieq_sphere"] for s in summaries), 4),
        "ieq_ellipsoid": round(sum(s["ieq_ellipsoid"] for s in summaries), 4),
        "ieq_per_islet": round(ricordi / count, 4) if count else 0.0,
        "purity": round(islet_area / (islet_area + exocrine_area), 4) if islet_area + exocrine_area else 0.0,
        "fragmentation": round(fragment_area / islet_area, 4) if islet_area else 0.0,
        "size_classes": classes,
        "islet_area_um2": round(islet_area, 1),
        "exocrine_area_um2": round(exocrine_area, 1),
        "pixel_size_um": common("pixel_size_um"),
        "min_diameter_um": common("min_diameter_um"),
        "model": common("model"),
    }
