"""The job routes of the REST API: health, models, submitting jobs, job state, results, overlays,
queue statistics. Inputs are validated completely before anything is stored; a job becomes
visible to workers only after its inputs are in storage, and a submit that fails half-way removes
what it wrote (see docs/architecture.md)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

import services.islets as islets
from services.backend import auth, params
from services.backend.config import BackendConfig
from services.backend.errors import ApiError
from services.backend.openapi import RETRY_AFTER_HEADER, error, json_response
from services.backend.uploads import UploadRefused, inspect_image
from services.common.database import JobDatabase
from services.common.errors import ServiceError, Unavailable
from services.common.jobs import STATES, Job, JobRecords
from services.common.layout import JobKeys, new_job_id
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectNotFound, ObjectStore

log = logging.getLogger(__name__)

blueprint = Blueprint("jobs", __name__, url_prefix="/api")

MAX_NAME_LENGTH = 100
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
    auth.check_job_access(job)
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
    """Read and check every upload from its header and structure (pixels are never decoded
    here); the first bad one refuses the whole request."""
    if not files:
        _refuse_images_sent_as_text()
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
            header = inspect_image(data, settings.max_image_pixels, looks_like_image=content_type is not None)
        except UploadRefused as problem:
            raise ApiError(problem.status, f"File {name}: {_lower_first(problem.message)}") from None
        uploads.append(Upload(index, name, data, content_type or "application/octet-stream", header.width,
                              header.height))
    return uploads


def _refuse_images_sent_as_text() -> None:
    """A part named 'images' without a usable file name arrives as a text field: a line break (or
    another character a multipart header cannot hold) in the file name does that."""
    if "images" in request.form:
        raise ApiError(
            400,
            "The field 'images' arrived as text, not as a file: its file name is malformed (a line break in it?); "
            "rename the file and upload it again.",
        )


# -- routes -------------------------------------------------------------------------------------


@blueprint.get("/health")
def health() -> tuple[Response, int, dict[str, str]]:
    checks: dict[str, str] = {}
    for name, check in (("storage", store().ping), ("queue", database().ping)):
        try:
            check()
            checks[name] = "ok"
        except ServiceError as problem:
            checks[name] = str(problem)
    healthy = all(value == "ok" for value in checks.values())
    body = jsonify({"status": "ok" if healthy else "unavailable", **checks})
    if healthy:
        return body, 200, {}
    return body, 503, {"Retry-After": str(config().retry_after_s)}


@blueprint.get("/models")
def models() -> Response:
    return jsonify({"models": list(islets.available_models()), "default": config().default_model})


@blueprint.post("/jobs")
def submit_job() -> tuple[Response, int, dict[str, str]]:
    settings = config()
    form = request.form
    pixel_size_um = params.PIXEL_SIZE.parse(form.get("pixel_size_um"), settings.default_pixel_size_um)
    model = parse_model(form.get("model"), settings)
    priority = params.PRIORITY.parse(form.get("priority") or None)
    training = params.TRAINING.parse(form.get("training") or None)
    synthetic = params.SYNTHETIC.parse(form.get("synthetic") or None)
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
        auth.record_job_owner(job_id)  # before the row: the job is never visible without its team
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
    """"The file..." -> "the file...", for the tail of a sentence; "DTZ ..." stays."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


@blueprint.get("/jobs")
def list_jobs() -> Response:
    limit = params.LIMIT.parse(request.args.get("limit"))
    offset = params.OFFSET.parse(request.args.get("offset"))
    state = request.args.get("state")
    if state is not None and state not in STATES:
        raise ApiError(400, f"state={params.shown(state)} is unknown; use queued, running, done or failed.")
    # Monitoring test jobs (e2e probe, deploy gate) are not users' jobs: shown only when asked.
    include_synthetic = params.INCLUDE_SYNTHETIC.parse(request.args.get("include_synthetic"))
    jobs = auth.visible_jobs(limit, offset, state, include_synthetic, records().list_jobs)
    return jsonify({"jobs": [public_job(job) for job in jobs]})


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(public_job(require_job(job_id)))


@blueprint.get("/jobs/<job_id>/result")
def get_result(job_id: str) -> Response:
    return jsonify(load_result(require_job(job_id)))


@blueprint.get("/jobs/<job_id>/overlay.png")
def get_overlay(job_id: str) -> Response:
    index = params.IMAGE.parse(request.args.get("image"))
    job = require_job(job_id)
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
_HEALTH = {"type": "object", "properties": {name: {"type": "string"} for name in ("status", "storage", "queue")}}
_NOT_FOUND = error("No job with this id (malformed ids included).")
_UNAVAILABLE = error("Storage or the job database is down; retry after the Retry-After seconds.", retry_after=True)

OPENAPI_PATHS: dict[str, Any] = {
    "/api/health": {
        "get": {
            "summary": "Whether the backend, its storage and its job database work",
            "operationId": "health",
            "responses": {
                "200": json_response(
                    "All dependencies answer.",
                    _HEALTH,
                ),
                "503": {
                    **json_response(
                        "A dependency is down; its field holds the reason.",
                        _HEALTH,
                    ),
                    "headers": RETRY_AFTER_HEADER,
                },
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
                params.LIMIT.query("How many jobs at most."),
                params.OFFSET.query("How many of the newest jobs to skip."),
                {
                    "name": "state",
                    "in": "query",
                    "schema": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                },
                params.INCLUDE_SYNTHETIC.query("1 to list the monitor's and deploy gate's synthetic test jobs too."),
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
                                    **params.PIXEL_SIZE.schema(),
                                    "description": "Micrometres per pixel of the images.",
                                },
                                "model": {"type": "string", "default": "classical"},
                                "priority": params.PRIORITY.schema(),
                                "training": params.TRAINING.schema(),
                                "synthetic": {
                                    **params.SYNTHETIC.schema(),
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
                params.IMAGE.query("Which image of the job, from 0."),
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
