"""How the backend answers when something goes wrong: always JSON `{"error": "<one sentence>"}`
with the right status code, never an HTML page or a traceback."""

from __future__ import annotations

import logging
import uuid

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from services.common.errors import ServiceError, Unavailable

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An expected refusal: `status` and a one-sentence `message` for the client."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _http_message(error: HTTPException) -> str:
    """Werkzeug's descriptions are paragraphs; ours are one sentence about this request."""
    code = error.code or 500
    if code == 404:
        return f"There is no endpoint {request.path}; see /api/spec.json for the API."
    if code == 405:
        return f"{request.method} is not allowed on {request.path}; see /api/spec.json for the API."
    if code == 413:
        limit_mb = current_app.config["ISLETNET_CONFIG"].max_upload_mb
        if (request.content_length or 0) <= current_app.config["MAX_CONTENT_LENGTH"]:
            # Within the upload limit: a text field over Flask's form-field limit, which is what
            # an image becomes when a line break in its file name breaks its multipart header.
            return ("A form field is too large for text: images must arrive as files in the field 'images' "
                    "(a line break in a file name turns one into text); rename the file and upload it again.")
        return f"The upload is larger than the limit of {limit_mb:g} MB; send fewer or smaller images."
    if code == 400:
        return "The request could not be read; send a well-formed multipart or JSON request."
    return f"{error.name}."


def register_error_handlers(app: Flask) -> None:
    @app.before_request
    def _assign_request_id() -> None:
        g.request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers.setdefault("X-Request-Id", g.get("request_id", ""))
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.message, error.headers)

    @app.errorhandler(Unavailable)
    def _unavailable(error: Unavailable) -> Response:
        log.warning("%s %s: %s", request.method, request.path, error)
        retry_after = str(current_app.config["ISLETNET_CONFIG"].retry_after_s)
        return error_response(503, str(error), {"Retry-After": retry_after})

    @app.errorhandler(ServiceError)
    def _service_error(error: ServiceError) -> Response:
        # Storage or database answered but refused (credentials, permissions): not transient.
        log.error("%s %s: %s", request.method, request.path, error)
        return error_response(502, str(error))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        headers = {}
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(sorted(error.valid_methods))
        return error_response(error.code or 500, _http_message(error), headers)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        request_id = g.get("request_id", "unknown")
        log.exception("unexpected error in %s %s (request %s)", request.method, request.path, request_id)
        return error_response(
            500, f"The backend hit an unexpected error; the details are in its log under request id {request_id}."
        )
