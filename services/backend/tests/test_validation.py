"""Bad inputs of the REST API, each refused with a 4xx and one sentence before anything is
stored or queued. No servers: the app's storage and database are dead ports (`offline_app`), so
any request that got as far as them would answer 503 instead (the first test proves it)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from flask.testing import FlaskClient
from PIL import Image

from services.backend.tests.helpers import assert_plain_error, offline_app, submit
from services.backend.tests.images import dtz_rgb, encode, png_bomb, truncated


@pytest.fixture(scope="module")
def client() -> FlaskClient:
    return offline_app({"MAX_UPLOAD_MB": "5"}).test_client()


@pytest.fixture(scope="module")
def png() -> bytes:
    return encode(dtz_rgb(), "PNG")


def test_a_valid_job_reaches_the_dead_storage(client: FlaskClient, png: bytes) -> None:
    """The premise of this file: what passes validation is stopped by storage, with a 503."""
    assert_plain_error(submit(client, [(png, "a.png")]), 503, "storage at .* cannot be reached")


def test_a_synthetic_training_job_is_refused(client: FlaskClient, png: bytes) -> None:
    assert_plain_error(submit(client, [(png, "a.png")], synthetic="true", training="true"), 400,
                       "synthetic test job cannot be marked for training")
    assert_plain_error(submit(client, [(png, "a.png")], synthetic="sometimes"), 400, "synthetic='sometimes'.*yes/no")


def test_not_an_image_is_415(client: FlaskClient) -> None:
    response = submit(client, [(b"%PDF-1.4 this is a pdf, not a micrograph", "scan.png")])
    assert_plain_error(response, 415, r"^File scan\.png: the file is not an image")


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "TIFF"])
def test_truncated_image_is_400(client: FlaskClient, image_format: str) -> None:
    data = truncated(encode(dtz_rgb(), image_format))
    response = submit(client, [(data, f"cut.{image_format.lower()}")])
    assert_plain_error(response, 400, r"truncated or corrupt|not an image")


def test_one_bad_image_refuses_the_whole_job(client: FlaskClient, png: bytes) -> None:
    response = submit(client, [(png, "good.png"), (truncated(png), "bad.png")])
    assert_plain_error(response, 400, r"^File bad\.png: ")


def test_decompression_bomb_is_refused_before_decoding(client: FlaskClient) -> None:
    response = submit(client, [(png_bomb(), "bomb.png")])
    assert_plain_error(response, 400, r"(900,000,000|30000×30000).*limit of 200,000,000")


def test_upload_over_the_size_limit_is_413(png: bytes) -> None:
    client = offline_app({"MAX_UPLOAD_MB": "0.05"}).test_client()
    big = encode(dtz_rgb(size=(600, 800)), "PNG")
    assert len(big) > 0.05 * 1024 * 1024
    response = submit(client, [(big, "big.png")])
    assert_plain_error(response, 413, r"larger than the limit of 0\.05 MB")


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("0", "must be a positive number"),
        ("-0.5", "must be a positive number"),
        ("nan", "must be a positive number"),
        ("inf", "must be a positive number"),
        ("843", "implausible"),
        ("0,843", "is not a number"),
    ],
)
def test_bad_pixel_size_is_400(client: FlaskClient, png: bytes, value: str, pattern: str) -> None:
    assert_plain_error(submit(client, [(png, "a.png")], pixel_size_um=value), 400, pattern)


def test_other_bad_fields(client: FlaskClient, png: bytes) -> None:
    assert_plain_error(submit(client, [(png, "a.png")], model="resnet-9000"), 400, r"known models are: classical\.$")
    assert_plain_error(submit(client, [(png, "a.png")], priority="urgent"), 400, "not a whole number")
    assert_plain_error(submit(client, [(png, "a.png")], training="maybe"), 400, "yes/no")
    assert_plain_error(submit(client, []), 400, "No images were uploaded")


@pytest.mark.parametrize("job_id", ["not-a-job", "..%2F..%2Fetc", "A" * 32])
def test_malformed_job_id_is_404(client: FlaskClient, job_id: str) -> None:
    for suffix in ("", "/result", "/overlay.png"):
        assert_plain_error(client.get(f"/api/jobs/{job_id}{suffix}"), 404, "no job|no endpoint")


def test_bad_list_flag_is_400(client: FlaskClient) -> None:
    assert_plain_error(client.get("/api/jobs?include_synthetic=perhaps"), 400,
                       "include_synthetic='perhaps' is not a yes/no")


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    assert_plain_error(client.get("/api/nothing"), 404, "no endpoint /api/nothing")
    assert_plain_error(client.delete("/api/jobs"), 405, "DELETE is not allowed")


# -- the bad inputs found by fuzzing and by hand (issue 13) -------------------------------------


@pytest.mark.parametrize(
    ("query", "pattern"),
    [
        ("offset=99999999999999999999", r"^offset=99999999999999999999 is out of range; use a whole number from 0 to"),
        ("offset=-1", "^offset=-1 is out of range"),
        ("offset=1.5", r"^offset='1\.5' is not a whole number"),
        ("limit=0", r"^limit=0 is out of range; use a whole number from 1 to 500\."),
        ("limit=501", "^limit=501 is out of range"),
        ("limit=", "^limit='' is not a whole number"),
        ("state=lost", "^state='lost' is unknown"),
        ("include_synthetic=%7F", r"^include_synthetic='\\x7f' is not a yes/no value"),
        ("include_synthetic=2", "^include_synthetic='2' is not a yes/no value"),
    ],
)
def test_bad_list_parameters_are_400(client: FlaskClient, query: str, pattern: str) -> None:
    assert_plain_error(client.get(f"/api/jobs?{query}"), 400, pattern)


@pytest.mark.parametrize(
    "path",
    [f"/api/jobs/{'a' * 32}/archive.zip?inputs=%7F", f"/api/jobs/{'a' * 32}/archive.zip?inputs=maybe",
     f"/api/jobs/{'a' * 32}/overlay.png?image=-1", f"/api/jobs/{'a' * 32}/overlay.png?image=1e3"],
)
def test_bad_file_parameters_are_400_before_the_job_is_looked_up(client: FlaskClient, path: str) -> None:
    assert_plain_error(client.get(path), 400, r"^(inputs|image)=.* (is not a yes/no value|out of range|not a whole)")


def test_bad_export_flag_is_400(client: FlaskClient) -> None:
    assert_plain_error(client.post("/api/training/export?all=%7F"), 400, r"^all='\\x7f' is not a yes/no value")


@pytest.mark.parametrize("value", ["1e-300", "1e-150", "0.01", "0.049", "20.01", "1e308"])
def test_pixel_size_outside_the_physical_range_is_400(client: FlaskClient, png: bytes, value: str) -> None:
    response = submit(client, [(png, "a.png")], pixel_size_um=value)
    assert_plain_error(response, 400, r"^pixel_size_um=.* is implausible: use 0\.05 to 20 micrometres per pixel")


def grey_image(mode: str, image_format: str) -> bytes:
    """A real DTZ sample converted to a grey mode (16-bit: the 8-bit values scaled to 16 bits)."""
    rgb = Image.fromarray(dtz_rgb())
    grey = rgb.convert("L")
    if mode == "I;16":
        grey = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
        assert grey.mode == "I;16"
    elif mode != "L":
        grey = grey.convert(mode)
    buffer = io.BytesIO()
    grey.save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "image_format"), [("L", "PNG"), ("L", "JPEG"), ("I;16", "TIFF"), ("I;16", "PNG"), ("1", "BMP")]
)
def test_greyscale_images_are_refused(client: FlaskClient, png: bytes, mode: str, image_format: str) -> None:
    data = grey_image(mode, image_format)
    response = submit(client, [(png, "colour.png"), (data, "grey.img")])
    assert_plain_error(response, 400, r"^File grey\.img: DTZ images are colour; this one is greyscale\.$")


def test_a_grey_palette_image_is_greyscale_and_a_colour_palette_is_not(client: FlaskClient) -> None:
    rgb = Image.fromarray(dtz_rgb())
    for source, refused in ((rgb.convert("L"), True), (rgb, False)):
        buffer = io.BytesIO()
        source.convert("P", palette=Image.Palette.ADAPTIVE).save(buffer, format="PNG")
        response = submit(client, [(buffer.getvalue(), "palette.png")])
        assert (response.status_code == 400) is refused, response.get_json()
        if not refused:
            assert response.status_code == 503  # accepted by validation, stopped by the dead storage


def multipart(boundary: str, filename: bytes, content: bytes) -> bytes:
    return (f"--{boundary}\r\n".encode() + b'Content-Disposition: form-data; name="images"; filename="' + filename
            + b'"\r\nContent-Type: image/png\r\n\r\n' + content + f"\r\n--{boundary}--\r\n".encode())


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n small", b"\x89PNG" + b"0" * 600_000])
def test_a_line_break_in_a_file_name_gets_a_sentence_about_the_file_name(client: FlaskClient, content: bytes) -> None:
    body = multipart("IsletBoundary", b"scan\n1.png", content)
    response = client.post("/api/jobs", data=body, content_type="multipart/form-data; boundary=IsletBoundary")
    assert_plain_error(response, 413 if len(content) > 500_000 else 400, r"line break in (it|a file name)")


def test_405_is_json_and_says_which_methods_are_allowed(client: FlaskClient) -> None:
    for method in ("DELETE", "TRACE", "PUT"):
        response = client.open("/api/jobs", method=method)
        assert_plain_error(response, 405, f"^{method} is not allowed on /api/jobs")
        assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}
    assert client.open("/api/health", method="TRACE").headers["Allow"] == "GET, HEAD, OPTIONS"


def test_health_503_carries_retry_after(client: FlaskClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    body = response.get_json()
    assert body["status"] == "unavailable" and "cannot be reached" in body["storage"]
