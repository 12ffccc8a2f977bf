"""The frontend in headless Chromium against a real stack without Docker: real nginx with the
frontend image's nginx.conf serves services/frontend/static and proxies /api/ to the Flask
backend under a real HTTP server, backed by real PostgreSQL and SeaweedFS; a worker thread
analyses jobs with the real islet library the way the shepherd does. Screenshots go to
artifacts/frontend/ (look at them)."""

from __future__ import annotations

import contextlib
import csv
import io
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from PIL import Image
from werkzeug.serving import make_server

from services.backend.app import create_app
from services.backend.tests.test_reports_api import process_next_job
from services.common.accounts import hash_password
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue
from services.islets import make_dtz_image
from tests.fixtures.accounts import bearer, grant
from tests.fixtures.loopback_http import QuietHandler, serve_on_loopback
from tests.fixtures.security_headers import SECURITY_HEADERS
from tests.fixtures.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.browser]

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "services" / "frontend" / "static"
ARTIFACTS = REPO / "artifacts" / "frontend"
CHROMIUM = "/usr/bin/chromium"

FRONTEND_NGINX_CONF = REPO / "services" / "frontend" / "nginx.conf"
EDGE_NGINX_CONF = REPO / "services" / "edge" / "nginx.conf"
# Both images hold it as /etc/nginx/isletnet-security-headers.conf.
SECURITY_HEADERS_CONF = REPO / "services" / "common" / "security-headers.conf"


def shipped_nginx_conf(conf: Path, prefix: Path, swaps: dict[str, str]) -> str:
    """An image's own nginx.conf with the container's paths, port and upstreams swapped for this
    test's (so the browser tests exercise the configuration that ships)."""
    text = conf.read_text()
    shared = {"/etc/nginx/isletnet-security-headers.conf": str(SECURITY_HEADERS_CONF)}
    for old, new in {"/var/lib/isletnet/nginx": str(prefix), **shared, **swaps}.items():
        assert old in text, f"{conf} no longer contains {old!r}; update this test's swaps"
        text = text.replace(old, new)
    # The container runs nginx in the foreground as its only process; so does the test.
    return "daemon off;\n" + text.replace("access_log /dev/stdout;", f"access_log {prefix}/access.log;")


def nginx_conf(prefix: Path, port: int, backend_port: int, static: Path, timeout_s: int = 600) -> str:
    """The frontend image's nginx.conf: serves `static`, proxies /api/ to the backend.
    `timeout_s` stands for PROXY_TIMEOUT_S, which the image's start script puts in."""
    return shipped_nginx_conf(FRONTEND_NGINX_CONF, prefix, {
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "root /app/static;": f"root {static};",
        "http://backend:8000": f"http://127.0.0.1:{backend_port}",
        "${PROXY_TIMEOUT_S}": str(timeout_s),
    })  # fmt: skip


def edge_nginx_conf(prefix: Path, port: int, frontend_port: int, timeout_s: int = 600) -> str:
    """The edge image's nginx.conf: proxies everything to the frontend."""
    return shipped_nginx_conf(EDGE_NGINX_CONF, prefix, {
        "listen 8080;": f"listen 127.0.0.1:{port};",
        "http://frontend:8080": f"http://127.0.0.1:{frontend_port}",
        "${PROXY_TIMEOUT_S}": str(timeout_s),
    })  # fmt: skip


def start_nginx(nginx: str, prefix: Path, conf_text: str) -> subprocess.Popen:
    """Start nginx with its own prefix; `prefix` is readable by its unprivileged workers."""
    prefix.mkdir(mode=0o755)
    prefix.chmod(0o755)
    (prefix / "nginx.conf").write_text(conf_text)
    with (prefix / "stderr.log").open("wb") as stderr:
        return subprocess.Popen([nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                                stdout=subprocess.DEVNULL, stderr=stderr)


def copy_readable(source: Path, target: Path) -> Path:
    """Copy a tree that an unprivileged nginx worker must read, readable by everyone (the
    checkout's own modes and its parents' 0700 must not matter)."""
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return target


@pytest.fixture
def nginx_pair() -> Iterator[Callable[..., str]]:
    """Start the edge and frontend nginx in front of a backend on `backend_port`; returns the
    edge's URL (the frontend's with `entry="frontend"`, as a Kubernetes Ingress reaches it).
    `edge_timeout_s`/`frontend_timeout_s` stand for each image's PROXY_TIMEOUT_S."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    tmp = Path(tempfile.mkdtemp(prefix="h13-nginx-"))
    tmp.chmod(0o755)
    processes: list[subprocess.Popen] = []

    def start(backend_port: int, edge_timeout_s: int = 600, frontend_timeout_s: int = 600,
              entry: str = "edge") -> str:
        static = copy_readable(STATIC, tmp / "static")
        frontend_port, edge_port = free_port(), free_port()
        processes.append(start_nginx(nginx, tmp / "frontend", nginx_conf(
            tmp / "frontend", frontend_port, backend_port, static, frontend_timeout_s)))
        processes.append(start_nginx(nginx, tmp / "edge", edge_nginx_conf(
            tmp / "edge", edge_port, frontend_port, edge_timeout_s)))
        _wait_http(f"http://127.0.0.1:{frontend_port}/")
        _wait_http(f"http://127.0.0.1:{edge_port}/")
        return f"http://127.0.0.1:{edge_port if entry == 'edge' else frontend_port}"

    try:
        yield start
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass
class LiveStack:
    url: str           # the edge (nginx), in front of the frontend
    api_url: str       # the backend directly
    store: object
    queue: object
    backend: object    # the backend's HTTP server (tests may shut it down)
    frontend_url: str  # the frontend (nginx) directly
    username: str      # a technician of team "default" the browser signs in as
    password: str
    headers: dict      # Authorization of an admin, for the tests' own API calls


class Worker(threading.Thread):
    """Analyses queued jobs until stopped (the shepherd's part, with the real islet library)."""

    def __init__(self, store, queue) -> None:
        super().__init__(daemon=True)
        self.store, self.queue = store, queue
        self.stopped = threading.Event()
        self.errors: list[BaseException] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                if process_next_job(self.store, self.queue, "frontend-test-worker") is None:
                    self.stopped.wait(0.2)
            except BaseException as error:  # surfaced by the fixture, never swallowed
                self.errors.append(error)
                return


def _wait_http(url: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer")
        time.sleep(0.2)


@pytest.fixture
def live_stack(isolated_service_env: dict[str, str]) -> Iterator[LiveStack]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    app = create_app(isolated_service_env)
    backend_port = free_port()
    server = make_server("127.0.0.1", backend_port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    database = app.extensions["isletnet.database"]
    worker = Worker(app.extensions["isletnet.store"], LeaseQueue(database))
    worker.start()
    tmp = Path(tempfile.mkdtemp(prefix="h7-nginx-"))
    tmp.chmod(0o755)  # nginx workers run as an unprivileged user and keep upload bodies here
    # ...and read the UI from here too: a checkout under a 0700 home folder is out of their reach.
    static = copy_readable(STATIC, tmp / "static")
    frontend_port, edge_port = free_port(), free_port()
    # The browser talks to the edge, as in a real instance: browser -> edge -> frontend -> backend.
    frontend_conf = nginx_conf(tmp / "frontend", frontend_port, backend_port, static)
    processes = [start_nginx(nginx, tmp / "frontend", frontend_conf),
                 start_nginx(nginx, tmp / "edge", edge_nginx_conf(tmp / "edge", edge_port, frontend_port))]
    try:
        _wait_http(f"http://127.0.0.1:{frontend_port}/")
        _wait_http(f"http://127.0.0.1:{edge_port}/")
        password = secrets.token_urlsafe(12)
        app.extensions["isletnet.accounts"].add_user("tech", "technician", "default", hash_password(password))
        yield LiveStack(f"http://127.0.0.1:{edge_port}", f"http://127.0.0.1:{backend_port}",
                        app.extensions["isletnet.store"], JobRecords(database), server,
                        f"http://127.0.0.1:{frontend_port}", "tech", password, bearer(grant(app, "admin")))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        worker.stopped.set()
        worker.join(timeout=30)
        server.shutdown()
        app.extensions["isletnet.access"].stop()
        shutil.rmtree(tmp, ignore_errors=True)
    assert not worker.errors, worker.errors


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def sample_png(path: Path, seed: int = 7) -> Path:
    rgb, _truth = make_dtz_image(seed=seed, diameters_um=(80, 110, 150, 190, 240), size=(600, 800))
    Image.fromarray(rgb).save(path)
    return path


# Every Content-Security-Policy violation of the page, in the order the browser reports them.
RECORD_CSP_VIOLATIONS = """
    window.cspViolations = [];
    document.addEventListener("securitypolicyviolation", (event) => window.cspViolations.push(
        `${event.effectiveDirective} refused ${event.blockedURI || "inline"} `
        + `(${event.sourceFile}:${event.lineNumber})`));
"""


def new_page(browser, width: int, height: int, stack: LiveStack | None = None):
    """A page that records script errors and CSP refusals (see `page_problems`), signed in as the
    stack's technician when `stack` is given. Under the CSP,
    `wait_for_function` takes functions ("() => ..."): a bare expression is evaluated by eval(),
    which the policy refuses."""
    page = browser.new_page(viewport={"width": width, "height": height}, accept_downloads=True)
    if stack is not None:
        signed_in = page.request.post(f"{stack.url}/api/auth/login",
                                      data={"username": stack.username, "password": stack.password})
        assert signed_in.ok, signed_in.text()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text)
            if message.type == "error" and "Content Security Policy" in message.text else None)
    page.add_init_script(RECORD_CSP_VIOLATIONS)
    page.errors = errors
    return page


def page_problems(page) -> list[str]:
    """Script errors, CSP messages on the console, and the page's securitypolicyviolation events."""
    return page.errors + page.evaluate("window.cspViolations")


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def upload_and_wait(page, stack: LiveStack, image: Path, training: bool = False) -> str:
    """Upload through the UI; returns the job id once the result screen shows the islet table."""
    page.goto(stack.url + "/#/upload")
    page.set_input_files("#file-input", str(image))
    page.get_by_text(image.name).wait_for()
    if training:
        page.get_by_label("Use these images for training").check()
    page.get_by_role("button", name="Analyse image").click()
    try:
        page.wait_for_function("() => /^#\\/jobs\\/[0-9a-f]{32}$/.test(location.hash)", timeout=30_000)
    except Exception:
        shot(page, "upload-timeout")
        raise
    job_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    page.wait_for_selector("#islets-table", timeout=240_000)
    return job_id


def test_upload_watch_and_read_a_result_at_desktop_size(browser, live_stack: LiveStack, tmp_path: Path) -> None:
    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/")
    page.wait_for_selector("#model option[value=classical]", state="attached")
    assert page.input_value("#pixel-size") == "0.843"
    shot(page, "upload-1280")

    job_id = upload_and_wait(page, live_stack, sample_png(tmp_path / "sample-a.png"))
    result = requests.get(f"{live_stack.api_url}/api/jobs/{job_id}/result", headers=live_stack.headers,
                          timeout=10).json()
    islets = result["images"][0]["islets"]
    assert len(islets) >= 4
    rows = page.locator("#islets-table tbody tr")
    assert rows.count() == len(islets)
    assert page.locator("[data-summary=islet-count]").inner_text() == str(len(islets))
    assert page.locator("[data-summary=ieq-ricordi]").inner_text() == f"{result['summary']['ieq_ricordi']:,.2f}"
    assert page.locator("#quality-flags").count() == 0  # a clean image raises no quality flag
    histogram_total = sum(int(text) for text in page.locator(".histogram .count").all_inner_texts())
    assert histogram_total == sum(result["summary"]["size_classes"].values())
    overlay = page.locator("#overlay")
    assert overlay.evaluate("img => img.complete && img.naturalWidth > 0")

    # Sorting: twice on the area heading gives the largest islet first, by keyboard too.
    page.get_by_role("button", name="Area (µm²)").click()
    page.get_by_role("button", name="Area (µm²)").press("Enter")
    header = page.locator("th", has=page.get_by_role("button", name="Area (µm²)"))
    assert header.get_attribute("aria-sort") == "descending"
    largest = max(islets, key=lambda islet: islet["area_um2"])
    assert rows.first.get_attribute("data-islet") == str(largest["number"])
    page.get_by_role("button", name=f"Highlight islet {largest['number']} on the image").click()
    assert page.locator(".figure polygon").count() == 1
    shot(page, "result-1280")

    with page.expect_download() as download_info:
        page.get_by_role("link", name=re.compile("^CSV")).click()
    table = list(csv.DictReader(io.StringIO(Path(download_info.value.path()).read_text())))
    assert len(table) == len(islets)

    page.get_by_role("link", name="Jobs", exact=True).click()
    page.wait_for_selector(f"tr[data-job-id='{job_id}'][data-state=done]")
    shot(page, "jobs-1280")
    assert page_problems(page) == []


def test_bad_files_are_refused_with_sentences_and_nothing_is_stored(
    browser, live_stack: LiveStack, tmp_path: Path
) -> None:
    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/#/upload")
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    page.set_input_files("#file-input", str(notes))
    refusal = "“notes.txt” is not a PNG, JPEG or TIFF image; choose an image file."
    assert page.get_by_role("alert").inner_text() == refusal
    assert page.get_by_role("button", name="Analyse image").is_disabled()

    fake = tmp_path / "fake.png"  # passes the client's name check; the server reads the bytes
    fake.write_text("this is text pretending to be a PNG")
    page.set_input_files("#file-input", str(fake))
    page.fill("#pixel-size", "-1")
    page.locator("#pixel-size").blur()
    assert "more than 0" in page.locator("#pixel-size-error").inner_text()
    page.fill("#pixel-size", "0.843")
    page.locator("#pixel-size").blur()
    page.get_by_role("button", name="Analyse image").click()
    error = page.locator("#upload-error")
    error.wait_for()
    server = requests.post(f"{live_stack.api_url}/api/jobs", files={"images": ("fake.png", fake.read_bytes())},
                           headers=live_stack.headers, timeout=10)
    assert error.inner_text() == server.json()["error"]  # the server's own sentence, shown as is
    shot(page, "upload-refused-1280")
    assert live_stack.queue.list_jobs() == []
    assert live_stack.store.list("jobs/") == []
    assert page_problems(page) == []


def test_tablet_width_upload_for_training_and_result(browser, live_stack: LiveStack, tmp_path: Path) -> None:
    page = new_page(browser, 768, 1024, live_stack)
    job_id = upload_and_wait(page, live_stack, sample_png(tmp_path / "tablet.png", seed=11), training=True)
    assert live_stack.queue.get(job_id).training is True
    assert page.locator("#islets-table tbody tr").count() >= 4
    # One column and nothing wider than the screen but the table's own scroll box.
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    figure, summary = page.locator(".figure").bounding_box(), page.locator("#summary").bounding_box()
    assert summary["y"] > figure["y"] + figure["height"] - 1
    shot(page, "result-768")
    page.goto(live_stack.url + "/#/jobs")
    page.wait_for_selector(f"tr[data-job-id='{job_id}']")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    shot(page, "jobs-768")
    page.goto(live_stack.url + "/#/upload")
    page.wait_for_selector("#file-input", state="attached")
    assert page.evaluate("document.documentElement.scrollWidth") <= 768
    shot(page, "upload-768")
    assert page_problems(page) == []


def _raw_request(url: str, request: bytes) -> bytes:
    """What the server answers to `request` sent as is (for requests `requests` will not make)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(request)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return answer


def test_security_headers_on_every_path_and_the_ui_keeps_to_its_policy(browser, live_stack: LiveStack) -> None:
    paths = {"/": 200, "/api/health": 200, f"/api/jobs/{'0' * 32}": 401, "/js/app.js": 200, "/css/app.css": 200,
             "/favicon.svg": 200, "/edge-health": 200}
    for path, status in paths.items():
        response = requests.get(live_stack.url + path, timeout=10)
        assert response.status_code == status, path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (path, name)  # once: duplicates would be joined by ", "
    # An error page of the edge's own (no Host header: 400 before any location) carries them too.
    answer = _raw_request(live_stack.url, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer[:200]
    for name, value in SECURITY_HEADERS.items():
        assert f"\r\n{name}: {value}\r\n" in answer, name

    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/")
    page.wait_for_selector("#model option[value=classical]", state="attached")
    page.goto(live_stack.url + "/#/jobs")
    page.wait_for_selector("#region-jobs-table p, #jobs-table", state="attached")
    assert page_problems(page) == []
    # The policy is in force in the browser: an inline script does not run, a style attribute is
    # refused, and both are reported to the page (so the listener above would see the UI's own).
    ran = page.evaluate("""() => {
        const script = document.createElement("script");
        script.textContent = "window.inlineScriptRan = true;";
        document.body.append(script);
        document.body.setAttribute("style", "outline: 3px solid red");
        return window.inlineScriptRan === true;
    }""")
    assert ran is False
    page.wait_for_function("() => window.cspViolations.length >= 2")
    refused = " ".join(page_problems(page))
    assert "script-src-elem refused inline" in refused and "style-src-attr refused inline" in refused, refused


def test_quality_flags_of_a_dark_image_are_shown_as_sentences(browser, live_stack: LiveStack, tmp_path: Path) -> None:
    rgb, _truth = make_dtz_image(seed=7, diameters_um=(80, 110, 150, 190, 240), size=(600, 800))
    dark = tmp_path / "dark.png"
    Image.fromarray((rgb * 0.4).astype("uint8")).save(dark)
    page = new_page(browser, 1280, 800, live_stack)
    job_id = upload_and_wait(page, live_stack, dark)
    result = requests.get(f"{live_stack.api_url}/api/jobs/{job_id}/result", headers=live_stack.headers,
                          timeout=10).json()
    flags = result["images"][0]["quality_flags"]
    assert [flag["code"] for flag in flags] == ["underexposed"]
    notes = page.locator("#quality-flags")
    assert notes.get_by_role("heading", name="Check this image").count() == 1
    assert notes.locator("li[data-flag=underexposed]").inner_text() == flags[0]["message"]
    shot(page, "result-quality-flags")
    assert page.errors == []


def test_keyboard_only_reaches_every_upload_control(browser, live_stack: LiveStack) -> None:
    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/#/upload")
    page.wait_for_selector("#model option[value=classical]", state="attached")
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    for control in ("Skip to content", "file-input", "pixel-size", "model", "training"):
        assert control in reached, reached
    labels = page.evaluate("[...document.querySelectorAll('input, select')].every(e => e.labels.length > 0)")
    assert labels


def test_backend_down_is_a_sentence_on_screen(browser, live_stack: LiveStack) -> None:
    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/#/jobs")
    page.wait_for_selector("#region-jobs-table p, #jobs-table", state="attached")
    live_stack.backend.shutdown()
    live_stack.backend.server_close()
    page.reload()
    alert = page.get_by_role("alert").first
    alert.wait_for()
    # nginx of the frontend image answers for the missing backend in the API's own error format.
    assert alert.inner_text() == "The backend is not reachable right now; try again in a minute."
    assert page.get_by_text("No jobs yet").count() == 0  # unknown is not empty
    shot(page, "backend-down-1280")
    assert page_problems(page) == []


def test_dropping_two_images_makes_one_job_of_two_images(browser, live_stack: LiveStack, tmp_path: Path) -> None:
    page = new_page(browser, 1280, 800, live_stack)
    page.goto(live_stack.url + "/#/upload")
    page.wait_for_selector(".dropzone")
    pngs = [sample_png(tmp_path / f"drop-{n}.png", seed=30 + n).read_bytes() for n in range(2)]
    # What a drag from the file manager delivers: a drop event whose DataTransfer holds the files.
    page.evaluate(
        """(images) => {
            const transfer = new DataTransfer();
            images.forEach((bytes, n) => transfer.items.add(
                new File([new Uint8Array(bytes)], `drop-${n}.png`, { type: "image/png" })));
            const zone = document.querySelector(".dropzone");
            zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
            zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [list(png) for png in pngs],
    )
    assert page.locator(".file-list li").count() == 2
    page.get_by_role("button", name="Analyse 2 images").click()
    page.wait_for_function("() => /^#\\/jobs\\/[0-9a-f]{32}$/.test(location.hash)", timeout=30_000)
    job_id = page.evaluate("location.hash").rsplit("/", 1)[1]
    job = live_stack.queue.get(job_id)
    assert job.image_count == 2 and job.file_names == ["drop-0.png", "drop-1.png"]
    assert live_stack.store.get(f"jobs/{job_id}/inputs/1-drop-1.png") == pngs[1]
    page.wait_for_selector("[role=tab]", timeout=240_000)  # one tab per image on the result screen
    page.get_by_role("tab", name="drop-1.png").click()
    assert page.locator("#overlay").get_attribute("src").endswith("overlay.png?image=1")
    page.wait_for_function("() => { const img = document.querySelector('#overlay'); "
                           "return img.complete && img.naturalWidth > 0; }")
    shot(page, "result-two-images-1280")
    assert page_problems(page) == []


def test_the_scheme_the_client_used_reaches_the_backend(nginx_pair, loopback_upstreams) -> None:
    # Behind the host's TLS nginx the edge gets X-Forwarded-Proto: https; the frontend keeps it.
    edge = nginx_pair(loopback_upstreams["backend"].port)
    behind_tls = requests.get(f"{edge}/api/jobs", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert behind_tls.json()["forwarded_proto"] == "https"
    direct = requests.get(f"{edge}/api/jobs", timeout=10)  # a client on the edge's own port: plain http
    assert direct.json()["forwarded_proto"] == "http"


@pytest.mark.parametrize("entry", ["edge", "frontend"])
def test_each_security_header_comes_once_through_the_edge_or_straight_from_the_frontend(
        nginx_pair, loopback_upstreams, entry: str) -> None:
    # On compose and Swarm the browser reaches the frontend through the edge; on Kubernetes the
    # Ingress sends it straight to the frontend, which must then send the headers itself. The
    # stand-in backend sends a CSP and X-Frame-Options of its own: they must be replaced, not doubled.
    url = nginx_pair(loopback_upstreams["backend"].port, entry=entry)
    for path in ("/", "/js/app.js", "/css/app.css", "/no/such/page", "/api/jobs"):
        response = requests.get(url + path, timeout=10)
        assert response.status_code == 200, path
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (entry, path, name)  # duplicates would be joined by ", "
    # nginx's own error page (no Host header: 400 before any location) carries them too.
    answer = _raw_request(url, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").decode(errors="replace")
    assert answer.startswith("HTTP/1.1 400"), answer[:200]
    for name, value in SECURITY_HEADERS.items():
        assert f"\r\n{name}: {value}\r\n" in answer, (entry, name)


class SlowBackend(QuietHandler):
    """Answers after SLOW_ANSWER_S: longer than the proxy timeout under test."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        time.sleep(SLOW_ANSWER_S)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # nginx has given up by now
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")


SLOW_ANSWER_S = 6


@pytest.mark.parametrize(("edge_timeout_s", "frontend_timeout_s", "sentence"), [
    (30, 2, "The backend is not reachable right now; try again in a minute."),
    (2, 30, "IsletNet is not reachable right now; try again in a minute."),
])  # fmt: skip
def test_each_nginx_waits_its_proxy_timeout(nginx_pair, edge_timeout_s: int, frontend_timeout_s: int,
                                            sentence: str) -> None:
    # PROXY_TIMEOUT_S is where each config uses it: the hop with the short timeout gives up first.
    with serve_on_loopback(SlowBackend) as backend:
        edge = nginx_pair(backend.server_address[1], edge_timeout_s, frontend_timeout_s)
        started = time.monotonic()
        response = requests.get(f"{edge}/api/slow", timeout=30)
        waited = time.monotonic() - started
    assert response.status_code == 503 and response.json()["error"] == sentence
    assert 1.5 < waited < SLOW_ANSWER_S - 1, waited
