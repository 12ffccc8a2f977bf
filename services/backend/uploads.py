"""Checking an uploaded image without decoding its pixels: format, size and colour mode come from
the header (Pillow opens lazily), and a truncated file is caught by a walk over its structure
(PNG chunks and their checksums, TIFF strip extents, the BMP file size) or, for JPEG, a decode at
1/8 scale. Memory stays a few MB whatever the pixel count; the shepherd decodes the image later
(and fails the job with a sentence if it is corrupt in a way no structure shows).
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass

from PIL import Image

import services.islets as islets

# Pillow modes without colour. DTZ (dithizone) stains islets red: a grey image cannot be measured.
GREYSCALE_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
GREYSCALE = "DTZ images are colour; this one is greyscale"
_TIFF_STRIPS = ((273, 279), (324, 325))  # (StripOffsets, StripByteCounts), (TileOffsets, TileByteCounts)
_JPEG_DRAFT_SCALE = 8


class UploadRefused(Exception):
    """The file cannot be a job's image; `message` is one sentence (no trailing file name)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int
    mode: str


def inspect_image(data: bytes, max_pixels: int, *, looks_like_image: bool) -> ImageHeader:
    """The image's header after every check; `UploadRefused` (400, or 415 when the bytes do not
    even start like an image) otherwise."""
    try:
        islets.image_size(data, max_pixels)  # format, declared size and bombs, from the header
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                header = ImageHeader(image.format or "", image.width, image.height, image.mode)
                if _is_greyscale(image):
                    raise UploadRefused(400, f"{GREYSCALE}.")
                _check_complete(image, data)
    except islets.InvalidImageError as problem:
        raise UploadRefused(400 if looks_like_image else 415, str(problem)) from None
    return header


def _is_greyscale(image: Image.Image) -> bool:
    if image.mode in GREYSCALE_MODES:
        return True
    if image.mode in ("P", "PA") and image.palette is not None:
        # The palette as the header holds it (getpalette() would decode the pixels).
        raw = image.palette.palette
        if getattr(image.palette, "rawmode", None) in (None, "RGB") and isinstance(raw, bytes | bytearray):
            return all(raw[i] == raw[i + 1] == raw[i + 2] for i in range(0, len(raw) - 2, 3))
    return False


def _check_complete(image: Image.Image, data: bytes) -> None:
    """Raise InvalidImageError when the file is cut short or its structure is broken."""
    kind = "JPEG" if image.format == "MPO" else image.format
    try:
        if image.format == "PNG":
            image.verify()  # every chunk up to IEND with its CRC; no pixel is decompressed
        elif image.format in ("JPEG", "MPO"):
            size = (math.ceil(image.width / _JPEG_DRAFT_SCALE), math.ceil(image.height / _JPEG_DRAFT_SCALE))
            image.draft("RGB", size)
            image.load()  # the whole stream at 1/8 scale: 1/64 of the pixels
        elif image.format == "TIFF":
            _check_tiff_extents(image, len(data))
        elif image.format == "BMP":
            declared = int.from_bytes(data[2:6], "little")
            if declared > len(data):
                raise OSError(f"BMP declares {declared} bytes, got {len(data)}")
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise islets.InvalidImageError(f"The {kind} file is truncated or corrupt; upload it again.") from error


def _check_tiff_extents(image: Image.Image, length: int) -> None:
    tags = getattr(image, "tag_v2", {})
    for offsets_tag, counts_tag in _TIFF_STRIPS:
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets is None or counts is None:
            continue
        offsets = offsets if isinstance(offsets, tuple) else (offsets,)
        counts = counts if isinstance(counts, tuple) else (counts,)
        if any(offset + count > length for offset, count in zip(offsets, counts, strict=False)):
            raise OSError("TIFF strips reach past the end of the file")
