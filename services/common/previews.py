"""Overlay previews: the small JPEG copy of an image's overlay that reports embed. The shepherd
stores one beside each overlay (`JobKeys.preview`), so building a PDF never decodes full-size
overlays; for older jobs without one, the backend makes it from the overlay on the fly."""

from __future__ import annotations

import io

from PIL import Image

# At most this many pixels on the longer side: about 240 dpi across a report's 170 mm text width.
PREVIEW_MAX_PX = 1600
PREVIEW_JPEG_QUALITY = 85
_JPEG_MAGIC = b"\xff\xd8\xff"


def overlay_preview(image_bytes: bytes) -> bytes:
    """`image_bytes` (PNG or JPEG) as a JPEG of at most `PREVIEW_MAX_PX` on its longer side; a
    JPEG that is already small enough comes back unchanged."""
    with Image.open(io.BytesIO(image_bytes)) as image:
        if image_bytes.startswith(_JPEG_MAGIC) and max(image.size) <= PREVIEW_MAX_PX:
            return image_bytes
        image.draft("RGB", (PREVIEW_MAX_PX, PREVIEW_MAX_PX))  # JPEG: decode at a reduced scale
        rgb = image.convert("RGB")
    return preview_jpeg(rgb)


def preview_jpeg(image: Image.Image) -> bytes:
    """A Pillow image (the overlay just drawn) as the preview JPEG, without a PNG round trip: at
    most `PREVIEW_MAX_PX` on its longer side. The image itself is left as it was."""
    rgb = image.convert("RGB") if image.mode != "RGB" else image
    scale = PREVIEW_MAX_PX / max(rgb.size)
    if scale < 1:
        size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
        rgb = rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=PREVIEW_JPEG_QUALITY)
    return buffer.getvalue()
