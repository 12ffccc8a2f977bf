"""The worker in-process against real PostgreSQL and SeaweedFS, jobs submitted through the real
backend: results are plausible and stored under the documented keys, bad images and failing
models fail only their job, a graceful stop drains or releases."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from PIL import Image

from services.backend.app import create_app
from services.backend.tests.images import encode, truncated
from services.common.database import JobDatabase
from services.common.jobs import JobRecords
from services.common.lease_queue import LeaseQueue
from services.common.storage import ObjectStore
from services.islets import get_model, make_dtz_image
from services.shepherd.tests.helpers import events, job, make_worker, process_jobs, submit, wait_for
from services.shepherd.worker import STAGES
from tests.fixtures.accounts import signed_in

pytestmark = pytest.mark.integration

DIAMETERS = (90.0, 130.0, 180.0)


@pytest.fixture
def env(isolated_service_env: dict[str, str]) -> dict[str, str]:
    return isolated_service_env


@pytest.fixture(scope="module")
def dtz() -> tuple[bytes, dict[str, Any]]:
    rgb, truth = make_dtz_image(seed=7, size=(700, 800), diameters_um=DIAMETERS)
    return encode(rgb, "PNG"), truth


class SlowModel:
    """The real classical model, slowed down so a job is still running when the test acts."""

    def __init__(self, delay_s: float) -> None:
        self.inner = get_model("classical")
        self.name, self.device, self.delay_s = "classical", "cpu", delay_s

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(self.delay_s)
        return self.inner.predict(batch)


class BrokenModel:
    name, device = "classical", "cpu"

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_job_end_to_end_gives_plausible_results(env: dict[str, str], tmp_path, dtz) -> None:
    png, truth = dtz
    job_id = submit(env, [(png, "a.png"), (png, "b.png")], pixel_size_um="0.843")
    assert process_jobs(env, tmp_path, 2) == ["done", None]

    app = create_app(env)
    client = signed_in(app)
    result = client.get(f"/api/jobs/{job_id}/result").get_json()
    app.extensions["isletnet.access"].stop()
    assert [image["name"] for image in result["images"]] == ["a.png", "b.png"]
    for image in result["images"]:
        assert image["summary"]["islet_count"] == truth["islet_count"] == len(DIAMETERS)
        assert image["summary"]["ieq_ricordi"] == pytest.approx(truth["ieq_ricordi"], rel=0.25)
        assert len(image["islets"]) == len(DIAMETERS)
    summary = result["summary"]
    assert summary["islet_count"] == 2 * len(DIAMETERS) and summary["image_count"] == 2
    assert summary["ieq_ricordi"] == pytest.approx(2 * truth["ieq_ricordi"], rel=0.25)
    assert 0.5 < summary["purity"] <= 1

    store = ObjectStore.from_env(env)
    outputs = [key.split(f"jobs/{job_id}/")[1] for key in store.list(f"jobs/{job_id}/outputs/")]
    assert outputs == [
        "outputs/0/islets.csv", "outputs/0/overlay.png", "outputs/0/preview.jpg", "outputs/0/result.json",
        "outputs/1/islets.csv", "outputs/1/overlay.png", "outputs/1/preview.jpg", "outputs/1/result.json",
        "outputs/summary.json",
    ]  # fmt: skip
    assert store.get(f"jobs/{job_id}/outputs/0/overlay.png").startswith(b"\x89PNG")
    assert store.get(f"jobs/{job_id}/outputs/0/preview.jpg").startswith(b"\xff\xd8\xff")
    assert store.get(f"jobs/{job_id}/outputs/1/islets.csv").decode().count("\n") >= len(DIAMETERS)
    assert json.loads(store.get(f"jobs/{job_id}/outputs/summary.json")) == summary

    done = job(env, job_id)
    assert (done.state, done.progress, done.attempts, done.error) == ("done", 1.0, 1, None)
    assert done.summary == summary
    assert events(env, job_id) == ["created", "claimed", "completed"]


def test_bad_image_fails_only_its_job(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    bad_id = submit(env, [(png, "good.png"), (png, "bad.png")])
    good_id = submit(env, [(png, "fine.png")])
    # Corrupt the stored input after upload (disk trouble, a manual edit): the backend checked it,
    # the worker must still cope.
    store = ObjectStore.from_env(env)
    store.put(f"jobs/{bad_id}/inputs/1-bad.png", truncated(png), "image/png")

    assert process_jobs(env, tmp_path, 2) == ["failed", "done"]
    failed = job(env, bad_id)
    assert failed.state == "failed"
    assert (
        failed.error == "Image 1 (bad.png) cannot be analysed: the PNG file is truncated or corrupt; upload it again."
    )
    assert job(env, good_id).state == "done"


def test_an_image_above_the_pixel_budget_fails_its_job_before_decoding(env: dict[str, str], tmp_path, dtz) -> None:
    """MAX_IMAGE_PIXELS bounds what the shepherd decodes: above it, the job fails with a sentence
    (read from the header; no pixel is decoded)."""
    png, _ = dtz
    job_id = submit(env, [(png, "large.png")])
    assert process_jobs(env, tmp_path, 1, max_image_pixels=100_000) == ["failed"]
    assert job(env, job_id).error == (
        "Image 0 (large.png) cannot be analysed: the image is 800×700 pixels (560,000), more than the limit of "
        "100,000; downscale it or raise MAX_IMAGE_PIXELS."
    )


def test_missing_input_and_unknown_model_fail_with_a_sentence(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    missing_id = submit(env, [(png, "a.png")])
    ObjectStore.from_env(env).delete([f"jobs/{missing_id}/inputs/0-a.png"])
    records = JobRecords(JobDatabase.from_env(env))
    unknown_id = records.create_job(model="unet-v9", pixel_size_um=0.843, file_names=["a.png"])

    assert process_jobs(env, tmp_path, 2) == ["failed", "failed"]
    assert job(env, missing_id).error == "Image 0 (a.png) is missing from storage; submit the job again."
    assert job(env, unknown_id).error == "Unknown model 'unet-v9'; the known models are: classical."


def test_failing_model_fails_the_job_and_the_worker_goes_on(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    first, second = submit(env, [(png, "a.png")]), submit(env, [(png, "b.png")])
    assert process_jobs(env, tmp_path, 2, model_loader=lambda name: BrokenModel()) == ["failed", "failed"]
    assert job(env, first).error == (
        "The model classical failed on image 0 (a.png): CUDA error: an illegal memory access was encountered."
    )
    assert job(env, second).state == "failed"


def run_until_done(worker, env: dict[str, str], ids: list[str]) -> None:
    """Run the worker's service loop until every job in `ids` is done, then stop it."""
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        wait_for(lambda: all(job(env, job_id).state == "done" for job_id in ids), 120, f"{len(ids)} jobs done")
    finally:
        worker.request_stop()
        runner.join(timeout=60)


def test_images_of_concurrent_jobs_share_model_batches(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    ids = [submit(env, [(png, f"{n}.png")]) for n in range(3)]
    model = SlowModel(0.3)
    worker = make_worker(env, tmp_path, model_loader=lambda name: model, concurrency=3, max_batch_wait_s=0.5)
    run_until_done(worker, env, ids)
    batch_sizes = worker._batchers["classical"].batch_sizes
    assert sum(batch_sizes) == 3 and max(batch_sizes) >= 2, batch_sizes


def test_graceful_stop_finishes_the_running_job(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    job_id = submit(env, [(png, "a.png")])
    worker = make_worker(env, tmp_path, model_loader=lambda name: SlowModel(1.5), drain_s=60)
    runner = threading.Thread(target=worker.run)
    runner.start()
    wait_for(lambda: job(env, job_id).state == "running", 60, "the job to start")
    worker.request_stop()
    runner.join(timeout=90)
    assert not runner.is_alive()
    assert job(env, job_id).state == "done"


def test_stop_past_the_drain_time_releases_the_job(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    job_id = submit(env, [(png, "a.png"), (png, "b.png")])
    worker = make_worker(env, tmp_path, model_loader=lambda name: SlowModel(4), drain_s=0.5, max_batch_size=1)
    runner = threading.Thread(target=worker.run)
    runner.start()
    wait_for(lambda: job(env, job_id).state == "running", 60, "the job to start")
    started = time.monotonic()
    worker.request_stop()
    runner.join(timeout=60)
    assert not runner.is_alive() and time.monotonic() - started < 15
    released = job(env, job_id)
    assert (released.state, released.attempts, released.worker_id) == ("queued", 0, None)
    assert events(env, job_id)[-1] == "released"

    # Another worker picks it up and finishes it.
    other = make_worker(env, tmp_path, worker_id="second")
    try:
        assert other.process_next() == "done"
    finally:
        other.close()
    assert job(env, job_id).state == "done"


def test_lost_lease_is_noticed_and_the_job_completes_once(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    job_id = submit(env, [(png, "a.png")])
    queue = LeaseQueue(JobDatabase.from_env(env))
    stale = queue.claim("frozen-worker", 0.2)  # a worker that froze right after claiming
    time.sleep(0.5)
    assert process_jobs(env, tmp_path, 1) == ["done"]
    assert queue.complete(job_id, stale.token, {"islet_count": 0}) is False
    assert events(env, job_id) == ["created", "claimed", "reclaimed", "completed"]
    assert job(env, job_id).attempts == 2


def test_a_hung_job_stops_being_extended_and_goes_to_another_worker(env: dict[str, str], tmp_path, dtz) -> None:
    png, _ = dtz
    job_id = submit(env, [(png, "a.png")])
    hung = make_worker(env, tmp_path, model_loader=lambda name: SlowModel(8), lease_s=1.5, stall_s=1.0)
    runner = threading.Thread(target=hung.process_next)
    runner.start()
    try:
        wait_for(lambda: job(env, job_id).state == "running", 60, "the job to start")
        rescuer = make_worker(env, tmp_path, worker_id="rescuer")
        try:
            assert (
                wait_for(lambda: rescuer.process_next(), 60, "the lease to expire and the job to be reclaimed")
                == "done"
            )
        finally:
            rescuer.close()
    finally:
        runner.join(timeout=60)
        hung.close()
    assert events(env, job_id) == ["created", "claimed", "reclaimed", "completed"]
    assert job(env, job_id).worker_id == "rescuer"


def test_an_idle_worker_claims_a_new_job_at_once_not_at_its_next_poll(
    env: dict[str, str], tmp_path, dtz, caplog: pytest.LogCaptureFixture
) -> None:
    """The backend's insert NOTIFYs the queue; a worker polling only every 60 s still starts the
    job within seconds, and logs its stage times when it is done."""
    png, _ = dtz
    caplog.set_level("INFO", logger="services.shepherd")
    worker = make_worker(env, tmp_path, poll_s=60.0)
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        # The first (empty) claim is behind it and the listener is connected once it announced.
        wait_for(lambda: worker._claimable_count > 0, 30, "the worker to listen for new jobs")
        time.sleep(0.5)
        submitted = time.monotonic()
        job_id = submit(env, [(png, "a.png"), (png, "b.png")])
        wait_for(lambda: job(env, job_id).state == "done", 50, "the job to be done well before the next poll")
        assert time.monotonic() - submitted < 30
    finally:
        worker.request_stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    lines = [message for message in caplog.messages if message.startswith(f"job {job_id} stages ")]
    assert len(lines) == 1, "one stage line per finished job"
    document = json.loads(lines[0].split(" stages ", 1)[1])
    assert (document["images"], document["pipeline"]) == (2, "overlap")
    stages = document["stages"]
    assert list(stages) == list(STAGES), "every stage, in pipeline order"
    assert all(stages[name]["cpu_s"] > 0 for name in ("decode", "model", "postprocess", "overlay"))
    assert 0 <= stages["queue_wait"]["wall_s"] < 30


def test_the_serial_pipeline_writes_the_same_results(env: dict[str, str], tmp_path, dtz) -> None:
    """SHEPHERD_PIPELINE=serial (kept for the burst bench) and the overlapped pipeline store the
    same result and CSV bytes and the same overlay pixels (encoded differently); both store a
    JPEG preview of the overlay."""
    png, _ = dtz
    serial_id = submit(env, [(png, "a.png")])
    assert process_jobs(env, tmp_path, 1, pipeline="serial") == ["done"]
    overlap_id = submit(env, [(png, "a.png")])
    assert process_jobs(env, tmp_path, 1, pipeline="overlap") == ["done"]
    store = ObjectStore.from_env(env)

    def outputs(job_id: str) -> dict[str, bytes]:
        return {key.split("/outputs/")[1]: store.get(key) for key in store.list(f"jobs/{job_id}/outputs/0/")}

    serial, overlap = outputs(serial_id), outputs(overlap_id)
    assert sorted(serial) == sorted(overlap) == ["0/islets.csv", "0/overlay.png", "0/preview.jpg", "0/result.json"]
    for name in ("0/islets.csv", "0/result.json"):
        assert serial[name] == overlap[name], name
    assert serial["0/overlay.png"] != overlap["0/overlay.png"], "the overlapped pipeline's PNG encoder is another"
    overlays = [np.asarray(Image.open(io.BytesIO(outputs["0/overlay.png"]))) for outputs in (serial, overlap)]
    assert overlays[0].shape == (700, 800, 3) and np.array_equal(overlays[0], overlays[1])
    for preview in (serial["0/preview.jpg"], overlap["0/preview.jpg"]):
        with Image.open(io.BytesIO(preview)) as image:
            assert (image.format, image.size) == ("JPEG", (800, 700))


class FakeGpuModel:
    """Stands in for a network on a GPU (no GPU is lent to these tests, and torch is not
    installed here): each batch takes `batch_s` of wall time without CPU, as a kernel does while
    the CPU waits, and gives all-background class maps. Records every batch's start and end."""

    name, device = "classical", "cuda:0 (fake)"

    def __init__(self, batch_s: float) -> None:
        self.batch_s = batch_s
        self.batches: list[tuple[float, float, int]] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        started = time.monotonic()
        time.sleep(self.batch_s)
        self.batches.append((started, time.monotonic(), len(batch)))
        return [np.zeros(image.shape[:2], dtype=np.uint8) for image in batch]


def test_a_gpu_worker_is_fed_batches_while_the_cpu_stages_run_around_it(env: dict[str, str], tmp_path, dtz) -> None:
    """A GPU host's one worker (fake GPU model): images of concurrent jobs reach the model in
    batches, and the next batch is decoded while the model runs, so the model is busy most of
    the time between its first and last batch."""
    png, _ = dtz
    ids = [submit(env, [(png, f"{n}.png")]) for n in range(12)]
    model = FakeGpuModel(0.4)
    worker = make_worker(env, tmp_path, model_loader=lambda name: model, concurrency=5, max_batch_size=4,
                         max_batch_wait_s=0.05, postprocess_threads=2)  # fmt: skip
    run_until_done(worker, env, ids)
    sizes = [size for _start, _end, size in model.batches]
    assert sum(sizes) == 12 and max(sizes) >= 3 and len(sizes) <= 6, sizes
    busy = sum(end - start for start, end, _size in model.batches)
    span = model.batches[-1][1] - model.batches[0][0]
    assert busy / span >= 0.5, f"the model was busy {busy:.1f} s of {span:.1f} s: {model.batches}"


def test_measuring_in_processes_gives_the_same_files(env: dict[str, str], tmp_path, dtz, caplog) -> None:
    """POSTPROCESS_PROCESSES (GPU workers: measuring and drawing past the GIL) stores the same
    result, CSV, overlay and preview bytes as the threads do, and still reports the stages' CPU."""
    png, _ = dtz
    caplog.set_level("INFO", logger="services.shepherd")
    threads_id = submit(env, [(png, "a.png")])
    assert process_jobs(env, tmp_path, 1) == ["done"]
    processes_id = submit(env, [(png, "a.png"), (png, "b.png")])
    worker = make_worker(env, tmp_path, postprocess_processes=2)
    try:
        assert worker._processes is not None, "a process pool"
        assert worker.process_next() == "done"
    finally:
        worker.close()
    store = ObjectStore.from_env(env)
    for name in ("islets.csv", "overlay.png", "preview.jpg", "result.json"):
        expected = store.get(f"jobs/{threads_id}/outputs/0/{name}")
        assert store.get(f"jobs/{processes_id}/outputs/0/{name}") == expected, name
        assert store.get(f"jobs/{processes_id}/outputs/1/{name}") == expected, name
    line = next(message for message in caplog.messages if message.startswith(f"job {processes_id} stages "))
    stages = json.loads(line.split(" stages ", 1)[1])["stages"]
    assert stages["postprocess"]["cpu_s"] > 0 and stages["overlay"]["cpu_s"] > 0


class BudgetSpy:
    """The real classical model, noting how many pixels its worker holds in flight at each call."""

    def __init__(self) -> None:
        self.inner = get_model("classical")
        self.name, self.device = "classical", "cpu"
        self.worker: Any = None
        self.held: list[int] = []

    def predict(self, batch: list[np.ndarray]) -> list[np.ndarray]:
        self.held.append(self.worker._pixels.used_pixels)
        time.sleep(0.2)  # time for the next image to be admitted beside it, if the budget let it
        return self.inner.predict(batch)


@pytest.mark.parametrize("share_in_images", [1.5, 0.5])
def test_images_are_admitted_within_the_pixel_budget(env: dict[str, str], tmp_path, dtz, share_in_images) -> None:
    """A share of 1.5 images: one image at a time in flight. Half an image: every image is
    oversized, and each still runs (alone, under the container's lock)."""
    png, truth = dtz
    pixels = 700 * 800
    job_id = submit(env, [(png, f"{n}.png") for n in range(3)])
    spy = BudgetSpy()
    worker = make_worker(env, tmp_path, model_loader=lambda name: spy, pixel_budget=int(pixels * share_in_images))
    spy.worker = worker
    try:
        assert worker.process_next() == "done"
    finally:
        worker.close()
    assert job(env, job_id).state == "done"
    assert spy.held == [pixels, pixels, pixels], "never more than one image in flight"
    assert worker._pixels.used_pixels == 0, "every admission was given back"
