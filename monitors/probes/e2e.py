"""Probe `e2e`: a small synthetic DTZ image goes through the REST API and comes back measured.

It tells "slow because loaded" from "broken": the job is submitted with a high priority and the
probe samples `GET /api/queue` while it waits. No result by the deadline while the queue is
moving (jobs finish, the queue shrinks, our job started) is a WARNING "slow: N jobs queued,
oldest X min" — never CRITICAL. CRITICAL is a refused submission, a failed or wrong result, or
no result by the deadline while nothing moves (no worker running, nothing finishing).

It signs in with the token of the instance's `probe` account (`Authorization: Bearer`), which
instance set-up generates into the env file as `ISLETNET_PROBE_TOKEN` and the backend registers at
start. A 401 means the backend does not know that token (see docs/runbook.md).

The job is submitted with `synthetic=1`, so neither it nor the deploy gate's run of it appear in
users' job lists, statistics or training exports (the pruner still deletes it with the rest).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import requests

from isletops.config import InstanceConfig, read_env_file
from isletops.errors import ProbeError
from monitors.metrics import Measurement
from monitors.probes.http import reason
from monitors.result import ProbeContext, ProbeResult, Status

NAME = "e2e"
INTERVAL_S = 300
DEFAULTS: dict[str, Any] = {
    "base_url": "",  # default: the instance's API URL
    "deadline_s": 180.0,
    "poll_s": 2.0,
    "priority": 100,
    "seed": 7,
    "diameters_um": [90, 140, 210],
    "pixel_size_um": 0.843,
    "count_tolerance": 0,  # how far the islet count may be off the truth
    "timeout_s": 15.0,  # per HTTP request
    "token": "",  # default: ISLETNET_PROBE_TOKEN from the instance's env file
}
TOKEN_ENV = "ISLETNET_PROBE_TOKEN"  # noqa: S105 - the variable's name


def base_url(context: ProbeContext) -> str:
    return (context.options.get("base_url") or context.instance.api_url).rstrip("/")


def probe_token(instance: InstanceConfig) -> str:
    """The probe account's API token, from the instance's 0600 env file ("" when it has none)."""
    return read_env_file(instance.env_file).get(TOKEN_ENV, "")


def synthetic_image(options: dict[str, Any]) -> tuple[bytes, int]:
    """PNG bytes of the synthetic image and the islet count it contains."""
    return _synthetic(int(options["seed"]), tuple(options["diameters_um"]), float(options["pixel_size_um"]))


@functools.lru_cache(maxsize=4)  # the daemon submits the same image every few minutes
def _synthetic(seed: int, diameters_um: tuple[float, ...], pixel_size_um: float) -> tuple[bytes, int]:
    from services.islets.images import encode_png
    from services.islets.synthetic import make_dtz_image

    rgb, truth = make_dtz_image(seed, diameters_um=list(diameters_um), pixel_size_um=pixel_size_um)
    return encode_png(rgb), int(truth["islet_count"])


def _queue(session: requests.Session, base: str, timeout: float, now: float) -> dict[str, Any] | None:
    """One `/api/queue` sample stamped with the probe's clock (`_t`), or None."""
    try:
        response = session.get(f"{base}/api/queue", timeout=timeout)
        sample = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError):
        return None
    return {**sample, "_t": now} if isinstance(sample, dict) else None


def _finished(sample: dict[str, Any]) -> int:
    return int(sample.get("done_last_hour") or 0) + int(sample.get("failed_last_hour") or 0)


def queue_progressed(samples: list[dict[str, Any]]) -> bool:
    """Did the queue move between the first and any later sample? (jobs finished or were taken)"""
    for before, after in zip(samples, samples[1:], strict=False):
        if _finished(after) > _finished(before):
            return True
        if int(after.get("queued") or 0) < int(before.get("queued") or 0):
            return True
        if float(after.get("oldest_queued_age_s") or 0) < float(before.get("oldest_queued_age_s") or 0) - 1:
            return True  # the oldest waiting job was taken
    return False


def _error(response: requests.Response) -> str:
    try:
        return str(response.json().get("error") or response.text)[:160]
    except ValueError:
        return response.text[:160] or response.reason


def run(
    context: ProbeContext, sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic
) -> ProbeResult:
    options = {**context.options, "token": context.options.get("token") or probe_token(context.instance)}
    result = check(base_url(context), options, sleep, clock)
    result.measurements = measurements(result, context.options)
    return result


def measurements(result: ProbeResult, options: dict[str, Any]) -> list[Measurement]:
    """The job's duration (when it was submitted) and the queue as last sampled."""
    found = []
    if result.value is not None:
        found.append(Measurement("e2e_duration", float(result.value), crit=float(options["deadline_s"]), minimum=0.0))
    queue = result.details.get("queue") or {}
    for state in ("queued", "running"):
        if isinstance(queue.get(state), int | float):
            found.append(Measurement("queue_jobs", float(queue[state]), {"state": state}, minimum=0.0))
    if isinstance(queue.get("oldest_queued_age_s"), int | float):
        found.append(Measurement("queue_oldest_queued_age", float(queue["oldest_queued_age_s"]), minimum=0.0))
    return found


def run_synthetic_job(base_url: str, timeout_s: float, token: str = "") -> str:
    """The deploy gate (the CLI injects it into `isletops.deploy`): the job must pass within `timeout_s`,
    sent with the probe account's `token`.

    Returns the job id; raises `ProbeError` with the probe's sentence otherwise (slow counts as a
    failure here: a fresh release must prove it works).
    """
    result = check(base_url.rstrip("/"), {**DEFAULTS, "deadline_s": float(timeout_s), "token": token})
    if result.status is not Status.OK:
        raise ProbeError(f"The end-to-end test job did not pass: {result.message}.")
    return str(result.details["job_id"])


def check(
    base: str,
    options: dict[str, Any],
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> ProbeResult:
    """Submit the synthetic job to the API at `base` and judge what happens (see module doc)."""
    timeout = float(options["timeout_s"])
    png, expected_count = synthetic_image(options)
    details: dict[str, Any] = {"unit": "s", "base_url": base, "expected_islets": expected_count}
    with requests.Session() as session:
        if options.get("token"):
            session.headers["Authorization"] = f"Bearer {options['token']}"
        samples = [sample for sample in [_queue(session, base, timeout, clock())] if sample]
        started = clock()
        try:
            response = session.post(
                f"{base}/api/jobs",
                files={"images": ("isletops-e2e-probe.png", png, "image/png")},
                data={
                    "pixel_size_um": str(options["pixel_size_um"]),
                    "priority": str(options["priority"]),
                    "synthetic": "1",  # a test job: kept out of users' lists and statistics
                },
                timeout=timeout,
            )
        except requests.RequestException as exc:
            return ProbeResult(
                NAME, Status.CRITICAL, None, f"cannot submit a test job to {base}: {reason(exc)}", details
            )
        if response.status_code == 401:
            return ProbeResult(
                NAME, Status.CRITICAL, None,
                f"test job refused: HTTP 401, the backend does not accept the probe token ({_error(response)}); "
                f"see the runbook, 'a 401 from the e2e probe'", details,
            )  # fmt: skip
        if response.status_code != 201:
            return ProbeResult(
                NAME,
                Status.CRITICAL,
                None,
                f"test job refused: HTTP {response.status_code} {_error(response)}",
                details,
            )
        job_id = response.json().get("id")
        details["job_id"] = job_id
        job: dict[str, Any] = {}
        states_seen: list[str] = []
        while True:
            try:
                reply = session.get(f"{base}/api/jobs/{job_id}", timeout=timeout)
                job = reply.json() if reply.status_code == 200 else job
            except (requests.RequestException, ValueError):
                pass
            state = job.get("state", "unknown")
            if not states_seen or states_seen[-1] != state:
                states_seen.append(state)
            if state in ("done", "failed"):
                break
            sample = _queue(session, base, timeout, clock())
            if sample:
                samples.append(sample)
            if clock() - started >= float(options["deadline_s"]):
                break
            sleep(float(options["poll_s"]))
        elapsed = round(clock() - started, 1)
        details.update(states=states_seen, queue=samples[-1] if samples else None)
        if job.get("state") == "failed":
            return ProbeResult(
                NAME, Status.CRITICAL, elapsed, f"test job failed: {str(job.get('error'))[:160]}", details
            )
        if job.get("state") == "done":
            return _check_result(session, base, job_id, expected_count, elapsed, options, details)
    return _judge_timeout(samples, states_seen, elapsed, details)


def _check_result(
    session: requests.Session, base: str, job_id: str, expected_count: int, elapsed: float, options: dict, details: dict
) -> ProbeResult:
    try:
        reply = session.get(f"{base}/api/jobs/{job_id}/result", timeout=float(options["timeout_s"]))
        result = reply.json()
        count = int(result["summary"]["islet_count"])
    except (requests.RequestException, ValueError, KeyError, TypeError) as exc:
        return ProbeResult(
            NAME, Status.CRITICAL, elapsed, f"test job done but its result is unreadable ({exc})", details
        )
    details["islets"] = count
    if abs(count - expected_count) > int(options["count_tolerance"]):
        return ProbeResult(
            NAME, Status.CRITICAL, elapsed, f"test job counted {count} islets, the image has {expected_count}", details
        )
    return ProbeResult(NAME, Status.OK, elapsed, f"test job measured {count} islets in {elapsed:.0f} s", details)


def _recent(samples: list[dict[str, Any]], window_s: float) -> list[dict[str, Any]]:
    """Samples of the last `window_s` seconds plus the one before them (progress is a difference)."""
    if not samples:
        return []
    cutoff = samples[-1]["_t"] - window_s
    inside = [index for index, sample in enumerate(samples) if sample["_t"] >= cutoff]
    return samples[max(0, inside[0] - 1) :]


def _judge_timeout(samples: list[dict[str, Any]], states: list[str], elapsed: float, details: dict) -> ProbeResult:
    last = samples[-1] if samples else {}
    queued, running = int(last.get("queued") or 0), int(last.get("running") or 0)
    oldest_min = float(last.get("oldest_queued_age_s") or 0) / 60
    # Progress only counts when recent: a shepherd that died half-way through the wait is dead.
    # Our job "running" counts only while some lease is alive (a dead worker's lease expires).
    ours_running = states[-1:] == ["running"] and int(last.get("running") or 0) > 0
    moving = queue_progressed(_recent(samples, max(60.0, elapsed / 2))) or ours_running
    load = f"{queued} jobs queued, {running} running, oldest waiting {oldest_min:.0f} min"
    if not samples:
        return ProbeResult(
            NAME, Status.CRITICAL, elapsed, f"no result after {elapsed:.0f} s and /api/queue does not answer", details
        )
    if moving:
        return ProbeResult(NAME, Status.WARNING, elapsed, f"slow: {load}; no result after {elapsed:.0f} s", details)
    why = "no worker is running jobs" if running == 0 else "the queue is not moving"
    return ProbeResult(
        NAME, Status.CRITICAL, elapsed, f"no result after {elapsed:.0f} s and {why} ({load}): shepherd dead?", details
    )
