"""The backend application factory: `create_app()` wires configuration, storage, the job queue,
the blueprints, JSON error handling, security headers, access statistics and the OpenAPI document
together.

Run under gunicorn: `gunicorn "services.backend.app:create_app()"`. Besides the API, `/metrics`
serves the queue's load for Prometheus (services.common.queue_metrics); it is outside /api, so
neither the edge nor the Kubernetes Ingress routes to it. Blueprints reach the shared
clients through `app.extensions["isletnet.store"]` (ObjectStore) and
`app.extensions["isletnet.database"]` (JobDatabase). Every module in `BLUEPRINT_MODULES` exposes
`blueprint` and `OPENAPI_PATHS`; they ship together and are imported plainly, so an import error
stops the start instead of silently dropping routes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from services.backend import auth, jobs_api, reports_api
from services.backend.access import AccessRecorder
from services.backend.config import BackendConfig
from services.backend.errors import register_error_handlers
from services.backend.openapi import build_spec
from services.common.access_stats import AccessStatistics
from services.common.accounts import Accounts
from services.common.database import JobDatabase
from services.common.errors import ServiceError
from services.common.lease_queue import LeaseQueue
from services.common.queue_metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from services.common.queue_metrics import exposition
from services.common.security_headers import read_security_headers
from services.common.storage import ObjectStore

log = logging.getLogger(__name__)

BLUEPRINT_MODULES = (auth, jobs_api, reports_api)


def create_app(
    env: Mapping[str, str] | None = None,
    *,
    store: ObjectStore | None = None,
    database: JobDatabase | None = None,
    settings: BackendConfig | None = None,
    auth_config: auth.AuthConfig | None = None,
    accounts: Accounts | None = None,
) -> Flask:
    """Build the Flask app from `env` (default: the process environment)."""
    env = os.environ if env is None else env
    logging.basicConfig(level=env.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = settings or BackendConfig.from_env(env)
    store = store or ObjectStore.from_env(env)
    database = database or JobDatabase.from_env(env)
    auth_config = auth_config or auth.AuthConfig.from_env(env)
    accounts = accounts or Accounts(database)

    app = Flask("isletnet-backend")
    hops = int(env.get("FORWARDED_HOPS") or 0)
    if hops > 0:  # the client address for login rate limits, as the proxies in front saw it
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=0, x_host=0)  # type: ignore[method-assign]
    app.config["ISLETNET_CONFIG"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_content_length
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["isletnet.store"] = store
    app.extensions["isletnet.database"] = database
    app.extensions["isletnet.bucket_ready"], app.extensions["isletnet.auth_ready"] = _prepare_dependencies(
        store, database, accounts, auth_config
    )
    recorder = AccessRecorder(AccessStatistics(database), settings.access_flush_s)
    app.extensions["isletnet.access"] = recorder

    register_error_handlers(app)
    security_headers = read_security_headers()

    @app.after_request
    def _add_security_headers(response: Response) -> Response:
        for name, value in security_headers.items():
            response.headers.setdefault(name, value)
        return response

    for module in BLUEPRINT_MODULES:
        app.register_blueprint(module.blueprint)
    spec = auth.secure_spec(build_spec([module.OPENAPI_PATHS for module in BLUEPRINT_MODULES] + [SPEC_PATHS]))
    auth.install(app, spec, accounts, auth_config)

    @app.get("/api/spec.json")
    def openapi_spec() -> Response:
        return jsonify(spec)

    @app.get(auth.METRICS_RULE)
    def metrics() -> Response:
        return Response(exposition(LeaseQueue(database).queue_stats()), content_type=METRICS_CONTENT_TYPE)

    @app.after_request
    def _count_request(response: Response) -> Response:
        if request.path.startswith("/api"):
            endpoint = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            recorder.record(endpoint, request.method, response.status_code)
        if response.status_code >= 500:
            log.warning("%s %s -> %s (request %s)", request.method, request.path, response.status_code, g.request_id)
        return response

    return app


def _prepare_dependencies(
    store: ObjectStore, database: JobDatabase, accounts: Accounts, auth_config: auth.AuthConfig
) -> tuple[bool, bool]:
    """Create the bucket, the schema and the probe account if they are missing. A dependency that is down at start is
    not fatal: the backend starts, reports it in /api/health, and retries on first use."""
    bucket_ready = False
    try:
        store.ensure_bucket()
        bucket_ready = True
    except ServiceError as problem:
        log.warning("storage not ready at start: %s", problem)
    auth_ready = False
    try:
        database.ensure_schema()
        auth.prepare(auth_config, accounts)
        auth_ready = True
    except ServiceError as problem:
        log.warning("job database not ready at start: %s", problem)
    return bucket_ready, auth_ready


SPEC_PATHS: dict[str, Any] = {
    "/api/spec.json": {
        "get": {
            "summary": "This OpenAPI document",
            "operationId": "openapiSpec",
            "responses": {"200": {"description": "OpenAPI 3.0 document.", "content": {"application/json": {}}}},
        }
    }
}
