"""Pure input parsing of the job routes: safe file names, pixel sizes, flags, content sniffing."""

from __future__ import annotations

import pytest

from services.backend import params
from services.backend.config import BackendConfig, ConfigError
from services.backend.errors import ApiError
from services.backend.jobs_api import safe_name, sniff_content_type


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("../../x.png", "x.png"),
        ("/etc/passwd", "passwd"),
        ("C:/Users/lab/scan 01.tif", "scan_01.tif"),
        ("..", "image-3"),
        ("", "image-3"),
        (None, "image-3"),
        (".hidden.png", "hidden.png"),
        ("Ínsel ö.jpg", "Insel_o.jpg"),
        ("a" * 300 + ".tiff", "a" * 95 + ".tiff"),
    ],
)
def test_safe_name(given: str | None, expected: str) -> None:
    name = safe_name(given, 3)
    assert name == expected
    assert "/" not in name and not name.startswith(".") and len(name) <= 100


def test_pixel_size() -> None:
    size = params.PIXEL_SIZE
    assert size.parse(None) == 0.843 and size.parse("", 1.2) == 1.2
    assert size.parse(" 1.5 ") == 1.5
    assert (size.parse("0.05"), size.parse("20")) == (0.05, 20)
    for bad in ("0", "-1", "nan", "inf", "1e9", "abc", "1e-300", "0.01", "20.5", "100"):
        with pytest.raises(ApiError) as caught:
            size.parse(bad)
        assert caught.value.status == 400 and caught.value.message.endswith(".")


def test_flags() -> None:
    flag = params.Flag("training")
    assert [flag.parse(v) for v in ("true", "1", "on", "Yes", "false", "0", "off", None)] == [
        True, True, True, True, False, False, False, False,
    ]  # fmt: skip
    for bad in ("", "maybe", "\x7f", "2"):
        with pytest.raises(ApiError, match=r"training=.* is not a yes/no value; use true or false\."):
            flag.parse(bad)


def test_whole_numbers() -> None:
    assert params.PRIORITY.parse("10") == 10 and params.PRIORITY.parse(None) == 0
    assert params.OFFSET.parse("+7") == 7 and params.OFFSET.parse(" 3 ") == 3
    with pytest.raises(ApiError, match=r"priority=5000 is out of range; use a whole number from -1000 to 1000\."):
        params.PRIORITY.parse("5000")
    with pytest.raises(ApiError, match=r"offset=99999999999999999999 is out of range"):
        params.OFFSET.parse("99999999999999999999")
    with pytest.raises(ApiError, match=r"offset=-1 is out of range"):
        params.OFFSET.parse("-1")
    for bad in ("", "1.5", "1_000", "١٢", "0x10", "9" * 31):
        with pytest.raises(ApiError, match="is not a whole number"):
            params.LIMIT.parse(bad)


def test_sniffing() -> None:
    assert sniff_content_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert sniff_content_type(b"\xff\xd8\xff\xe0") == "image/jpeg"
    assert sniff_content_type(b"II*\x00") == "image/tiff"
    assert sniff_content_type(b"%PDF-1.7") is None


def test_config_from_env() -> None:
    config = BackendConfig.from_env({"MAX_UPLOAD_MB": "2"})
    assert config.max_content_length == 2 * 1024 * 1024 and config.max_image_pixels == 200_000_000
    with pytest.raises(ConfigError, match=r"MAX_UPLOAD_MB='lots' is not a number"):
        BackendConfig.from_env({"MAX_UPLOAD_MB": "lots"})
