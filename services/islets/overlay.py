"""The overlay picture: islet outlines and their numbers (the same numbers as the table) drawn
over the sample image, as PNG. Very large images are scaled down first so the picture stays a
size a browser shows and a PNG encoder finishes quickly."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from services.islets.images import encode_png

MAX_OVERLAY_SIDE_PX = 4096
OUTLINE_RGB = (0, 230, 90)  # green: stands out against crimson, pale tissue and background
LABEL_TEXT_RGB = (255, 255, 255)
LABEL_BOX_RGB = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed small bitmap font
        return ImageFont.load_default()


def render_overlay(rgb: np.ndarray, result: dict, max_side_px: int = MAX_OVERLAY_SIDE_PX) -> bytes:
    """PNG of the image with each islet's contour and number; scaled so neither side exceeds
    `max_side_px` (coordinates in the result stay in full-image pixels)."""
    image = Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB")
    scale = min(1.0, max_side_px / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.BILINEAR)
    draw = ImageDraw.Draw(image)
    side = max(image.size)
    line_width = max(2, round(side / 600))
    font = _font(max(12, round(side / 50)))
    for islet in result.get("islets", []):
        points = [(x * scale, y * scale) for x, y in islet.get("contour_px", [])]
        if len(points) >= 2:
            draw.line([*points, points[0]], fill=OUTLINE_RGB, width=line_width, joint="curve")
    # Numbers after all outlines, so no outline crosses a label.
    for islet in result.get("islets", []):
        x, y = islet["centroid_px"]
        text = str(islet["number"])
        left, top, right, bottom = draw.textbbox((x * scale, y * scale), text, font=font, anchor="mm")
        draw.rectangle((left - 2, top - 2, right + 2, bottom + 2), fill=LABEL_BOX_RGB)
        draw.text((x * scale, y * scale), text, fill=LABEL_TEXT_RGB, font=font, anchor="mm")
    return encode_png(np.asarray(image))
