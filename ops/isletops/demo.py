"""`isletops demo`: the whole path once, on this machine — build every image, tag them as a release,
bring the `demo` instance up healthy, create the demo admin (its password goes to a 0600 file in
the instance folder, never to the screen), sign in as it the way the web page does (session
cookie + CSRF token), submit one synthetic DTZ image through the REST API and wait for its islet
count and IEQ. Re-running it is cheap and changes nothing that did not change:
the layer cache rebuilds nothing, unchanged images keep their release tag, a healthy stack stays up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import requests

from isletops import accounts, stack
from isletops.config import InstanceConfig, SiteConfig
from isletops.docker_engine import DockerEngine
from isletops.errors import IsletOpsError

# Islets of known equivalent diameters (µm), one in each of four Ricordi classes.
DEMO_DIAMETERS_UM: tuple[float, ...] = (80.0, 120.0, 160.0, 220.0)
DEMO_PIXEL_SIZE_UM = 0.843
DEMO_ADMIN = "demo-admin"
PASSWORD_FILE = "demo-admin-password"  # noqa: S105 - a file name


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
    admin: str = DEMO_ADMIN
    password_file: Path | None = None


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


def ensure_demo_admin(instance: InstanceConfig, engine: DockerEngine) -> Path:
    """The demo admin exists and its password is in `<instance>/demo-admin-password` (mode 0600).

    A re-run keeps the password of the file; a new database gets the account again with it."""
    path = instance.directory / PASSWORD_FILE
    existed = path.exists()
    password = path.read_text().strip() if existed else accounts.new_password()
    if not existed:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(password + "\n")
    try:
        accounts.add_user(instance, engine, DEMO_ADMIN, "admin", "default", password)
    except accounts.AccountsError as error:
        if "already a user" not in str(error):
            raise
        if not existed:  # an account from an earlier file that is gone: give it this password
            accounts.reset_password(instance, engine, DEMO_ADMIN, password)
    return path


def sign_in(api_url: str, username: str, password: str) -> requests.Session:
    """A session signed in like the web page: the cookie, and the CSRF token on every request."""
    session = requests.Session()
    try:
        response = session.post(f"{api_url}/api/auth/login", json={"username": username, "password": password},
                                timeout=30)
    except requests.RequestException as exc:
        raise DemoError(f"The API at {api_url} cannot be reached to sign in: {exc.__class__.__name__}.") from None
    if response.status_code != 200:
        raise DemoError(f"The demo admin cannot sign in (HTTP {response.status_code}): {_api_error(response)}.",
                        f"Reset it: isletops users reset-password {username}.")
    session.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return session


def submit_job(
    api_url: str, png: bytes, pixel_size_um: float = DEMO_PIXEL_SIZE_UM, priority: int = 0, timeout_s: float = 60,
    http: requests.Session | None = None,
) -> str:
    """POST one image to `/api/jobs`; returns the job id."""
    try:
        response = (http or requests.Session()).post(
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
                 progress: Callable[[str], None] | None = None, http: requests.Session | None = None) -> dict:
    """Poll `/api/jobs/<id>` until done; returns its result document. Fails on `failed` or timeout."""
    http = http or requests.Session()
    deadline = time.monotonic() + timeout_s
    last_state = ""
    while True:
        try:
            response = http.get(f"{api_url}/api/jobs/{job_id}", timeout=30)
            job = response.json() if response.ok else {"state": f"HTTP {response.status_code}"}
        except (requests.RequestException, ValueError) as exc:
            job = {"state": f"unreachable ({exc.__class__.__name__})"}
        state = str(job.get("state"))
        if progress and state != last_state:
            progress(f"job {job_id} is {state}")
            last_state = state
        if state == "done":
            result = http.get(f"{api_url}/api/jobs/{job_id}/result", timeout=30)
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


def download_overlay(api_url: str, job_id: str, target: Path, http: requests.Session | None = None) -> Path:
    response = (http or requests.Session()).get(f"{api_url}/api/jobs/{job_id}/overlay.png", timeout=60)
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
    built = stack.build_images(progress=progress, output=output, engine=engine,
                               base_max_age_days=site.base_image_max_age_days)
    for warning in built.warnings:
        progress(f"warning: {warning}")
    progress(f"release {built.tag}{' (unchanged)' if built.reused_tag else ''}")
    progress(f"starting instance '{instance.name}' and waiting until it is healthy")
    stack.up(site, instance, tag=built.tag, registry="", engine=engine)
    password_file = ensure_demo_admin(instance, engine)
    progress(f"demo admin '{DEMO_ADMIN}' ready; its password is in {password_file} (mode 0600)")
    http = sign_in(instance.api_url, DEMO_ADMIN, password_file.read_text().strip())
    progress(f"instance '{instance.name}' is healthy; submitting a synthetic DTZ image to {instance.api_url}")
    png, truth = synthetic_png()
    started = time.monotonic()
    job_id = submit_job(instance.api_url, png, http=http)
    result = wait_for_job(instance.api_url, job_id, result_timeout_s, progress=progress, http=http)
    seconds = time.monotonic() - started
    summary = result.get("summary") or {}
    overlay = download_overlay(instance.api_url, job_id, instance.state_dir / "demo" / f"{job_id}-overlay.png", http)
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
        password_file=password_file,
    )
