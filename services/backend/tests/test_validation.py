"""Bad inputs of the REST API, each refused with a 4xx and one sentence before anything is
stored or queued. No servers: the app's storage and database are dead ports (`offline_app`), so
any request that got as far as them would answer 503 instead (the first test proves it)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

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
