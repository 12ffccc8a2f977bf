"""The e2e probe's judgement — slow because loaded vs broken — against a scripted stand-in of
the REST API on loopback. The real stack (saturated, shepherd stopped) is in
tests/integration/test_probe_e2e_stack.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from isletops.errors import ProbeError
from monitors.probes import e2e
from monitors.result import Status
from tests.fixtures.loopback_http import LoopbackFake, QuietHandler, serving

OPTIONS = {**e2e.DEFAULTS, "deadline_s": 1.5, "poll_s": 0.1, "timeout_s": 5.0}


class Api(LoopbackFake):
    """Scripted backend: what POST /api/jobs answers, how the job and the queue evolve per poll."""

    def __init__(self) -> None:
        self.post_code = 201
        self.job_states = ["queued"]  # one per GET of the job; the last repeats
        self.count = 3
        self.queue = lambda n: {"queued": 1, "running": 1, "oldest_queued_age_s": 5.0 + n,
                                "mean_service_time_s": 20.0, "done_last_hour": 0, "failed_last_hour": 0}  # fmt: skip
        self.posted: list[dict[str, Any]] = []
        self.job_gets = self.queue_gets = 0
        api = self

        class Handler(QuietHandler):
            def _json(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers["Content-Length"])
                body = self.rfile.read(length)
                api.posted.append({"bytes": len(body), "priority": b'name="priority"\r\n\r\n100' in body,
                                   "synthetic": b'name="synthetic"\r\n\r\n1' in body,
                                   "authorization": self.headers.get("Authorization")})
                if api.post_code == 201:
                    self._json(201, {"id": "a" * 32, "state": "queued"})
                else:
                    self._json(api.post_code, {"error": "The queue is not available; retry in a minute."})

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/api/queue":
                    api.queue_gets += 1
                    self._json(200, api.queue(api.queue_gets))
                elif self.path.endswith("/result"):
                    self._json(200, {"summary": {"islet_count": api.count}, "images": []})
                elif self.path.startswith("/api/jobs/"):
                    state = api.job_states[min(api.job_gets, len(api.job_states) - 1)]
                    api.job_gets += 1
                    self._json(200, {"id": "a" * 32, "state": state, "error": "decoder crashed" * (state == "failed")})
                else:
                    self._json(404, {"error": "no"})

        self.handler = Handler


@pytest.fixture
def api():
    with serving(Api()) as served:
        yield served


def test_job_done_with_the_right_count_is_ok(api: Api) -> None:
    api.job_states = ["queued", "running", "done"]
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.OK and result.message.startswith("test job measured 3 islets in ")
    assert api.posted[0]["priority"] is True and api.posted[0]["bytes"] > 10_000
    assert api.posted[0]["synthetic"] is True  # kept out of users' job lists and statistics


def test_wrong_count_or_failed_job_is_critical(api: Api) -> None:
    api.job_states, api.count = ["done"], 2
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.CRITICAL and result.message == "test job counted 2 islets, the image has 3"
    api.job_states, api.job_gets = ["failed"], 0
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.CRITICAL and result.message == "test job failed: decoder crashed"


def test_refused_submission_is_critical(api: Api) -> None:
    api.post_code = 503
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.CRITICAL
    assert result.message == "test job refused: HTTP 503 The queue is not available; retry in a minute."


def test_saturated_but_working_is_only_a_warning(api: Api) -> None:
    # 40 jobs ahead, two workers busy, jobs finishing all the time: slow, not broken.
    api.queue = lambda n: {
        "queued": 40 - n // 3, "running": 2, "oldest_queued_age_s": 600.0 + n,
        "mean_service_time_s": 30.0, "done_last_hour": 100 + n // 3, "failed_last_hour": 0,
    }  # fmt: skip
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.WARNING
    assert result.message.startswith("slow: ") and "jobs queued, 2 running, oldest waiting 10 min" in result.message


def test_nothing_moving_and_no_worker_is_critical(api: Api) -> None:
    api.queue = lambda n: {"queued": 5, "running": 0, "oldest_queued_age_s": 300.0 + n * 0.1,
                           "mean_service_time_s": 30.0, "done_last_hour": 12, "failed_last_hour": 0}  # fmt: skip
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.CRITICAL
    expected = "no worker is running jobs (5 jobs queued, 0 running, oldest waiting 5 min): shepherd dead?"
    assert expected in result.message


def test_running_but_stuck_is_critical(api: Api) -> None:
    api.queue = lambda n: {"queued": 5, "running": 1, "oldest_queued_age_s": 300.0 + n * 0.1,
                           "mean_service_time_s": 30.0, "done_last_hour": 12, "failed_last_hour": 0}  # fmt: skip
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.CRITICAL and "the queue is not moving" in result.message


def test_our_job_running_while_a_lease_is_alive_is_slow_not_broken(api: Api) -> None:
    api.job_states = ["queued", "running"]
    result = e2e.check(api.url, OPTIONS)
    assert result.status is Status.WARNING


def test_progress_long_ago_does_not_count(api: Api) -> None:
    def queue(n: int) -> dict:  # jobs finished early in the wait, then the worker hung (lease still alive)
        done = min(n, 3)
        return {"queued": 4, "running": 1, "oldest_queued_age_s": 100.0 + n,
                "mean_service_time_s": 3.0, "done_last_hour": done, "failed_last_hour": 0}  # fmt: skip

    api.queue = queue
    result = e2e.check(api.url, {**OPTIONS, "deadline_s": 130.0, "poll_s": 0.0}, clock=FakeClock(step=5.0))
    assert result.status is Status.CRITICAL and "the queue is not moving" in result.message


class FakeClock:
    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_deploy_gate_raises_with_the_probe_sentence(api: Api) -> None:
    api.job_states = ["done"]
    assert e2e.run_synthetic_job(api.url, 5) == "a" * 32
    assert api.posted[0]["synthetic"] is True  # the gate's job is a test job too
    api.count, api.job_gets = 1, 0
    with pytest.raises(ProbeError, match="The end-to-end test job did not pass: test job counted 1 islets"):
        e2e.run_synthetic_job(api.url, 5)


def test_queue_progress_signals() -> None:
    base = {"queued": 5, "running": 1, "oldest_queued_age_s": 100.0, "done_last_hour": 3, "failed_last_hour": 0}
    assert not e2e.queue_progressed([base, {**base, "oldest_queued_age_s": 110.0}])
    assert e2e.queue_progressed([base, {**base, "done_last_hour": 4}])
    assert e2e.queue_progressed([base, {**base, "queued": 4}])
    assert e2e.queue_progressed([base, {**base, "oldest_queued_age_s": 20.0}])
    assert not e2e.queue_progressed([base])


def test_duration_and_queue_are_measured_in_seconds_and_jobs(api: Api) -> None:
    api.queue = lambda n: {"queued": 40, "running": 2, "oldest_queued_age_s": 600.0, "done_last_hour": n}
    result = e2e.check(api.url, OPTIONS)
    measured = {(m.quantity, m.labels.get("state")): m.value for m in e2e.measurements(result, OPTIONS)}
    assert measured[("e2e_duration", None)] == result.value
    assert measured[("queue_jobs", "queued")] == 40 and measured[("queue_jobs", "running")] == 2
    assert measured[("queue_oldest_queued_age", None)] == 600.0


def test_the_probe_sends_the_token_and_a_401_points_at_the_runbook(api: Api) -> None:
    api.job_states = ["done"]
    assert e2e.run_synthetic_job(api.url, 5, token="isk_probe") == "a" * 32
    assert api.posted[-1]["authorization"] == "Bearer isk_probe"
    api.post_code = 401
    result = e2e.check(api.url, {**OPTIONS, "token": "isk_old"})
    assert result.status is Status.CRITICAL
    assert "HTTP 401, the backend does not accept the probe token" in result.message
    assert "the runbook" in result.message


def test_the_probe_reads_its_token_from_the_instance_env_file(tmp_path) -> None:
    from isletops.config import InstanceConfig

    instance = InstanceConfig(name="lab", directory=tmp_path)
    assert e2e.probe_token(instance) == ""
    (tmp_path / ".env").write_text("ISLETNET_PROBE_TOKEN=abc123\n")
    assert e2e.probe_token(instance) == "abc123"
