"""The job storage layout: every key as docs/architecture.md lists it, the job id of a key, and
the order in which a job's files are deleted."""

from __future__ import annotations

import pytest

from services.common.layout import (
    JobKeys,
    deletion_order,
    is_input_key,
    is_job_id,
    is_output_key,
    job_id_of,
    new_job_id,
)

JOB = "0123456789abcdef0123456789abcdef"


def test_keys_of_a_job_are_the_documented_layout() -> None:
    keys = JobKeys(JOB)
    assert keys.prefix == f"jobs/{JOB}/"
    assert keys.request == f"jobs/{JOB}/request.json"
    assert keys.input(2, "scan.png") == f"jobs/{JOB}/inputs/2-scan.png"
    assert keys.result(0) == f"jobs/{JOB}/outputs/0/result.json"
    assert keys.overlay(1) == f"jobs/{JOB}/outputs/1/overlay.png"
    assert keys.preview(1) == f"jobs/{JOB}/outputs/1/preview.jpg"
    assert keys.csv(3) == f"jobs/{JOB}/outputs/3/islets.csv"
    assert keys.summary == f"jobs/{JOB}/outputs/summary.json"
    assert keys.relative(keys.result(0)) == "outputs/0/result.json"
    assert keys.is_input(keys.input(0, "a.png")) and not keys.is_input(keys.request)
    with pytest.raises(ValueError, match="not a file of job"):
        keys.relative("jobs/other/request.json")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (f"jobs/{JOB}/inputs/0-a.png", JOB),
        (f"jobs/{JOB}/request.json", JOB),
        (f"jobs/{JOB}", None),  # the folder itself is no file
        ("jobs/not-a-job-id/readme.txt", None),
        (f"jobs/{JOB.upper()}/request.json", None),
        ("pruner/last_run.json", None),
        (f"training/{JOB}/x", None),
    ],
)
def test_job_id_of_a_key(key: str, expected: str | None) -> None:
    assert job_id_of(key) == expected


def test_ids() -> None:
    assert is_job_id(new_job_id()) and new_job_id() != new_job_id()
    assert not is_job_id("") and not is_job_id(None) and not is_job_id("x" * 32)


def test_results_are_deleted_before_inputs_and_inputs_before_the_request() -> None:
    keys = JobKeys(JOB)
    given = [keys.request, keys.input(0, "a.png"), keys.summary, keys.result(0), "jobs/x/outputs/y"]
    assert deletion_order(given) == [keys.result(0), keys.summary, keys.input(0, "a.png"), keys.request,
                                     "jobs/x/outputs/y"]
    assert is_output_key(keys.summary) and not is_output_key(keys.request)
    assert is_input_key(keys.input(0, "a.png")) and not is_input_key("jobs/x/inputs/a")
