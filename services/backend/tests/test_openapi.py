"""/api/spec.json is a valid OpenAPI 3 document that lists exactly the /api routes Flask serves
(jobs and reports), no more and no fewer."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from openapi_spec_validator import validate

from services.backend.tests.helpers import offline_app

IGNORED_METHODS = {"HEAD", "OPTIONS"}


def flask_operations(app: Flask) -> set[tuple[str, str]]:
    operations = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        operations |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    return operations


def spec_operations(spec: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in spec["paths"].items() for method in item if method != "parameters"}


@pytest.fixture(scope="module")
def app() -> Flask:
    return offline_app()


def test_spec_is_valid_openapi_3(app: Flask) -> None:
    spec = app.test_client().get("/api/spec.json").get_json()
    assert spec["openapi"].startswith("3.0")
    validate(spec)


def test_every_route_is_documented_and_every_documented_route_exists(app: Flask) -> None:
    spec = app.test_client().get("/api/spec.json").get_json()
    assert flask_operations(app) == spec_operations(spec)
    assert ("/api/jobs", "post") in spec_operations(spec)


def test_path_parameters_are_declared(app: Flask) -> None:
    spec = app.test_client().get("/api/spec.json").get_json()
    for path, item in spec["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, operation in item.items():
            declared = set()
            for parameter in operation.get("parameters", []):
                if "$ref" in parameter:
                    parameter = spec["components"]["parameters"][parameter["$ref"].rsplit("/", 1)[-1]]
                if parameter["in"] == "path":
                    declared.add(parameter["name"])
            assert declared == names, f"{method.upper()} {path}"
