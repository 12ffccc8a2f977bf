"""The job routes of the REST API: health, models, submitting jobs, job state, results, overlays,
queue statistics. Inputs are validated completely before anything is stored; a job becomes
visible to workers only after its inputs are in storage, and a submit that fails half-way removes
what it wrote (see docs/architecture.md)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

import services.islets as islets
from services.backend.config import BackendConfig
from services.backend.errors import ApiError
from services.backend.openapi import error, json_response
from services.common.database import JobDatabase
from services.common.errors import ServiceError, Unavailable
from services.common.jobs import Job, JobRecords
from services.common.layout import JobKeys, new_job_id
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

blueprint = Blueprint("jobs", __name__, url_prefix="/api")

MAX_NAME_LENGTH = 100
# Words a yes/no form field or query flag may use.
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off", ""})
# Magic numbers of the formats the islet library accepts: an upload that starts like one of these
# is an image that is broken (400); anything else is the wrong kind of file (415).
_IMAGE_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
    b"II+\x00": "image/tiff",
    b"MM\x00+": "image/tiff",
    b"BM": "image/bmp",
}
# Fields of the job row that are served; lease internals stay inside.
_PUBLIC_JOB_FIELDS = (
    "id", "state", "progress", "error", "model", "pixel_size_um", "priority", "training", "synthetic", "image_count",
    "file_names", "attempts", "summary", "created_at", "started_at", "finished_at", "exported_at", "pruned_at",
)  # fmt: skip


# -- helpers shared with other blueprints -------------------------------------------------------


def store() -> ObjectStore:
    return current_app.extensions["isletnet.store"]


def database() -> JobDatabase:
    return current_app.extensions["isletnet.database"]


def records() -> JobRecords:
    return JobRecords(database())


def config() -> BackendConfig:
    return current_app.config["ISLETNET_CONFIG"]


def public_job(job: Job) -> dict[str, Any]:
    data = job.to_dict()
    return {name: data[name] for name in _PUBLIC_JOB_FIELDS}


def require_job(job_id: str) -> Job:
    """The job, or a 404 for unknown and malformed ids alike."""
    job = records().get(job_id)
    if job is None:
        raise ApiError(404, f"There is no job {job_id[:64]!r}; check the id (GET /api/jobs lists them).")
    return job


def require_done(job: Job) -> None:
    if job.pruned_at is not None:
        raise ApiError(410, f"The results of job {job.id} were deleted by the retention policy.")
    if job.state == "failed":
        raise ApiError(409, f"Job {job.id} failed, so it has no result: {job.error or 'no reason recorded.'}")
    if job.state != "done":
        raise ApiError(
            409, f"Job {job.id} is {job.state} ({job.progress:.0%} done); the result is ready when its state is done."
        )


def load_result(job: Job) -> dict[str, Any]:
    """The job's result document as GET /api/jobs/<id>/result serves it: 409 until done, 410 when
    pruned or when its files are missing. The reports are built from exactly this document."""
    require_done(job)
    keys = JobKeys(job.id)
    try:
        summary = json.loads(store().get(keys.summary))
        images = []
        for index, name in enumerate(job.file_names):
            result = json.loads(store().get(keys.result(index)))
            images.append({"index": index, "name": name, **result})
    except ObjectNotFound:
        raise ApiError(
            410, f"The result files of job {job.id} are missing from storage (deleted by hand or lost)."
        ) from None
    return {"id": job.id, "summary": summary, "images": images}


def ensure_bucket_once() -> None:
    """Create the bucket on the first submit if the start-up attempt could not (storage was down)."""
    if not current_app.extensions.get("isletnet.bucket_ready"):
        store().ensure_bucket()
        current_app.extensions["isletnet.bucket_ready"] = True


# -- input parsing ------------------------------------------------------------------------------


def parse_pixel_size(raw: str | None, settings: BackendConfig) -> float:
    if raw is None or raw.strip() == "":
        return settings.default_pixel_size_um
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(
            400, f"pixel_size_um={raw[:40]!r} is not a number; give micrometres per pixel, e.g. 0.843."
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ApiError(400, f"pixel_size_um must be a positive number of micrometres per pixel, not {raw[:40]!r}.")
    if value > settings.max_pixel_size_um:
        raise ApiError(
            400,
            f"pixel_size_um={value:g} is implausible (more than {settings.max_pixel_size_um:g} µm per pixel); "
            "check the unit (micrometres per pixel, e.g. 0.843).",
        )
    return value


def parse_priority(raw: str | None) -> int:
    if raw is None or raw.strip() == "":
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(
            400, f"priority={raw[:40]!r} is not a whole number; use e.g. 0 (normal) or 10 (urgent)."
        ) from None
    if not -1000 <= value <= 1000:
        raise ApiError(400, f"priority={value} is out of range; use a whole number from -1000 to 1000.")
    return value


def parse_bool(name: str, raw: str | None) -> bool:
    value = (raw or "").strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ApiError(400, f"{name}={raw[:40]!r} is not a yes/no value; use true or false.")


def parse_model(raw: str | None, settings: BackendConfig) -> str:
    name = (raw or "").strip() or settings.default_model
    known = list(islets.available_models())
    if name not in known:
        raise ApiError(400, f"Unknown model {name[:60]!r}; the known models are: {', '.join(known)}.")
    return name


def safe_name(filename: str | None, index: int) -> str:
    """A file name that is safe as the last part of an S3 key and in a download header: the base
    name only (`../../x.png` -> `x.png`), ASCII, at most 100 characters, extension kept."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = secure_filename(base)
    if not name or name.startswith("."):
        name = f"image-{index}{('.' + name.rsplit('.', 1)[-1]) if '.' in name else ''}"
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, extension = name.rpartition(".")
        extension = extension[:10] if dot else ""
        name = (stem if dot else name)[: MAX_NAME_LENGTH - len(extension) - 1] + (f".{extension}" if extension else "")
    return name


def sniff_content_type(data: bytes) -> str | None:
    for signature, content_type in _IMAGE_SIGNATURES.items():
        if data.startswith(signature):
            return content_type
    return None


@dataclass
class Upload:
    index: int
    name: str
    data: bytes
    content_type: str
    width: int
    height: int


def read_uploads(files: list[FileStorage], settings: BackendConfig) -> list[Upload]:
    """Read and fully decode every upload; the first bad one refuses the whole request."""
    if not files:
        raise ApiError(400, "No images were uploaded; send one or more files in the multipart field 'images'.")
    if len(files) > settings.max_images_per_job:
        raise ApiError(
            400, f"{len(files)} images is more than the limit of {settings.max_images_per_job} per job; split them."
        )
    uploads: list[Upload] = []
    for index, file in enumerate(files):
        name = safe_name(file.filename, index)
        data = file.read()
        content_type = sniff_content_type(data)
        try:
            pixels = islets.load_image(data, settings.max_image_pixels)
        except islets.InvalidImageError as problem:
            message = str(problem)
            status = 400 if content_type else 415
            raise ApiError(status, f"File {name}: {message[:1].lower()}{message[1:]}") from None
        height, width = int(pixels.shape[0]), int(pixels.shape[1])
        del pixels  # decoded only to prove the file is whole; the worker decodes again
        uploads.append(Upload(index, name, data, content_type or "application/octet-stream", width, height))
    return uploads


# -- routes -------------------------------------------------------------------------------------


@blueprint.get("/health")
def health() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    for name, check in (("storage", store().ping), ("queue", database().ping)):
        try:
            check()
            checks[name] = "ok"
        except ServiceError as problem:
            checks[name] = str(problem)
    healthy = all(value == "ok" for value in checks.values())
    return jsonify({"status": "ok" if healthy else "unavailable", **checks}), 200 if healthy else 503


@blueprint.get("/models")
def models() -> Response:
    return jsonify({"models": list(islets.available_models()), "default": config().default_model})


@blueprint.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    settings = config()
    form = request.form
    pixel_size_um = parse_pixel_size(form.get("pixel_size_um"), settings)
    model = parse_model(form.get("model"), settings)
    priority = parse_priority(form.get("priority"))
    training = parse_bool("training", form.get("training"))
    synthetic = parse_bool("synthetic", form.get("synthetic"))
    if synthetic and training:
        raise ApiError(400, "A synthetic test job cannot be marked for training; leave out one of the two fields.")
    uploads = read_uploads(request.files.getlist("images"), settings)

    job_id = new_job_id()
    keys = JobKeys(job_id)
    request_document = {
        "id": job_id,
        "submitted_at": datetime.now(UTC).isoformat(),
        "pixel_size_um": pixel_size_um,
        "model": model,
        "priority": priority,
        "training": training,
        "synthetic": synthetic,
        "images": [
            {
                "index": upload.index,
                "name": upload.name,
                "key": keys.input(upload.index, upload.name),
                "content_type": upload.content_type,
                "bytes": len(upload.data),
                "sha256": hashlib.sha256(upload.data).hexdigest(),
                "width": upload.width,
                "height": upload.height,
            }
            for upload in uploads
        ],
    }
    try:
        # Inputs first, job row last: a worker can never see a job whose files are missing.
        ensure_bucket_once()
        for upload in uploads:
            store().put(keys.input(upload.index, upload.name), upload.data, upload.content_type)
        store().put(keys.request, json.dumps(request_document, indent=2).encode(), "application/json")
        records().create_job(
            job_id=job_id,
            model=model,
            pixel_size_um=pixel_size_um,
            file_names=[upload.name for upload in uploads],
            priority=priority,
            training=training,
            synthetic=synthetic,
        )
    except ServiceError as problem:
        _remove_partial_job(keys.prefix)
        if isinstance(problem, Unavailable):
            raise ApiError(
                503,
                f"The job was not accepted because {_lower_first(str(problem))}",
                {"Retry-After": str(settings.retry_after_s)},
            ) from None
        raise
    log.info("job %s queued: %d images, model %s, priority %d%s", job_id, len(uploads), model, priority,
             " (synthetic test job)" if synthetic else "")
    return jsonify({"id": job_id, "state": "queued"}), 201, {"Location": f"/api/jobs/{job_id}"}


def _remove_partial_job(prefix: str) -> None:
    try:
        store().delete_prefix(prefix)
    except ServiceError as problem:
        # Nothing refers to these objects (no job row); the pruner's orphan sweep removes them.
        log.warning("could not remove the partial upload %s: %s", prefix, problem)


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


@blueprint.get("/jobs")
def list_jobs() -> Response:
    try:
        limit = min(500, max(1, int(request.args.get("limit", 50))))
        offset = max(0, int(request.args.get("offset", 0)))
    except ValueError:
        raise ApiError(400, "limit and offset must be whole numbers.") from None
    state = request.args.get("state") or None
    if state is not None and state not in ("queued", "running", "done", "failed"):
        raise ApiError(400, f"state={state[:20]!r} is unknown; use queued, running, done or failed.")
    # Monitoring test jobs (e2e probe, deploy gate) are not users' jobs: shown only when asked.
    include_synthetic = parse_bool("include_synthetic", request.args.get("include_synthetic"))
    jobs = records().list_jobs(limit=limit, offset=offset, state=state, include_synthetic=include_synthetic)
    return jsonify({"jobs": [public_job(job) for job in jobs]})


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(public_job(require_job(job_id)))


@blueprint.get("/jobs/<job_id>/result")
def get_result(job_id: str) -> Response:
    return jsonify(load_result(require_job(job_id)))


@blueprint.get("/jobs/<job_id>/overlay.png")
def get_overlay(job_id: str) -> Response:
    job = require_job(job_id)
    raw = request.args.get("image", "0")
    if not re.fullmatch(r"\d{1,6}", raw):
        raise ApiError(400, f"image={raw[:20]!r} is not an image number; use 0 for the first image.")
    index = int(raw)
    if index >= job.image_count:
        raise ApiError(404, f"Job {job.id} has {job.image_count} images, numbered from 0; there is no image {index}.")
    require_done(job)
    try:
        png = store().get(JobKeys(job.id).overlay(index))
    except ObjectNotFound:
        raise ApiError(410, f"The overlay of image {index} of job {job.id} is missing from storage.") from None
    response = Response(png, mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@blueprint.get("/queue")
def queue_stats() -> Response:
    return jsonify(LeaseQueue(database()).queue_stats().to_dict())


# -- OpenAPI ------------------------------------------------------------------------------------

_JOB_ID = {"$ref": "#/components/parameters/JobId"}
_NOT_FOUND = error("No job with this id (malformed ids included).")
_UNAVAILABLE = error("Storage or the job database is down; retry after the Retry-After seconds.")

OPENAPI_PATHS: dict[str, Any] = {
    "/api/health": {
        "get": {
            "summary": "Whether the backend, its storage and its job database work",
            "operationId": "health",
            "responses": {
                "200": json_response(
                    "All dependencies answer.",
                    {"type": "object", "properties": {k: {"type": "string"} for k in ("status", "storage", "queue")}},
                ),
                "503": json_response(
                    "A dependency is down; its field holds the reason.",
                    {"type": "object", "properties": {k: {"type": "string"} for k in ("status", "storage", "queue")}},
                ),
            },
        }
    },
    "/api/models": {
        "get": {
            "summary": "Models a job can use",
            "operationId": "listModels",
            "responses": {
                "200": json_response(
                    "Model names and the default.",
                    {
                        "type": "object",
                        "properties": {
                            "models": {"type": "array", "items": {"type": "string"}},
                            "default": {"type": "string"},
                        },
                    },
                )
            },
        }
    },
    "/api/jobs": {
        "get": {
            "summary": "Jobs, newest first",
            "operationId": "listJobs",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                },
                {
                    "name": "include_synthetic",
                    "in": "query",
                    "description": "1 to list the synthetic test jobs of the monitor and the deploy gate too.",
                    "schema": {"type": "boolean", "default": False},
                },
            ],
            "responses": {
                "200": json_response(
                    "The jobs.",
                    {
                        "type": "object",
                        "properties": {"jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}},
                    },
                ),
                "400": error("Bad limit, offset, state or include_synthetic."),
            },
        },
        "post": {
            "summary": "Submit images for analysis",
            "operationId": "submitJob",
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["images"],
                            "properties": {
                                "images": {"type": "array", "items": {"type": "string", "format": "binary"}},
                                "pixel_size_um": {
                                    "type": "number",
                                    "default": 0.843,
                                    "exclusiveMinimum": True,
                                    "minimum": 0,
                                    "maximum": 100,
                                },
                                "model": {"type": "string", "default": "classical"},
                                "priority": {"type": "integer", "default": 0},
                                "training": {"type": "boolean", "default": False},
                                "synthetic": {
                                    "type": "boolean",
                                    "default": False,
                                    "description": "A monitoring test job: left out of job lists (unless "
                                    "include_synthetic=1), statistics and training exports; pruned as usual. "
                                    "Cannot be combined with training.",
                                },
                            },
                        }
                    }
                },
            },
            "responses": {
                "201": json_response(
                    "The job is stored and queued.",
                    {"type": "object", "properties": {"id": {"type": "string"}, "state": {"type": "string"}}},
                ),
                "400": error("A parameter is invalid or an image is truncated, corrupt or too large in pixels."),
                "413": error("The upload is larger than MAX_UPLOAD_MB."),
                "415": error("A file is not an image (PNG, JPEG or TIFF expected)."),
                "503": _UNAVAILABLE,
            },
        },
    },
    "/api/jobs/{job_id}": {
        "get": {
            "summary": "State of one job",
            "operationId": "getJob",
            "parameters": [_JOB_ID],
            "responses": {
                "200": json_response("The job.", {"$ref": "#/components/schemas/Job"}),
                "404": _NOT_FOUND,
            },
        }
    },
    "/api/jobs/{job_id}/result": {
        "get": {
            "summary": "Islets and IEQ of a finished job",
            "operationId": "getResult",
            "parameters": [_JOB_ID],
            "responses": {
                "200": json_response(
                    "Summary across images and per-image results.",
                    {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "summary": {"type": "object"},
                            "images": {"type": "array", "items": {"$ref": "#/components/schemas/ImageResult"}},
                        },
                    },
                ),
                "404": _NOT_FOUND,
                "409": error("The job is not done (queued, running or failed)."),
                "410": error("The results were deleted by the retention policy."),
            },
        }
    },
    "/api/jobs/{job_id}/overlay.png": {
        "get": {
            "summary": "Islet contours and numbers drawn over one image",
            "operationId": "getOverlay",
            "parameters": [
                _JOB_ID,
                {"name": "image", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            ],
            "responses": {
                "200": {
                    "description": "PNG image.",
                    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                },
                "400": error("The image number is not a number."),
                "404": error("No such job or no such image in the job."),
                "409": error("The job is not done."),
                "410": error("The overlay was deleted by the retention policy."),
            },
        }
    },
    "/api/queue": {
        "get": {
            "summary": "Queue length and service times (tells 'slow because loaded' from 'broken')",
            "operationId": "queueStats",
            "responses": {
                "200": json_response("Queue statistics.", {"$ref": "#/components/schemas/QueueStats"}),
                "503": _UNAVAILABLE,
            },
        }
    },
}
