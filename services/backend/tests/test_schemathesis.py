"""Schemathesis fuzzes every operation of /api/spec.json against the real backend (gunicorn, real
PostgreSQL and SeaweedFS): about 30 examples per operation, valid and invalid, and no answer may be
a 5xx or disagree with the spec (status codes, content types, headers, bodies, invalid data
refused). This keeps the spec true to the code. Bounded by the example count: about 560 requests,
21 s plus 13 s to start the servers on a 2-core host at load 10."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from services.backend.tests.helpers import admin_token

pytestmark = pytest.mark.integration

EXAMPLES_PER_OPERATION = 30
# positive_data_acceptance expects a 2xx for any schema-valid request, but no schema can say "a
# real DTZ photograph" or "the id of an existing job": random bytes are rightly refused (415) and
# random ids rightly unknown (404). ignored_auth replaces one scheme's credentials with junk while
# the admin token of --header stays on every request, and either scheme is enough (cookie OR
# bearer), so a 200 there is right; test_auth.py walks every operation without credentials (401)
# and with the wrong role (403). Every other check runs.
EXCLUDED_CHECKS = "positive_data_acceptance,ignored_auth"


def test_the_api_conforms_to_its_spec_and_never_answers_5xx(
    backend_url: str, isolated_service_env: dict[str, str], tmp_path: Path
) -> None:
    # Signed in as an admin, so every operation is reached.
    token = admin_token(isolated_service_env["DATABASE_URL"])
    spec = tmp_path / "spec.json"
    spec.write_text(requests.get(f"{backend_url}/api/spec.json", headers={"Authorization": f"Bearer {token}"},
                                 timeout=30).text)
    command = [
        str(Path(sys.executable).parent / "st"), "run", str(spec), "--url", backend_url,
        "--header", f"Authorization: Bearer {token}",
        "--checks", "all", "--exclude-checks", EXCLUDED_CHECKS,
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--phases", "examples,coverage,fuzzing",
        "--seed", "13", "--workers", "2", "--request-timeout", "30", "--generation-database", "none", "--no-color",
    ]  # fmt: skip
    # No --max-time: with it, schemathesis fuzzes until the budget is spent. The examples bound the
    # run (about 560 requests: 21 s on a 2-core host at load 10); the timeout only guards a hang.
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
