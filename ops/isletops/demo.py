"""`isletops demo`: the whole path once, on this machine — build every image, tag them as a release,
bring the `demo` instance up healthy, submit one synthetic DTZ image through the REST API and
wait for its islet count and IEQ. Re-running it is cheap and changes nothing that did not change:
the layer cache rebuilds nothing, unchanged images keep their release tag, a healthy stack stays up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from isletops import stack
from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import DockerEngine
from isletops.errors import IsletOpsError

# Islets of known equivalent diameters (µm), one in each of four Ricordi classes.
DEMO_DIAMETERS_UM: tuple[float, ...] = (80.0, 120.0, 160.0, 220.0)
DEMO_PIXEL_SIZE_UM = 0.843


class DemoError(IsletOpsError):
    """The demo job could not be submitted or did not finish."""


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    expected: dict  # ground truth of the synthetic image


@dataclass(frozen=True)
class DemoResult:
    tag: str
    job_id: str
    job_seconds: float
    islet_count: int
    ieq_ricordi: float
    ieq_sphere: float
    expected_count: int
    expected_ieq_ricordi: float
    overlay_url: str
    overlay_path: Path
    summary: dict


def synthetic_png(
    diameters_um: tuple[float, ...] = DEMO_DIAMETERS_UM, pixel_size_um: float = DEMO_PIXEL_SIZE_UM, seed: int = 7
) -> tuple[bytes, dict]:
    """A synthetic DTZ image as PNG bytes, and its ground truth (count, IEQ)."""
    from services.islets import encode_png, make_dtz_image

    rgb, truth = make_dtz_image(seed=seed, diameters_um=diameters_um, pixel_size_um=pixel_size_um)
    return encode_png(rgb), truth


def _api_error(response: requests.Response) -> str:
    try:
        return str(response.json().get("error") or response.text[:200])
    except ValueError:
        return response.text[:200] or f"HTTP {response.status_code}"


def submit_job(
    api_url: str, png: bytes, pixel_size_um: float = DEMO_PIXEL_SIZE_UM, priority: int = 0, timeout_s: float = 60
) -> str:
    """POST one image to `/api/jobs`; returns the job id."""
    try:
        response = requests.post(
            f"{api_url}/api/jobs",
            files={"images": ("demo-dtz.png", png, "image/png")},
            data={"pixel_size_um": str(pixel_size_um), "priority": str(priority)},
            timeout=timeout_s,
        )
    except requests.RequestException as exc:
        raise DemoError(f"The API at {api_url} did not take the demo image: {exc.__class__.__name__}.",
                        "Check 'isletops status' and 'isletops logs backend'.") from None
    if response.status_code != 201:
        raise DemoError(f"The API refused the demo image (HTTP {response.status_code}): {_api_error(response)}.")
    return str(response.json()["id"])


def wait_for_job(api_url: str, job_id: str, timeout_s: float, poll_s: float = 1.0,
                 progress: Callable[[str], None] | None = None) -> dict:
    """Poll `/api/jobs/<id>` until done; returns its result document. Fails on `failed` or timeout."""
    deadline = time.monotonic() + timeout_s
    last_state = ""
    while True:
        try:
            response = requests.get(f"{api_url}/api/jobs/{job_id}", timeout=30)
            job = response.json() if response.ok else {"state": f"HTTP {response.status_code}"}
        except (requests.RequestException, ValueError) as exc:
            job = {"state": f"unreachable ({exc.__class__.__name__})"}
        state = str(job.get("state"))
        if progress and state != last_state:
            progress(f"job {job_id} is {state}")
            last_state = state
        if state == "done":
            result = requests.get(f"{api_url}/api/jobs/{job_id}/result", timeout=30)
            if not result.ok:
                raise DemoError(f"Job {job_id} is done but its result is unavailable: {_api_error(result)}.")
            return result.json()
        if state == "failed":
            raise DemoError(f"Job {job_id} failed: {job.get('error') or 'no reason given'}.",
                            "See 'isletops logs shepherd'.")
        if time.monotonic() >= deadline:
            raise DemoError(f"Job {job_id} did not finish within {timeout_s:.0f} s (last state: {state}).",
                            "See 'isletops logs shepherd' and 'isletops status'.")
        time.sleep(poll_s)


def download_overlay(api_url: str, job_id: str, target: Path) -> Path:
    response = requests.get(f"{api_url}/api/jobs/{job_id}/overlay.png", timeout=60)
    if not response.ok:
        raise DemoError(f"The overlay of job {job_id} is unavailable: {_api_error(response)}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(response.content)
    return target


def run_demo(
    site: SiteConfig,
    instance: InstanceConfig | str | None = "demo",
    progress: Callable[[str], None] = lambda line: None,
    output: Callable[[str], None] | None = None,
    result_timeout_s: float = 300,
    engine: DockerEngine | None = None,
) -> DemoResult:
    """Build, tag, start `instance` and push one synthetic image through it (see module docstring)."""
    engine = engine or DockerEngine()
    instance = stack.resolve_instance(site, instance)
    progress("building the images (the first time takes several minutes)")
    built = stack.build_images(progress=progress, output=output, engine=engine)
    progress(f"release {built.tag}{' (unchanged)' if built.reused_tag else ''}")
    progress(f"starting instance '{instance.name}' and waiting until it is healthy")
    stack.up(site, instance, tag=built.tag, registry="", engine=engine)
    progress(f"instance '{instance.name}' is healthy; submitting a synthetic DTZ image to {instance.api_url}")
    png, truth = synthetic_png()
    started = time.monotonic()
    job_id = submit_job(instance.api_url, png)
    result = wait_for_job(instance.api_url, job_id, result_timeout_s, progress=progress)
    seconds = time.monotonic() - started
    summary = result.get("summary") or {}
    overlay = download_overlay(instance.api_url, job_id, instance.state_dir / "demo" / f"{job_id}-overlay.png")
    return DemoResult(
        tag=built.tag,
        job_id=job_id,
        job_seconds=seconds,
        islet_count=int(summary.get("islet_count", 0)),
        ieq_ricordi=float(summary.get("ieq_ricordi", 0.0)),
        ieq_sphere=float(summary.get("ieq_sphere", 0.0)),
        expected_count=int(truth["islet_count"]),
        expected_ieq_ricordi=float(truth["ieq_ricordi"]),
        overlay_url=f"{instance.api_url}/api/jobs/{job_id}/overlay.png",
        overlay_path=overlay,
        summary=summary,
    )
