"""The backend's own answers carry the security headers of services/common/security-headers.conf
(a Kubernetes Ingress sends /api straight to the backend, with no nginx in between), whatever the
status; a missing or empty list stops the start with one sentence."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask

from services.backend.tests.helpers import offline_app
from services.common.security_headers import read_security_headers
from services.common.settings import ConfigError
from tests.fixtures.security_headers import SECURITY_HEADERS as EXPECTED


@pytest.fixture(scope="module")
def app() -> Flask:
    return offline_app()


def test_the_list_is_the_one_the_nginx_configs_include() -> None:
    assert read_security_headers() == EXPECTED


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/api/spec.json", 200),
    ("GET", "/api/health", 503),  # storage and database are down in the offline app
    ("GET", f"/api/jobs/{'0' * 32}/nope", 404),
    ("DELETE", "/api/spec.json", 405),
])  # fmt: skip
def test_every_answer_carries_the_headers_once(app: Flask, method: str, path: str, status: int) -> None:
    response = app.test_client().open(path, method=method)
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers.get_all(name) == [value], name


def test_a_missing_or_empty_list_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^The security header list .*missing.conf cannot be read \(No such file"):
        read_security_headers(tmp_path / "missing.conf")
    empty = tmp_path / "empty.conf"
    empty.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="has no 'add_header NAME \"VALUE\" always;' line"):
        read_security_headers(empty)
