"""Report, statistics and training-export routes of the REST API.

Per job: `report.pdf`, `islets.csv`, `islets.xlsx`, `archive.zip`; across jobs: `/api/statistics`
and `/api/statistics/access_statistics.xlsx`; and `POST /api/training/export`, the one-time
download of training-marked images that records what it exported. The files themselves are
built by the pure functions of `services.backend.reports`; this module reads storage and the
job table and answers errors as `{"error": sentence}` through the app's handlers.
"""

from __future__ import annotations

import json
import logging
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import IO, Any

from flask import Blueprint, Response, current_app, jsonify, request

from services.backend import params, reports
from services.backend.jobs_api import database, load_result, public_job, records, require_job, store
from services.backend.openapi import error, json_response
from services.common.access_stats import AccessStatistics
from services.common.jobs import Job
from services.common.layout import JobKeys
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectNotFound
from services.common.training import TrainingSet

log = logging.getLogger(__name__)

blueprint = Blueprint("reports", __name__, url_prefix="/api")

# Jobs read for statistics; beyond this the figures cover the newest ones (and say so).
STATISTICS_JOB_LIMIT = 100_000
# Training exports are built in memory up to this size, on disk beyond it.
SPOOL_MAX_BYTES = 64 * 1024 * 1024
EXPORT_RECORD_PREFIX = "training/exports/"


# -- reading a finished job ---------------------------------------------------------------------


def load_overlays(job: Job) -> Iterator[bytes]:
    """Each image's overlay for the PDF, read when the report needs it: the small preview, or the
    full overlay for a job from before previews; an image with neither is left out."""
    keys = JobKeys(job.id)
    for index in range(job.image_count):
        for key in (keys.preview(index), keys.overlay(index)):
            try:
                yield store().get(key)
                break
            except ObjectNotFound:
                continue
        else:
            log.warning("job %s: overlay of image %d is missing; report without it", job.id, index)


def _download(data: bytes | Iterator[bytes], mimetype: str, filename: str) -> Response:
    response = Response(data, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _spooled(write: Callable[[IO[bytes]], object]) -> Iterator[bytes]:
    """Run `write` into a temporary file (memory up to `SPOOL_MAX_BYTES`, disk beyond) and stream
    it out in chunks: a report or an archive is never one bytes object in the backend."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)  # noqa: SIM115 - closed by the stream
    try:
        write(spool)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return _stream_and_close(spool)


def _file_name(job: Job, suffix: str) -> str:
    return f"isletnet-{job.id[:8]}-{suffix}"


def _finished_job(job_id: str) -> tuple[Job, dict[str, Any], dict[str, Any]]:
    job = require_job(job_id)
    result = load_result(job)
    return job, public_job(job), result


# -- per-job reports ----------------------------------------------------------------------------


@blueprint.get("/jobs/<job_id>/islets.csv")
def islets_csv(job_id: str) -> Response:
    job, row, result = _finished_job(job_id)
    return _download(reports.job_csv(row, result), "text/csv; charset=utf-8", _file_name(job, "islets.csv"))


@blueprint.get("/jobs/<job_id>/islets.xlsx")
def islets_xlsx(job_id: str) -> Response:
    job, row, result = _finished_job(job_id)
    mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return _download(reports.job_xlsx(row, result), mimetype, _file_name(job, "islets.xlsx"))


@blueprint.get("/jobs/<job_id>/report.pdf")
def report_pdf(job_id: str) -> Response:
    job, row, result = _finished_job(job_id)
    pdf = _spooled(lambda target: reports.write_job_pdf(target, row, result, load_overlays(job)))
    return _download(pdf, "application/pdf", _file_name(job, "report.pdf"))


@blueprint.get("/jobs/<job_id>/archive.zip")
def archive_zip(job_id: str) -> Response:
    """Results, the generated reports and the request; `?inputs=1` adds the original images."""
    with_inputs = params.INPUTS.parse(request.args.get("inputs"))
    job, row, result = _finished_job(job_id)
    keys = JobKeys(job.id)
    stored = {keys.relative(key): key for key in store().list(keys.prefix) if with_inputs or not keys.is_input(key)}
    built: dict[str, Callable[[], bytes]] = {
        "islets.csv": lambda: reports.job_csv(row, result),
        "islets.xlsx": lambda: reports.job_xlsx(row, result),
        "report.pdf": lambda: reports.job_pdf(row, result, load_overlays(job)),
        "job.json": lambda: json.dumps(row, indent=2).encode(),
    }

    def read(name: str) -> bytes:  # one member at a time, when the archive reaches it
        return built[name]() if name in built else store().get(stored[name])

    archive = _spooled(lambda target: reports.write_job_zip(target, row, sorted({*stored, *built}), read))
    return _download(archive, "application/zip", _file_name(job, "archive.zip"))


# -- statistics ---------------------------------------------------------------------------------


def _all_jobs() -> list[dict[str, Any]]:
    """Users' jobs: the synthetic test jobs of the monitor and the deploy gate would skew every figure."""
    return [job.to_dict() for job in records().list_jobs(limit=STATISTICS_JOB_LIMIT, include_synthetic=False)]


def _flush_access_counts() -> None:
    """Write the requests counted in memory so far, so the report includes them."""
    recorder = current_app.extensions.get("isletnet.access")
    if recorder is not None and hasattr(recorder, "flush"):
        recorder.flush()


@blueprint.get("/statistics")
def statistics() -> Response:
    jobs = _all_jobs()
    _flush_access_counts()
    return jsonify({
        "totals": reports.aggregate_statistics(jobs),
        "per_day": reports.daily_statistics(AccessStatistics(database()).access_statistics(), jobs),
        "queue": LeaseQueue(database()).queue_stats().to_dict(),
        "complete": len(jobs) < STATISTICS_JOB_LIMIT,
    })


@blueprint.get("/statistics/access_statistics.xlsx")
def access_statistics_xlsx() -> Response:
    jobs = _all_jobs()
    _flush_access_counts()
    rows = AccessStatistics(database()).access_statistics()
    data = reports.access_statistics_xlsx(rows, jobs, reports.aggregate_statistics(jobs))
    stamp = datetime.now(UTC).strftime("%Y-%m-%d")
    mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return _download(data, mimetype, f"isletnet-access-statistics-{stamp}.xlsx")


# -- training export ----------------------------------------------------------------------------


def _write_training_zip(target: IO[bytes], jobs: list[Job], exported_at: str) -> dict[str, Any]:
    """Inputs, request and results of each training job under `<job id>/`, plus `manifest.json`."""
    manifest: dict[str, Any] = {"exported_at": exported_at, "jobs": []}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_STORED) as archive:
        for job in jobs:
            job_keys = JobKeys(job.id)
            keys = store().list(job_keys.prefix)
            images = [job_keys.relative(key) for key in keys if job_keys.is_input(key)]
            for key in keys:
                # Images are already compressed; JSON and CSV shrink well.
                compress = zipfile.ZIP_STORED if key.endswith((".png", ".jpg", ".jpeg", ".tif", ".tiff")) \
                    else zipfile.ZIP_DEFLATED
                archive.writestr(f"{job.id}/{job_keys.relative(key)}", store().get(key), compress_type=compress)
            manifest["jobs"].append({
                "id": job.id, "state": job.state, "model": job.model, "pixel_size_um": job.pixel_size_um,
                "file_names": job.file_names, "images": images,
                "created_at": job.created_at.isoformat(),
                "previously_exported_at": job.exported_at.isoformat() if job.exported_at else None,
            })
        archive.writestr("manifest.json", json.dumps(manifest, indent=2))
    return manifest


@blueprint.post("/training/export")
def training_export() -> Response:
    """ZIP of training-marked images not exported before (all of them with `?all=1`); records it.

    The archive is complete before anything is recorded, so a failure half-way records nothing
    and the same images are offered again next time.
    """
    include_exported = params.ALL.parse(request.args.get("all"))
    jobs = TrainingSet(database()).training_jobs(include_exported=include_exported)
    if not jobs:
        return Response(status=204)
    exported_at = datetime.now(UTC).isoformat()
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_BYTES)  # noqa: SIM115 - handed to the response
    try:
        manifest = _write_training_zip(spool, jobs, exported_at)
        newly = TrainingSet(database()).mark_exported([job.id for job in jobs])
        stamp = exported_at[:19].replace(":", "").replace("-", "")
        store().put(f"{EXPORT_RECORD_PREFIX}{stamp}.json", json.dumps(manifest, indent=2).encode(), "application/json")
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    log.info("training export: %d jobs (%d newly exported), all=%s", len(jobs), newly, include_exported)
    response = Response(_stream_and_close(spool), mimetype="application/zip")
    response.headers["Content-Disposition"] = f'attachment; filename="isletnet-training-{stamp}.zip"'
    response.headers["X-Exported-Jobs"] = str(len(jobs))
    response.headers["X-Exported-Images"] = str(sum(len(job["images"]) for job in manifest["jobs"]))
    response.headers["Cache-Control"] = "no-store"
    return response


def _stream_and_close(spool: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := spool.read(1024 * 1024):
            yield chunk
    finally:
        spool.close()


# -- OpenAPI ------------------------------------------------------------------------------------

_JOB_ID = {"$ref": "#/components/parameters/JobId"}
_NOT_FOUND = error("No job with this id (malformed ids included).")
_NOT_READY = error("The job is not done (queued, running or failed), so it has no result yet.")
_GONE = error("The job's results were deleted by the retention policy or are missing from storage.")


def _file_route(summary: str, operation: str, mimetype: str, extra: list[dict[str, Any]] | None = None) -> dict:
    return {
        "get": {
            "summary": summary,
            "operationId": operation,
            "parameters": [_JOB_ID, *(extra or [])],
            "responses": {
                "200": {"description": "The file, as an attachment.",
                        "content": {mimetype: {"schema": {"type": "string", "format": "binary"}}}},
                **({"400": error("A query parameter is not a yes/no value.")} if extra else {}),
                "404": _NOT_FOUND,
                "409": _NOT_READY,
                "410": _GONE,
            },
        }
    }


_XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

OPENAPI_PATHS: dict[str, Any] = {
    "/api/jobs/{job_id}/report.pdf": _file_route(
        "PDF report: overlay, summary and per-islet table", "jobReportPdf", "application/pdf"),
    "/api/jobs/{job_id}/islets.csv": _file_route("Per-islet table of all images as CSV", "jobIsletsCsv", "text/csv"),
    "/api/jobs/{job_id}/islets.xlsx": _file_route(
        "Summary and per-islet table as an XLSX workbook", "jobIsletsXlsx", _XLSX),
    "/api/jobs/{job_id}/archive.zip": _file_route(
        "ZIP of the job's results and reports", "jobArchiveZip", "application/zip",
        [params.INPUTS.query("1 to include the original images.")]),
    "/api/statistics": {
        "get": {
            "summary": "Figures across all jobs: counts, images, islets, IEQ, failure rate, per day",
            "operationId": "statistics",
            "responses": {
                "200": json_response("Totals, per-day figures and the queue.", {
                    "type": "object",
                    "properties": {
                        "totals": {"type": "object"},
                        "per_day": {"type": "array", "items": {"type": "object"}},
                        "queue": {"$ref": "#/components/schemas/QueueStats"},
                        "complete": {"type": "boolean"},
                    },
                }),
            },
        }
    },
    "/api/statistics/access_statistics.xlsx": {
        "get": {
            "summary": "Access statistics workbook: requests per day and endpoint, jobs, images, failures",
            "operationId": "accessStatisticsXlsx",
            "responses": {"200": {"description": "The workbook, as an attachment.",
                                  "content": {_XLSX: {"schema": {"type": "string", "format": "binary"}}}}},
        }
    },
    "/api/training/export": {
        "post": {
            "summary": "One-time download of training-marked images; records the export",
            "operationId": "trainingExport",
            "parameters": [params.ALL.query("1 to export every training image again.")],
            "responses": {
                "200": {"description": "ZIP with `<job id>/inputs/...`, results and `manifest.json`; headers "
                                       "X-Exported-Jobs and X-Exported-Images give the counts.",
                        "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}},
                "204": {"description": "No training images are waiting for export."},
                "400": error("`all` is not a yes/no value."),
            },
        }
    },
}
