"""`isletops training export` against a real backend (real HTTP server, PostgreSQL, SeaweedFS),
and the pruner's promise that training images outlive retention and stay exportable."""

from __future__ import annotations

import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from click.testing import CliRunner
from werkzeug.serving import make_server

from isletops.cli import main
from services.backend.app import create_app
from services.backend.tests.images import dtz_rgb, encode
from services.backend.tests.test_reports_api import process_next_job
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue
from services.pruner.prune import Pruner, PrunerSettings
from tests.fixtures.accounts import bearer, grant
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


class Backend:
    def __init__(self, env: dict[str, str]) -> None:
        self.app = create_app(env)
        self.port = free_port()
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = bearer(grant(self.app, "admin"))
        self.store = self.app.extensions["isletnet.store"]
        self.database = self.app.extensions["isletnet.database"]
        self.records = JobRecords(self.database)
        self.queue = LeaseQueue(self.database)

    def submit(self, training: bool, images: int = 1) -> str:
        files = [("images", (f"img-{n}.png", encode(dtz_rgb(seed=n + 20), "PNG"), "image/png")) for n in range(images)]
        response = requests.post(f"{self.url}/api/jobs", files=files, data={"training": str(training).lower()},
                                 headers=self.headers, timeout=30)
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def stop(self) -> None:
        self.server.shutdown()
        self.app.extensions["isletnet.access"].stop()


@pytest.fixture
def backend(isolated_service_env: dict[str, str]) -> Iterator[Backend]:
    backend = Backend(isolated_service_env)
    yield backend
    backend.stop()


@pytest.fixture
def config(backend: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ISLETOPS_API_TOKEN", backend.headers["Authorization"].removeprefix("Bearer "))
    path = tmp_path / "isletops.yml"
    path.write_text(yaml.safe_dump({
        "instances_root": str(tmp_path / "instances"),
        # The API port is not published by default: the CLI reaches /api/ through the public port,
        # where this test's backend stands in for the edge.
        "instances": {"lab": {"http_port": backend.port, "api_port": free_port()}},
    }))
    return path


def isletops(config: Path, *arguments: str):
    return CliRunner().invoke(main, ["--config", str(config), "-i", "lab", "training", "export", *arguments])


def test_export_once_then_all_through_the_cli(backend: Backend, config: Path, tmp_path: Path) -> None:
    out = tmp_path / "first.zip"
    nothing = isletops(config, "--output", str(out))
    assert nothing.exit_code == 0, nothing.output
    assert nothing.output.strip() == ("No training images are waiting for export "
                                      "(use --all to export every training image again).")
    assert not out.exists()

    marked = backend.submit(training=True, images=2)
    backend.submit(training=False)
    result = isletops(config, "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Exported 2 training image(s) of 1 job(s) to {out} (")
    names = zipfile.ZipFile(out).namelist()
    assert f"{marked}/inputs/0-img-0.png" in names and f"{marked}/inputs/1-img-1.png" in names
    assert backend.records.get(marked).exported_at is not None

    assert "No training images are waiting" in isletops(config, "--output", str(tmp_path / "second.zip")).output
    again = isletops(config, "--all", "--output", str(tmp_path / "all.zip"))
    assert again.exit_code == 0 and "Exported 2 training image(s)" in again.output


def test_an_existing_output_file_is_refused_before_the_export_is_used_up(
    backend: Backend, config: Path, tmp_path: Path
) -> None:
    marked = backend.submit(training=True)
    existing = tmp_path / "old.zip"
    existing.write_bytes(b"keep me")
    result = isletops(config, "--output", str(existing))
    assert result.exit_code == 2
    assert result.output.strip() == (f"isletops: error: {existing} already exists. "
                                     "Choose another --output or move the old file away.")
    assert existing.read_bytes() == b"keep me"
    assert backend.records.get(marked).exported_at is None  # still waiting for a real export
    missing_folder = isletops(config, "--output", str(tmp_path / "nope" / "t.zip"))
    assert missing_folder.exit_code == 2 and "does not exist" in missing_folder.output


def test_unreachable_backend_is_one_sentence(config: Path, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = isletops(config, "--url", url, "--output", str(tmp_path / "t.zip"))
    assert result.exit_code == 2
    assert result.output.startswith(f"isletops: error: The backend at {url} cannot be reached (ConnectionError).")
    assert not (tmp_path / "t.zip").exists()


def test_training_jobs_survive_retention_zero_and_stay_exportable(backend: Backend, config: Path,
                                                                  tmp_path: Path) -> None:
    marked = backend.submit(training=True)
    plain = backend.submit(training=False)
    while process_next_job(backend.store, backend.queue):
        pass
    assert isletops(config, "--output", str(tmp_path / "before.zip")).exit_code == 0  # exported first
    settings = PrunerSettings(retention_s=0, retry_attempts=1, status_file=tmp_path / "pruner.json")
    report = Pruner(backend.store, backend.database, settings).run_once()
    assert report.ok and report.deleted_jobs == [plain]
    gone = requests.get(f"{backend.url}/api/jobs/{plain}/result", headers=backend.headers, timeout=10)
    assert gone.status_code == 410
    kept = requests.get(f"{backend.url}/api/jobs/{marked}/islets.csv", headers=backend.headers, timeout=10)
    assert kept.status_code == 200  # the training job's results stay with its images
    after = isletops(config, "--all", "--output", str(tmp_path / "after.zip"))
    assert after.exit_code == 0
    archive = zipfile.ZipFile(io.BytesIO((tmp_path / "after.zip").read_bytes()))
    assert f"{marked}/inputs/0-img-0.png" in archive.namelist()
    assert f"{marked}/outputs/0/result.json" in archive.namelist()
