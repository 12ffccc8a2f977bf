"""Training-image export: `isletops training export` talks to the instance's REST API the way a
user would (POST /api/training/export) and saves the one-time ZIP it returns. It signs in with an
API token of an admin (scope `training:export`) from `$ISLETOPS_API_TOKEN`.

The backend records the export when it answers, so everything that can be checked locally (the
output file is new, its folder writable) is checked *before* the request; a failure while saving
says how to get the images again (`--all`).
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import requests

from isletops.errors import IsletOpsError

EXPORT_PATH = "/api/training/export"
TOKEN_ENV = "ISLETOPS_API_TOKEN"  # noqa: S105 - the variable's name
CHUNK_BYTES = 1024 * 1024


class TrainingExportError(IsletOpsError):
    """The training export could not be requested or saved."""


@dataclass(frozen=True)
class ExportResult:
    """What an export brought: nothing (`path` None) or a ZIP with `jobs` jobs and `images` images."""

    path: Path | None
    jobs: int = 0
    images: int = 0
    size_bytes: int = 0


def default_output(now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S")
    return Path(f"isletnet-training-{stamp}.zip")


def check_output(output: Path) -> Path:
    """The output must be a new file in a writable folder (checked before the export is used up)."""
    output = output.expanduser()
    if output.exists():
        raise TrainingExportError(f"{output} already exists.", "Choose another --output or move the old file away.")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        raise TrainingExportError(f"The folder {folder} does not exist.", "Create it or choose another --output.")
    if not os.access(folder, os.W_OK):
        raise TrainingExportError(f"The folder {folder} is not writable.", "Choose another --output.")
    return output


def export_training(api_url: str, output: Path | None = None, include_exported: bool = False,
                    timeout_s: float = 600.0, token: str | None = None) -> ExportResult:
    """Ask the backend at `api_url` for the training ZIP and save it to `output` (atomically)."""
    output = check_output(output or default_output())
    url = api_url.rstrip("/") + EXPORT_PATH + ("?all=1" if include_exported else "")
    token = os.environ.get(TOKEN_ENV, "") if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.post(url, stream=True, headers=headers, timeout=(5, timeout_s))
    except requests.RequestException as error:
        raise TrainingExportError(
            f"The backend at {api_url} cannot be reached ({type(error).__name__}).",
            "Check that the instance runs ('isletops status') and that --url or the instance's http_port "
            "(api_port with publish_api_port: true) is right.",
        ) from None
    with response:
        if response.status_code == 204:
            return ExportResult(None)
        if response.status_code in (401, 403):
            raise TrainingExportError(
                f"The backend refused the export (HTTP {response.status_code}): {_error_sentence(response)}",
                f"Set {TOKEN_ENV} to an admin's API token: isletops tokens create ADMIN training-export "
                "--scope training:export.",
            )
        if response.status_code != 200:
            raise TrainingExportError(f"The backend refused the export (HTTP {response.status_code}): "
                                      f"{_error_sentence(response)}")
        jobs = int(response.headers.get("X-Exported-Jobs", "0") or 0)
        images = int(response.headers.get("X-Exported-Images", "0") or 0)
        size = _save(response, output)
    return ExportResult(output, jobs, images, size)


def _error_sentence(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    text = re.sub(r"\s+", " ", response.text or "").strip()[:200]
    return text or "no reason given."


def _save(response: requests.Response, output: Path) -> int:
    """Stream the body into a temporary file beside `output`, then rename (no half-written ZIP)."""
    folder = output.parent if str(output.parent) else Path(".")
    descriptor, temporary = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".part", dir=folder)
    size = 0
    try:
        with os.fdopen(descriptor, "wb") as handle:
            for chunk in response.iter_content(CHUNK_BYTES):
                handle.write(chunk)
                size += len(chunk)
        os.replace(temporary, output)
    except (OSError, requests.RequestException) as error:
        Path(temporary).unlink(missing_ok=True)
        raise TrainingExportError(
            f"The export was recorded by the backend but could not be saved to {output} ({error}).",
            "Run 'isletops training export --all' to download every training image again.",
        ) from None
    return size
