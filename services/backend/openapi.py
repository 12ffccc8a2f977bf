"""The OpenAPI 3 document at /api/spec.json, assembled from each blueprint's `OPENAPI_PATHS`
(so a blueprint documents exactly the routes it registers) plus the shared components."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

API_VERSION = "1.0.0"

ERROR_RESPONSE_REF = "#/components/responses/Error"


RETRY_AFTER_HEADER = {"Retry-After": {"description": "Seconds to wait before trying again.",
                                       "schema": {"type": "integer", "minimum": 1}}}


def error(description: str, *, retry_after: bool = False) -> dict[str, Any]:
    """A response documented as the standard `{"error": sentence}` body (with `Retry-After` for
    the 503s of a dependency that is down)."""
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        response["headers"] = RETRY_AFTER_HEADER
    return response


def json_response(description: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(schema)}}}


COMPONENTS: dict[str, Any] = {
    "schemas": {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string", "description": "One plain sentence."}},
        },
        "Job": {
            "type": "object",
            "required": ["id", "state", "progress", "created_at"],
            "properties": {
                "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                "state": {"type": "string", "enum": ["queued", "running", "done", "failed"]},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "error": {"type": "string", "nullable": True},
                "model": {"type": "string"},
                "pixel_size_um": {"type": "number"},
                "priority": {"type": "integer"},
                "training": {"type": "boolean"},
                "synthetic": {"type": "boolean", "description": "A monitoring test job (e2e probe, deploy gate)."},
                "image_count": {"type": "integer"},
                "file_names": {"type": "array", "items": {"type": "string"}},
                "attempts": {"type": "integer"},
                "summary": {"type": "object", "nullable": True},
                "created_at": {"type": "string", "format": "date-time"},
                "started_at": {"type": "string", "format": "date-time", "nullable": True},
                "finished_at": {"type": "string", "format": "date-time", "nullable": True},
                "exported_at": {"type": "string", "format": "date-time", "nullable": True},
                "pruned_at": {"type": "string", "format": "date-time", "nullable": True},
            },
        },
        "QueueStats": {
            "type": "object",
            "required": ["queued", "running", "oldest_queued_age_s", "mean_service_time_s"],
            "properties": {
                "queued": {"type": "integer"},
                "running": {"type": "integer"},
                "oldest_queued_age_s": {"type": "number"},
                "mean_service_time_s": {"type": "number", "nullable": True},
                "done_last_hour": {"type": "integer"},
                "failed_last_hour": {"type": "integer"},
            },
        },
        "ImageResult": {
            "type": "object",
            "properties": {
                "index": {"type": "integer"},
                "name": {"type": "string"},
                "islets": {"type": "array", "items": {"type": "object"}},
                "summary": {"type": "object"},
            },
        },
    },
    "parameters": {
        "JobId": {
            "name": "job_id",
            "in": "path",
            "required": True,
            "schema": {"type": "string"},
            "description": "Job id (32 hexadecimal digits).",
        }
    },
}


def build_spec(path_sets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path_set in path_sets:
        for path, operations in path_set.items():
            paths.setdefault(path, {}).update(operations)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "IsletNet API",
            "version": API_VERSION,
            "description": "Upload dithizone-stained islet images, follow jobs, read islet counts and IEQ. "
            'Every error is JSON {"error": "<one sentence>"}.',
        },
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": COMPONENTS,
    }
