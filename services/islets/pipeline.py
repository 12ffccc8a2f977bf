"""The three stages the shepherd runs per image — preprocess (CPU), model (GPU when present),
postprocess (CPU) — and their composition for callers that want one call per image.

The stages are separate so the shepherd can batch the model stage across jobs.
"""

from __future__ import annotations

import numpy as np

from services.islets.images import DEFAULT_MAX_PIXELS, load_image
from services.islets.measure import measure
from services.islets.models import DEFAULT_MODEL, get_model
from services.islets.overlay import render_overlay
from services.islets.quality import quality_flags


def preprocess(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Uploaded bytes -> H×W×3 uint8 RGB (InvalidImageError for bad uploads).

    Colour and illumination normalisation belong to each model (the classical model flat-fields
    against the image's own background; networks were trained on raw RGB), so none is done here.
    """
    return load_image(data, max_pixels=max_pixels)


def postprocess(
    rgb: np.ndarray, class_map: np.ndarray, pixel_size_um: float, model_name: str, min_diameter_um: float = 50.0
) -> tuple[dict, bytes]:
    """Class map -> (result dict with its quality flags, overlay PNG bytes)."""
    result = measure_with_flags(rgb, class_map, pixel_size_um, model_name, min_diameter_um)
    return result, render_overlay(rgb, result)


def measure_with_flags(
    rgb: np.ndarray, class_map: np.ndarray, pixel_size_um: float, model_name: str, min_diameter_um: float = 50.0
) -> dict:
    """:func:`measure`, plus the image's ``quality_flags`` (services.islets.quality)."""
    result = measure(class_map, pixel_size_um=pixel_size_um, min_diameter_um=min_diameter_um, model=model_name)
    result["quality_flags"] = quality_flags(rgb, class_map, result)
    return result


def analyse_image(
    rgb: np.ndarray, pixel_size_um: float = 0.843, model: str = DEFAULT_MODEL, min_diameter_um: float = 50.0
) -> dict:
    """One image end to end: the named model's class map, then :func:`measure` and the quality flags."""
    class_map = get_model(model).predict([rgb])[0]
    return measure_with_flags(rgb, class_map, pixel_size_um, model, min_diameter_um)
