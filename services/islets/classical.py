"""The default segmentation model: a classical colour-space classifier for DTZ-stained samples,
no weights needed.

Per pixel: flat-field the image against its own background (uneven illumination, colour cast),
smooth the channels a little (sensor noise), then *tissue* = darker than the background, *islet*
= tissue whose red-green chromaticity is high (dithizone binds zinc in beta cells: crimson),
*exocrine* = the remaining tissue; specks are dropped. (Holes inside islets are filled by the
measurement, for every model alike.) Large images are processed in overlapping
tiles, so the float working set stays a few tiles' size whatever the image size.

Splitting touching islets is not done here but in :mod:`services.islets.measure`, so that every
model (classical, ONNX, torch) gets the same watershed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from services.islets.errors import ModelError

BACKGROUND, EXOCRINE, ISLET = 0, 1, 2
RIM_STRUCTURE = ndimage.generate_binary_structure(2, 1)  # plus shape; applied twice: a diamond of radius 2


@dataclass(frozen=True)
class ClassicalParameters:
    """The classifier's settings, all in one place (pixel units: the model does not know the
    pixel size; measurement in µm happens afterwards)."""

    tissue_threshold: float = 0.10  # 1 - darkest normalised channel above this = tissue
    redness_threshold: float = 0.20  # (r - g)/(r + g) above this = islet (about half-way into the edge)
    black_threshold: float = 0.15  # brightest normalised channel below this = outside the field of view
    smoothing_sigma_px: float = 1.0  # noise suppression before thresholding
    background_block_px: int = 24  # the light field is fitted to means of blocks this size
    background_degree: int = 3  # polynomial degree of the light field
    background_tolerance: float = 0.04  # blocks this much darker than the fit hold objects
    speck_area_px: int = 30  # islet/tissue fragments smaller than this are noise
    tile_px: int = 1024  # tile side for large images (working set ~50 MB per tile)
    tile_margin_px: int = 16  # > 3 sigma of smoothing + opening radius, > speck extent


def _block_means(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor×factor block (partial blocks at the edges included), computed strip by
    strip so a huge image never gets a full-size float copy."""
    height, width = rgb.shape[:2]
    rows, cols = math.ceil(height / factor), math.ceil(width / factor)
    out = np.empty((rows, cols, 3), dtype=np.float32)
    col_starts = np.arange(0, width, factor)
    for row in range(rows):
        strip = rgb[row * factor : (row + 1) * factor].astype(np.float32)
        sums = np.add.reduceat(strip.sum(axis=0), col_starts, axis=0)
        counts = np.diff(np.append(col_starts, width)) * strip.shape[0]
        out[row] = sums / counts[:, None]
    return out


def _polynomial_terms(ys: np.ndarray, xs: np.ndarray, degree: int) -> np.ndarray:
    """Design matrix of all monomials x^i·y^j with i + j <= degree (coordinates in -1..1)."""
    return np.stack([xs**i * ys**j for i in range(degree + 1) for j in range(degree + 1 - i)], axis=1)


def _least_squares(design: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coefficients minimising |design @ c - values|, through the normal equations: the products
    are summed by einsum, not by a multithreaded BLAS whose idle threads spin on a shared host
    (that spinning cost more CPU than the whole fit), and the system is only terms × terms."""
    gram = np.einsum("ij,ik->jk", design, design)
    rhs = np.einsum("ij,i...->j...", design, values)
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def estimate_background(rgb: np.ndarray, parameters: ClassicalParameters) -> tuple[np.ndarray, int]:
    """Per-channel light field on a coarse grid of blocks (background brightness at each block).

    Microscope illumination varies smoothly (vignetting, a ramp), so the field is a low-order
    polynomial fitted to the block means that are background: start from the brighter blocks,
    then repeatedly drop blocks noticeably darker than the fit (objects) and refit. Unlike a
    morphological closing this stays right at the image borders. Returns the field (h×w×3
    float32) and the block size in pixels.
    """
    height, width = rgb.shape[:2]
    factor = max(1, min(parameters.background_block_px, min(height, width) // 8))
    blocks = _block_means(rgb, factor)
    rows, cols = blocks.shape[:2]
    ys, xs = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    values = blocks.reshape(-1, 3).astype(np.float64)
    grey = values.mean(axis=1)
    count = grey.size
    degree = parameters.background_degree if count >= 60 else (1 if count >= 12 else 0)
    design = _polynomial_terms(ys, xs, degree)
    keep = grey >= np.percentile(grey, 30)
    fit = np.full(count, grey[keep].mean() if keep.any() else grey.mean())
    for _round in range(10):
        if np.count_nonzero(keep) < 2 * design.shape[1]:
            break
        coefficients = _least_squares(design[keep], grey[keep])
        fit = design @ coefficients
        new_keep = grey >= fit * (1.0 - parameters.background_tolerance)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    field = np.empty((count, 3))
    if np.count_nonzero(keep) >= 2 * design.shape[1]:
        for channel in range(3):
            coefficients = _least_squares(design[keep], values[keep, channel])
            field[:, channel] = design @ coefficients
    else:
        # Hardly any background (a crowded or tiny image): a flat field from the brightest blocks.
        field[:] = np.percentile(values, 90, axis=0)
    # A black image must not divide by ~0.
    return np.maximum(field, 16.0).reshape(rows, cols, 3).astype(np.float32), factor


def _interpolation_indices(positions: np.ndarray, factor: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For full-resolution positions along one axis: the block centres below and above each
    (coarse grid indices) and the weight of the upper one (bilinear interpolation)."""
    coarse = np.clip((positions - (factor - 1) / 2) / factor, 0, size - 1)
    lower = np.floor(coarse).astype(np.intp)
    return lower, np.minimum(lower + 1, size - 1), (coarse - lower).astype(np.float32)


def _field_for_window(field: np.ndarray, factor: int, rows: slice, cols: slice) -> np.ndarray:
    """Bilinear upsampling of the coarse field over one window of the full image: first along
    the rows (a few coarse columns), then along the columns by gathering the two neighbours of
    each. No matrix product: a multithreaded BLAS would burn CPU spinning on a shared host."""
    row_low, row_high, row_weight = _interpolation_indices(np.arange(rows.start, rows.stop), factor, field.shape[0])
    col_low, col_high, col_weight = _interpolation_indices(np.arange(cols.start, cols.stop), factor, field.shape[1])
    out = np.empty((len(row_low), len(col_low), 3), dtype=np.float32)
    for channel in range(3):
        coarse = np.ascontiguousarray(field[:, :, channel])
        by_rows = coarse[row_low] + (coarse[row_high] - coarse[row_low]) * row_weight[:, None]
        low = np.take(by_rows, col_low, axis=1)
        high = np.take(by_rows, col_high, axis=1)
        high -= low
        high *= col_weight
        low += high
        out[:, :, channel] = low
    return out


def remove_small_components(mask: np.ndarray, min_area_px: int) -> np.ndarray:
    """The mask without its 8-connected components smaller than `min_area_px` pixels."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return mask
    areas = np.bincount(labels.ravel())
    keep = areas >= min_area_px
    keep[0] = False
    return keep[labels]


def classify_window(rgb_window: np.ndarray, light: np.ndarray, parameters: ClassicalParameters) -> np.ndarray:
    """Class map (0 background, 1 exocrine, 2 islet) of one window, given its light field."""
    normalised = rgb_window.astype(np.float32)
    normalised /= light
    # Smooth the colour channels against sensor noise before any non-linear step: thresholds on
    # smoothed *ratios* would move every outline outwards (the ratio is convex across an edge).
    if parameters.smoothing_sigma_px > 0:
        for channel in range(3):
            normalised[:, :, channel] = ndimage.gaussian_filter(
                normalised[:, :, channel], parameters.smoothing_sigma_px, mode="nearest", truncate=3.0
            )
    red, green, blue = normalised[:, :, 0], normalised[:, :, 1], normalised[:, :, 2]
    # Two features: how much darker than the background the darkest channel is (any tissue),
    # and the red-green chromaticity (dithizone).
    darkness = 1.0 - np.minimum(np.minimum(red, green), blue)
    redness = (red - green) / np.maximum(red + green, 1e-3)
    # Black is not tissue: the dark corners outside a microscope's round field of view (their
    # chromaticity is pure noise, so they must not reach the islet test either).
    lit = np.maximum(np.maximum(red, green), blue) > parameters.black_threshold
    del normalised, red, green, blue
    tissue = remove_small_components((darkness > parameters.tissue_threshold) & lit, parameters.speck_area_px)
    islet = remove_small_components(tissue & (redness > parameters.redness_threshold), parameters.speck_area_px)
    # The soft edge of an islet is dark enough to be tissue before it is red enough to be islet,
    # and so is the edge of a black field-of-view border: an opening (radius 2) removes such thin
    # rims from the exocrine class (real acinar tissue is far thicker).
    exocrine = ndimage.binary_opening(tissue & ~islet, structure=RIM_STRUCTURE, iterations=2)
    classes = np.zeros(rgb_window.shape[:2], dtype=np.uint8)
    classes[exocrine] = EXOCRINE
    classes[islet] = ISLET
    return classes


def tile_windows(height: int, width: int, tile: int, margin: int):
    """Yield (core rows, core cols, window rows, window cols): cores tile the image exactly,
    windows add `margin` on every side (clipped at the borders)."""
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            core_rows, core_cols = slice(top, min(top + tile, height)), slice(left, min(left + tile, width))
            window_rows = slice(max(top - margin, 0), min(top + tile + margin, height))
            window_cols = slice(max(left - margin, 0), min(left + tile + margin, width))
            yield core_rows, core_cols, window_rows, window_cols


def segment(rgb: np.ndarray, parameters: ClassicalParameters | None = None) -> np.ndarray:
    """H×W×3 uint8 RGB -> H×W uint8 class map, tile by tile."""
    parameters = parameters or ClassicalParameters()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"it expects H×W×3 uint8 RGB images, got {rgb.dtype} of shape {rgb.shape}")
    height, width = rgb.shape[:2]
    field, factor = estimate_background(rgb, parameters)
    classes = np.zeros((height, width), dtype=np.uint8)
    for core_rows, core_cols, window_rows, window_cols in tile_windows(
        height, width, parameters.tile_px, parameters.tile_margin_px
    ):
        light = _field_for_window(field, factor, window_rows, window_cols)
        window_classes = classify_window(rgb[window_rows, window_cols], light, parameters)
        inner_rows = slice(core_rows.start - window_rows.start, core_rows.stop - window_rows.start)
        inner_cols = slice(core_cols.start - window_cols.start, core_cols.stop - window_cols.start)
        classes[core_rows, core_cols] = window_classes[inner_rows, inner_cols]
    return classes


class ClassicalModel:
    """The built-in model (no weights): see the module docstring."""

    name = "classical"
    device = "cpu"

    def __init__(self, parameters: ClassicalParameters | None = None) -> None:
        self.parameters = parameters or ClassicalParameters()

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        try:
            return [segment(np.asarray(image), self.parameters) for image in batch]
        except (ValueError, MemoryError) as error:
            raise ModelError(f"The model 'classical' failed while predicting: {str(error).rstrip('.')}.") from error
