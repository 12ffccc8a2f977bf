"""The overlay picture: islet outlines and their numbers (the same numbers as the table) drawn
over the sample image, as PNG. Very large images are scaled down first so the picture stays a
size a browser shows and a PNG encoder finishes quickly."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from services.islets.images import encode_png_fast

MAX_OVERLAY_SIDE_PX = 4096
OUTLINE_RGB = (0, 230, 90)  # green: stands out against crimson, pale tissue and background
LABEL_TEXT_RGB = (255, 255, 255)
LABEL_BOX_RGB = (20, 20, 20)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed small bitmap font
        return ImageFont.load_default()


def _shrink(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each factor×factor block (uint8), computed a strip of rows at a time."""
    rows, cols = rgb.shape[0] // factor, rgb.shape[1] // factor
    out = np.empty((rows, cols, 3), dtype=np.uint8)
    step = 64  # output rows per strip
    for top in range(0, rows, step):
        count = min(step, rows - top)
        strip = rgb[top * factor : (top + count) * factor, : cols * factor].astype(np.float32)
        out[top : top + count] = np.rint(strip.reshape(count, factor, cols, factor, 3).mean(axis=(1, 3)))
    return out


def render_overlay(rgb: np.ndarray, result: dict, max_side_px: int = MAX_OVERLAY_SIDE_PX) -> bytes:
    """PNG of the image with each islet's contour and number; scaled so neither side exceeds
    `max_side_px` (coordinates in the result stay in full-image pixels)."""
    return encode_png_fast(np.asarray(draw_overlay(rgb, result, max_side_px)))


def draw_overlay(rgb: np.ndarray, result: dict, max_side_px: int = MAX_OVERLAY_SIDE_PX) -> Image.Image:
    """The overlay picture of :func:`render_overlay` as a Pillow RGB image, not yet encoded: a
    caller that needs it in two encodings (the PNG and a small preview) draws it once."""
    rgb = np.asarray(rgb, dtype=np.uint8)
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side_px / max(height, width))
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    # Shrink by whole blocks in numpy first, strip by strip: a full-size Pillow copy of a
    # 10 000² image would cost 400 MB (Pillow keeps RGB in 4 bytes per pixel).
    factor = int(1 / scale) if scale < 1.0 else 1
    image = Image.fromarray(_shrink(rgb, factor) if factor > 1 else rgb)
    if image.size != target:
        image = image.resize(target, Image.BILINEAR)
    scale = target[0] / width
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
    return image
