"""Issue 8 on the real stack (the seven images under Docker compose, H3's `stack_instance`): the
frontend image in headless Chromium drives a job through the real shepherd; the pruner container
with a 15 s retention prunes the plain job but keeps the training one, reports through its
healthcheck, lists with --dry-run; `isletops training export` downloads the training images.
One stack for all of it (bringing it up is the expensive part)."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import requests
from click.testing import CliRunner
from PIL import Image

from isletops import accounts, stack
from isletops.cli import main
from services.islets import make_dtz_image
from tests.fixtures.security_headers import SECURITY_HEADERS
from tests.integration.test_frontend import ARTIFACTS, CHROMIUM, new_page, page_problems

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 1.0):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def job(api_url: str, job_id: str, headers: dict[str, str]) -> dict:
    return requests.get(f"{api_url}/api/jobs/{job_id}", headers=headers, timeout=10).json()


def test_frontend_pruner_and_training_export_on_the_real_stack(stack_instance, tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    # Retention 15 s, not 0: the page polls every 2 s and must see the result before the pruner
    # (every 3 s) deletes it; with 0 the pruner often won that race.
    made = stack_instance("h7issue8", up=False, retention_days=15 / 86400)
    stack.update_env_values(made.instance, {"PRUNE_INTERVAL_SECONDS": "3"})
    made.up()
    admin = made.admin_auth()  # the tests' own API calls
    password = accounts.new_password()
    accounts.add_user(made.instance, made.engine, "tech", "technician", "default", password)
    signed_in_as = SimpleNamespace(url=made.frontend_url, username="tech", password=password)

    image = tmp_path / "stack-sample.png"
    Image.fromarray(make_dtz_image(seed=5, diameters_um=(90, 140, 200), size=(500, 700))[0]).save(image)

    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = new_page(browser, 1280, 800, signed_in_as)  # records script errors and CSP refusals
            page.goto(made.frontend_url + "/")
            page.set_input_files("#file-input", str(image))
            page.get_by_role("button", name="Analyse image").click()
            page.wait_for_function("() => /^#\\/jobs\\/[0-9a-f]{32}$/.test(location.hash)", timeout=60_000)
            plain = page.evaluate("location.hash").rsplit("/", 1)[1]
            page.wait_for_selector("#islets-table", timeout=180_000)  # the real shepherd analysed it
            assert page.locator("#islets-table tbody tr").count() == 3
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "stack-result-1280.png"), full_page=True)
            assert page_problems(page) == []
        finally:
            browser.close()

    # The real edge sends the security headers on every path, error pages included.
    for path, status in {"/": 200, "/api/health": 200, "/js/app.js": 200, f"/api/jobs/{'0' * 32}": 401}.items():
        response = requests.get(made.frontend_url + path, timeout=10)
        assert response.status_code == status, path
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS, path

    # A training job through the API; retention 15 s and a 3 s schedule prune the plain one soon.
    with image.open("rb") as handle:
        created = requests.post(f"{made.api_url}/api/jobs", files={"images": ("kept.png", handle, "image/png")},
                                data={"training": "true"}, headers=admin, timeout=60)
    assert created.status_code == 201, created.text
    marked = created.json()["id"]
    wait_for(lambda: job(made.api_url, marked, admin)["state"] == "done", 180, "the training job")
    wait_for(lambda: job(made.api_url, plain, admin)["pruned_at"], 60, "the pruner to prune the plain job")
    assert requests.get(f"{made.api_url}/api/jobs/{plain}/result", headers=admin, timeout=10).status_code == 410
    time.sleep(4)  # at least one more pass after the training job finished
    assert job(made.api_url, marked, admin)["pruned_at"] is None
    assert requests.get(f"{made.api_url}/api/jobs/{marked}/report.pdf", headers=admin, timeout=30).status_code == 200

    # The pruner's healthcheck output is the record the monitor reads.
    def healthy_record() -> dict | None:
        pruner = next(s for s in made.engine.project_containers(made.project) if s.service == "pruner")
        lines = [line for line in pruner.last_health_output.splitlines() if line.startswith("{")]
        record = json.loads(lines[-1]) if lines else None
        # Health output is refreshed every 15 s: wait for one taken after the training job existed.
        fresh = pruner.health == "healthy" and record and record.get("ok") and record.get("training_jobs") == 1
        return record if fresh else None

    record = wait_for(healthy_record, 90, "a healthy pruner whose record counts the training job")
    assert record["last_success_at"] and record["training_images"] == 1 and record["training_bytes"] > 0
    dry_run = made.compose("exec", "-T", "pruner", "python", "-m", "services.pruner", "--dry-run")
    assert "dry run: 0 jobs past 15 s retention" in dry_run.stdout
    assert "1 training jobs" in dry_run.stdout

    out = tmp_path / "training.zip"
    result = CliRunner().invoke(main, ["--config", str(made.config_path), "-i", made.project,
                                       "training", "export", "--output", str(out)],
                                 env={"ISLETOPS_API_TOKEN": admin["Authorization"].removeprefix("Bearer ")})
    assert result.exit_code == 0, result.output
    assert f"{marked}/inputs/0-kept.png" in zipfile.ZipFile(out).namelist()
    assert job(made.api_url, marked, admin)["exported_at"] is not None
