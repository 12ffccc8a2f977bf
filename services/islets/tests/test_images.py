"""load_image: every accepted pixel format, and every bad upload refused with one sentence."""

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from services.islets import InvalidImageError, encode_png, encode_png_fast, image_size, load_image, make_dtz_image


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def assert_one_sentence(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message
    assert message[0].isupper() and message.endswith(".")
    assert len(message) < 200


@pytest.fixture
def colour_image() -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


def test_png_round_trip_is_exact(colour_image):
    decoded = load_image(encode_png(colour_image))
    assert decoded.dtype == np.uint8 and decoded.shape == (37, 53, 3)
    assert np.array_equal(decoded, colour_image)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP"])
def test_lossless_formats(colour_image, fmt):
    assert np.array_equal(load_image(encoded(Image.fromarray(colour_image), fmt)), colour_image)


def test_jpeg_decodes_close_to_the_original():
    smooth = np.zeros((64, 64, 3), dtype=np.uint8)
    smooth[:] = (180, 40, 60)
    decoded = load_image(encoded(Image.fromarray(smooth), "JPEG", quality=95))
    assert decoded.shape == (64, 64, 3)
    assert np.abs(decoded.astype(int) - smooth).max() <= 4


def test_grey_image_becomes_three_equal_channels():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    decoded = load_image(encode_png(grey))
    assert decoded.shape == (16, 16, 3)
    assert np.array_equal(decoded[:, :, 0], grey) and np.array_equal(decoded[:, :, 2], grey)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grey_is_scaled_to_8_bit(fmt):
    values = np.array([[0, 257 * 100, 65535, 257 * 7]], dtype=np.uint16)
    image = Image.fromarray(values)  # mode I;16
    decoded = load_image(encoded(image, fmt))
    assert decoded.shape == (1, 4, 3)
    assert decoded[0, :, 0].tolist() == [0, 100, 255, 7]


def test_alpha_is_composited_over_white():
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (200, 20, 40, 255)  # opaque crimson stays
    rgba[0, 1] = (200, 20, 40, 0)  # transparent -> white background
    rgba[1, 0] = (0, 0, 0, 128)  # half black -> mid grey
    decoded = load_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert decoded[0, 0].tolist() == [200, 20, 40]
    assert decoded[0, 1].tolist() == [255, 255, 255]
    assert 125 <= decoded[1, 0, 0] <= 129


def test_palette_and_grey_alpha():
    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    palette.putpalette([200, 20, 40, 240, 240, 230] + [0] * 762)
    decoded = load_image(encoded(palette, "PNG"))
    assert decoded[0, 0].tolist() == [200, 20, 40] and decoded[0, 1].tolist() == [240, 240, 230]
    grey_alpha = Image.fromarray(np.array([[[10, 0], [10, 255]]], dtype=np.uint8), "LA")
    decoded = load_image(encoded(grey_alpha, "PNG"))
    assert decoded[0, 0].tolist() == [255, 255, 255] and decoded[0, 1].tolist() == [10, 10, 10]


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (8, 6), (0, 200, 150, 40))
    decoded = load_image(encoded(cmyk, "JPEG"))
    assert decoded.shape == (6, 8, 3)
    red, green, _blue = decoded[3, 4].astype(int)
    assert red > green + 100  # magenta+yellow ink = red


def test_exif_orientation_is_applied():
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, :10] = (255, 0, 0)  # red on the left
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    decoded = load_image(encoded(image, "JPEG", exif=exif, quality=95))
    assert decoded.shape == (30, 10, 3)  # upright: tall
    assert decoded[2, 5, 0] > 200 and decoded[-3, 5, 0] < 60  # red is now at the top


def test_multi_page_tiff_gives_the_first_page():
    first = Image.new("RGB", (5, 5), (200, 20, 40))
    second = Image.new("RGB", (7, 7), (0, 0, 255))
    data = encoded(first, "TIFF", save_all=True, append_images=[second])
    assert load_image(data).shape == (5, 5, 3)
    assert load_image(data)[0, 0].tolist() == [200, 20, 40]


def test_tiny_image():
    assert load_image(encode_png(np.full((1, 1, 3), 7, dtype=np.uint8))).tolist() == [[[7, 7, 7]]]


def test_image_size_reads_the_header_only(colour_image):
    assert image_size(encode_png(colour_image)) == (53, 37)


# ---- bad uploads: each one an InvalidImageError with one sentence ------------------------------


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def png_header_declaring(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width×height RGB but which holds almost no data."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def noisy(fmt: str) -> bytes:
    rng = np.random.default_rng(3)
    return encoded(Image.fromarray(rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)), fmt)


@pytest.mark.parametrize(
    ("data", "start"),
    [
        (b"", "The file is empty"),
        (b"hello, this is a text file\n" * 10, "The file is not an image"),
        (b"%PDF-1.7\n" + b"\0" * 100, "The file is not an image"),
        (truncated(noisy("PNG")), "The PNG file is truncated or corrupt"),
        (truncated(noisy("JPEG")), "The JPEG file is truncated or corrupt"),
        (truncated(noisy("TIFF")), "The TIFF file is truncated or corrupt"),
        (encoded(Image.new("RGB", (4, 4)), "GIF"), "The file is a GIF image"),
    ],
    ids=["zero-bytes", "text", "pdf", "truncated-png", "truncated-jpeg", "truncated-tiff", "gif"],
)
def test_bad_uploads_are_refused_with_one_sentence(data, start):
    with pytest.raises(InvalidImageError) as caught:
        load_image(data)
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(start)
    assert_one_sentence(str(caught.value))


def test_decompression_bomb_is_refused_from_the_header_before_decoding():
    bomb = png_header_declaring(30_000, 30_000)  # 900 Mpx declared, a few hundred bytes sent
    assert len(bomb) < 200
    started = time.monotonic()
    with pytest.raises(InvalidImageError) as caught:
        load_image(bomb)
    assert time.monotonic() - started < 1.0  # refused without allocating 2.7 GB
    message = str(caught.value)
    assert "900,000,000 pixels" in message and "200,000,000" in message
    assert_one_sentence(message)


def test_the_pixel_limit_is_configurable():
    image = encode_png(np.zeros((100, 100, 3), dtype=np.uint8))
    assert load_image(image, max_pixels=10_000).shape == (100, 100, 3)
    with pytest.raises(InvalidImageError) as caught:
        load_image(image, max_pixels=9_999)
    assert str(caught.value).startswith("The image is 100×100 pixels (10,000), more than the limit of 9,999")


def test_zero_size_image_is_refused():
    # Pillow cannot write a 0×N PNG; patch a valid one's IHDR to declare width 0.
    data = bytearray(png_header_declaring(0, 10))
    with pytest.raises(InvalidImageError) as caught:
        load_image(bytes(data))
    assert_one_sentence(str(caught.value))


def test_encode_png_refuses_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((2, 2, 3), dtype=np.float32))


def test_oversized_image_below_pillows_own_limit_gets_our_check():
    with pytest.raises(InvalidImageError) as caught:
        load_image(png_header_declaring(15_000, 15_000))  # 225 Mpx: over our 200 M, under Pillow's 2x
    assert str(caught.value).startswith("The image is 15000×15000 pixels (225,000,000), more than the limit")


@pytest.mark.parametrize("shape", [(1, 1, 3), (37, 53, 3), (300, 41, 3), (9, 7)])
def test_fast_png_round_trips_exactly_through_pillow(shape: tuple[int, ...]) -> None:
    """`encode_png_fast` (the overlay's encoder) is a plain lossless PNG: Pillow reads back every
    pixel, grey and RGB, across strip boundaries (strip_rows=4) and for non-contiguous input."""
    rng = np.random.default_rng(sum(shape))
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    for array in (pixels, pixels[::-1]):  # the second is a view with negative strides
        for strip_rows in (4, 256):
            png = encode_png_fast(array, strip_rows=strip_rows)
            with Image.open(io.BytesIO(png)) as image:
                image.load()
                assert image.format == "PNG" and image.mode == ("L" if len(shape) == 2 else "RGB")
                assert np.array_equal(np.asarray(image), array)


def test_fast_png_is_no_larger_than_pillows_on_a_dtz_image() -> None:
    rgb, _truth = make_dtz_image(seed=3, size=(600, 800), uneven_illumination=0.3)
    fast, pillow = encode_png_fast(rgb), encode_png(rgb)
    assert np.array_equal(load_image(fast), rgb)
    assert len(fast) <= len(pillow) * 1.05


def test_fast_png_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="expects uint8 pixels, got float64"):
        encode_png_fast(np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match=r"expects H×W or H×W×3 pixels, got shape \(2, 2, 4\)"):
        encode_png_fast(np.zeros((2, 2, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="at least one pixel"):
        encode_png_fast(np.zeros((0, 5, 3), dtype=np.uint8))
