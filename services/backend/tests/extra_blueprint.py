"""A tiny optional blueprint used by test_openapi to prove optional modules are picked up."""

from __future__ import annotations

from flask import Blueprint, jsonify

blueprint = Blueprint("extra_for_tests", __name__, url_prefix="/api")


@blueprint.get("/extra/<name>")
def extra(name: str):
    return jsonify({"name": name})


OPENAPI_PATHS = {
    "/api/extra/{name}": {
        "get": {
            "summary": "Echo",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "The name."}},
        }
    }
}
