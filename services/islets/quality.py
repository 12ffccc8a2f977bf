"""Per-image quality flags: conditions under which the count and IEQ of an image should not be
trusted as they are, each with a sentence that tells the lab technician what to do.

The checks look at the image (RGB), the class map of the model and the measured result:

- ``unsplit_cluster``: an islet whose outline is far from convex (low solidity) is likely
  several touching islets counted as one;
- ``out_of_focus``: islet edges are soft (variance of the Laplacian across the islet edges,
  relative to the islets' contrast);
- ``overexposed`` / ``underexposed``: the light background is clipped at white, or too dark;
- ``pixel_size_mismatch``: the islet sizes at the given pixel size are outside what isolated
  islets measure (a wrong calibration or objective);
- ``stain_out_of_range``: islets are so weakly stained that the model's red/pale decision is
  uncertain, or reddish tissue was left out as exocrine.

Flags are a list of ``{"code", "message", "value"}`` (value: the measured figure that raised
it), empty for a clean image. The work is done on a subsample and on crops around the islets,
so it costs a few tens of milliseconds on a 3-Mpx image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

ISLET_CLASS, EXOCRINE_CLASS = 2, 1


@dataclass(frozen=True)
class QualityThresholds:
    """Where each flag is raised (figures from synthetic images: clean vs. made to fail)."""

    min_solidity: float = 0.88  # lobed single islets score 0.90 and more, unsplit clumps less
    # Laplacian variance at islet edges / contrast²: a sharp edge scores about 0.025, blurred by a
    # Gaussian of σ = 2 px about 0.0014, of σ = 3 px about 0.0003.
    min_edge_sharpness: float = 0.0006
    max_clipped_share: float = 0.05  # share of pixels with a channel at 250+ (clipped white)
    min_background_level: float = 110.0  # brightest-channel median of the background (0-255)
    max_median_diameter_um: float = 300.0  # median islet diameter above this: pixel size too large
    max_diameter_um: float = 700.0  # or any islet above this
    min_islets_for_size_check: int = 3
    min_median_diameter_um: float = 60.0  # median islet diameter below this: pixel size too small
    max_fragment_share: float = 0.5  # or islet tissue mostly under the minimum diameter
    min_islet_redness: float = 0.30  # median (R-G)/(R+G) of islet pixels; DTZ crimson scores 0.5+
    pink_redness: float = 0.12  # exocrine pixels redder than this look like weakly stained islets
    max_pink_exocrine_share: float = 0.25
    subsample: int = 4  # exposure and stain statistics on every 4th pixel in each direction


def _flag(code: str, value: float, message: str) -> dict:
    return {"code": code, "value": round(float(value), 4), "message": message}


def _redness(rgb: np.ndarray) -> np.ndarray:
    red, green = rgb[..., 0].astype(np.float32), rgb[..., 1].astype(np.float32)
    return (red - green) / np.maximum(red + green, 1.0)


def _unsplit_clusters(result: dict, limits: QualityThresholds) -> list[dict]:
    suspects = [islet for islet in result["islets"] if islet.get("solidity", 1.0) < limits.min_solidity]
    if not suspects:
        return []
    numbers = ", ".join(str(islet["number"]) for islet in suspects[:10]) + (", …" if len(suspects) > 10 else "")
    lowest = min(islet["solidity"] for islet in suspects)
    return [
        _flag(
            "unsplit_cluster",
            lowest,
            f"Islet{'s' if len(suspects) > 1 else ''} {numbers} {'look' if len(suspects) > 1 else 'looks'} like "
            "several touching islets counted as one: check the overlay, and if so spread the sample "
            "(dilute or swirl the dish) and photograph it again.",
        )
    ]


def edge_sharpness(grey: np.ndarray, class_map: np.ndarray, result: dict, max_islets: int = 8) -> float | None:
    """Variance of the Laplacian (σ = 1 px) across the edges of the largest islets, divided by
    the squared contrast between islet and background: about 1/edge-width⁴, independent of how
    dark the stain is. None when there is no islet to judge by."""
    islets = sorted(result["islets"], key=lambda islet: -islet["area_um2"])[:max_islets]
    scores = []
    for islet in islets:
        contour = np.asarray(islet["contour_px"])
        if len(contour) < 3:
            continue
        left, top = np.floor(contour.min(axis=0)).astype(int) - 6
        right, bottom = np.ceil(contour.max(axis=0)).astype(int) + 7
        top, left = max(top, 0), max(left, 0)
        crop = grey[top:bottom, left:right].astype(np.float32)
        inside = (class_map[top:bottom, left:right] == ISLET_CLASS).view(np.uint8)
        # Square neighbourhoods (separable filters, cheap): the band within 2 px of the edge,
        # the core and the surroundings 4 px away from it.
        band = ndimage.maximum_filter(inside, 5).astype(bool) & ~ndimage.minimum_filter(inside, 5).astype(bool)
        core = ndimage.minimum_filter(inside, 9).astype(bool)
        outside = ~ndimage.maximum_filter(inside, 9).astype(bool)
        if not (band.any() and core.any() and outside.any()):
            continue
        contrast = float(np.median(crop[outside]) - np.median(crop[core]))
        if contrast < 10:
            continue
        laplacian = ndimage.gaussian_laplace(crop, 1.0)
        scores.append(float(np.var(laplacian[band])) / contrast**2)
    return float(np.median(scores)) if scores else None


def _focus(grey: np.ndarray, class_map: np.ndarray, result: dict, limits: QualityThresholds) -> list[dict]:
    sharpness = edge_sharpness(grey, class_map, result)
    if sharpness is None or sharpness >= limits.min_edge_sharpness:
        return []
    return [
        _flag(
            "out_of_focus",
            sharpness,
            "The image is out of focus: islet edges are blurred, so sizes and IEQ are uncertain. "
            "Refocus the microscope on the islets and take the picture again.",
        )
    ]


def _exposure(sample: np.ndarray, background: np.ndarray, limits: QualityThresholds) -> list[dict]:
    flags = []
    clipped = float(np.mean(sample.max(axis=-1) >= 250))
    if clipped > limits.max_clipped_share:
        flags.append(
            _flag(
                "overexposed",
                clipped,
                f"The image is overexposed: {clipped:.0%} of it is clipped white, which washes out "
                "pale staining. Lower the exposure time or the lamp intensity and take the picture again.",
            )
        )
    brightest = sample.max(axis=-1)[background]
    brightest = brightest[brightest >= 40]  # not the black corners outside a round field of view
    level = float(np.median(brightest)) if brightest.size else float(np.median(sample.max(axis=-1)))
    if level < limits.min_background_level:
        flags.append(
            _flag(
                "underexposed",
                level,
                "The image is underexposed: the background is dark, so islets and exocrine tissue are "
                "hard to tell apart. Raise the exposure time or the lamp intensity and take the picture again.",
            )
        )
    return flags


def _calibration(result: dict, limits: QualityThresholds) -> list[dict]:
    summary = result["summary"]
    pixel_size = summary["pixel_size_um"]
    diameters = [islet["equivalent_diameter_um"] for islet in result["islets"]]
    hint = (
        f"Check the pixel size entered for this image ({pixel_size:g} µm/px) against the microscope "
        "objective and camera calibration, and upload it again with the right one."
    )
    enough = len(diameters) >= limits.min_islets_for_size_check
    if diameters:
        median, largest = float(np.median(diameters)), max(diameters)
        if (enough and median > limits.max_median_diameter_um) or largest > limits.max_diameter_um:
            return [
                _flag(
                    "pixel_size_mismatch",
                    median,
                    f"The islets measure {median:.0f} µm across on average (largest {largest:.0f} µm), "
                    f"more than isolated islets do (50-400 µm). {hint}",
                )
            ]
    if enough and float(np.median(diameters)) < limits.min_median_diameter_um:
        median = float(np.median(diameters))
        return [
            _flag(
                "pixel_size_mismatch",
                median,
                f"The islets measure {median:.0f} µm across on average, less than isolated islets do "
                f"(most are 100-200 µm). {hint}",
            )
        ]
    if summary["fragmentation"] > limits.max_fragment_share and summary["islet_area_um2"] > 0:
        return [
            _flag(
                "pixel_size_mismatch",
                summary["fragmentation"],
                f"{summary['fragmentation']:.0%} of the islet tissue is in pieces under "
                f"{summary['min_diameter_um']:g} µm, as if the islets were drawn too small. {hint}",
            )
        ]
    return []


def _stain(sample: np.ndarray, classes: np.ndarray, limits: QualityThresholds) -> list[dict]:
    redness = _redness(sample)
    islet = redness[classes == ISLET_CLASS]
    exocrine = redness[classes == EXOCRINE_CLASS]
    weak_islets = islet.size > 0 and float(np.median(islet)) < limits.min_islet_redness
    pink = float(np.mean(exocrine > limits.pink_redness)) if exocrine.size else 0.0
    if not weak_islets and pink <= limits.max_pink_exocrine_share:
        return []
    value = float(np.median(islet)) if weak_islets else pink
    return [
        _flag(
            "stain_out_of_range",
            value,
            "The staining is weaker than the model was made for: some islets may be missed or "
            "measured too small. Check the dithizone solution (fresh, filtered) and the incubation "
            "time, or count this sample by hand.",
        )
    ]


def quality_flags(
    rgb: np.ndarray, class_map: np.ndarray, result: dict, thresholds: QualityThresholds | None = None
) -> list[dict]:
    """The flags of one image (see the module docstring); [] when nothing is wrong."""
    limits = thresholds or QualityThresholds()
    step = limits.subsample
    sample, classes = rgb[::step, ::step], class_map[::step, ::step]
    flags = _unsplit_clusters(result, limits)
    flags += _focus(rgb[..., 1], class_map, result, limits)  # green: where DTZ absorbs most
    flags += _exposure(sample, classes == 0, limits)
    flags += _calibration(result, limits)
    flags += _stain(sample, classes, limits)
    return flags
