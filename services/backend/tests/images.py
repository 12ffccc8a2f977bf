"""Test images for the backend and shepherd tests: real synthetic DTZ images in each accepted
format, truncated copies, and a PNG that declares 30000×30000 pixels (a decompression bomb)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

from services.islets import make_dtz_image


def dtz_rgb(
    seed: int = 1, size: tuple[int, int] = (500, 600), diameters_um: tuple[float, ...] = (90, 130)
) -> np.ndarray:
    rgb, _truth = make_dtz_image(seed=seed, size=size, diameters_um=diameters_um)
    return rgb


def encode(rgb: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format=image_format)
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A small, well-formed PNG whose header declares width×height RGB pixels."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    # A few rows of compressed zeros; the rest "would follow" - the decoder must never get there.
    rows = zlib.compress(b"\x00" * (1 + width * 3) * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
