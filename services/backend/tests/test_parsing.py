"""Pure input parsing of the job routes: safe file names, pixel sizes, flags, content sniffing."""

from __future__ import annotations

import pytest

from services.backend.config import BackendConfig, ConfigError
from services.backend.errors import ApiError
from services.backend.jobs_api import parse_bool, parse_pixel_size, parse_priority, safe_name, sniff_content_type


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
    settings = BackendConfig()
    assert parse_pixel_size(None, settings) == 0.843
    assert parse_pixel_size(" 1.5 ", settings) == 1.5
    assert parse_pixel_size("100", settings) == 100
    for bad in ("0", "-1", "nan", "inf", "1e9", "abc"):
        with pytest.raises(ApiError) as caught:
            parse_pixel_size(bad, settings)
        assert caught.value.status == 400 and caught.value.message.endswith(".")


def test_flags_and_priority() -> None:
    assert [parse_bool("training", v) for v in ("true", "1", "on", "false", "0", "", None)] == [
        True, True, True, False, False, False, False,
    ]  # fmt: skip
    assert parse_priority("10") == 10 and parse_priority(None) == 0
    with pytest.raises(ApiError, match="out of range"):
        parse_priority("5000")


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
