"""IsletNet's islet measurement library: decode an image, segment it (classical model by default,
ONNX/torch networks by name), find and measure every islet, report IEQ and sample statistics,
draw the overlay. Shared by the shepherd (and the monitor's synthetic end-to-end image).

Result format: docs/architecture.md "Result JSON per image"; reference formulas: SPEC.md §1.
"""

from services.islets.batching import BatcherClosedError, DynamicBatcher
from services.islets.errors import (
    InvalidImageError,
    InvalidParameterError,
    IsletsError,
    ModelError,
    UnknownModelError,
)
from services.islets.ieq import (
    IEQ_VOLUME_UM3,
    RICORDI_CLASSES,
    SIZE_CLASS_NAMES,
    ellipsoid_ieq,
    equivalent_diameter,
    ricordi_ieq,
    size_class,
    sphere_ieq,
)
from services.islets.images import DEFAULT_MAX_PIXELS, encode_png, encode_png_fast, image_size, load_image
from services.islets.measure import CSV_COLUMNS, islets_csv, measure, summarise_images
from services.islets.models import (
    DEFAULT_MODEL,
    MODELS_DIR_ENV,
    SegmentationModel,
    available_models,
    clear_model_cache,
    get_model,
)
from services.islets.overlay import draw_overlay, render_overlay
from services.islets.pipeline import analyse_image, measure_with_flags, postprocess, preprocess
from services.islets.synthetic import make_dtz_image

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MODEL",
    "IEQ_VOLUME_UM3",
    "MODELS_DIR_ENV",
    "RICORDI_CLASSES",
    "SIZE_CLASS_NAMES",
    "BatcherClosedError",
    "DynamicBatcher",
    "InvalidImageError",
    "InvalidParameterError",
    "IsletsError",
    "ModelError",
    "SegmentationModel",
    "UnknownModelError",
    "analyse_image",
    "available_models",
    "draw_overlay",
    "clear_model_cache",
    "ellipsoid_ieq",
    "encode_png",
    "encode_png_fast",
    "equivalent_diameter",
    "get_model",
    "image_size",
    "islets_csv",
    "load_image",
    "make_dtz_image",
    "measure",
    "measure_with_flags",
    "postprocess",
    "preprocess",
    "render_overlay",
    "ricordi_ieq",
    "size_class",
    "sphere_ieq",
    "summarise_images",
]
