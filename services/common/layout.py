"""The one owner of a job's storage layout: how a job is named and where each of its files lives
in the bucket (docs/architecture.md, "S3 layout"). The backend, the shepherd, the reports and the
pruner build and read keys only through this module.

::

    jobs/<job_id>/request.json                 JobKeys(id).request
    jobs/<job_id>/inputs/<index>-<safe name>   JobKeys(id).input(index, name)
    jobs/<job_id>/outputs/<index>/result.json  JobKeys(id).result(index)
    jobs/<job_id>/outputs/<index>/overlay.png  JobKeys(id).overlay(index)
    jobs/<job_id>/outputs/<index>/preview.jpg  JobKeys(id).preview(index)
    jobs/<job_id>/outputs/<index>/islets.csv   JobKeys(id).csv(index)
    jobs/<job_id>/outputs/summary.json         JobKeys(id).summary
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

JOBS_ROOT = "jobs/"
JOB_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


def new_job_id() -> str:
    """A fresh job id: uuid4 as 32 lower-case hex digits."""
    return uuid.uuid4().hex


def is_job_id(value: str | None) -> bool:
    """True when `value` has the shape of a job id (32 lower-case hex digits)."""
    return bool(JOB_ID_PATTERN.match(value or ""))


def job_id_of(key: str) -> str | None:
    """The job id of a key shaped `jobs/<job id>/...`; None for any other key."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] + "/" == JOBS_ROOT and is_job_id(parts[1]) else None


@dataclass(frozen=True)
class JobKeys:
    """The keys of one job's files."""

    job_id: str

    @property
    def prefix(self) -> str:
        """Everything of the job lives under this prefix."""
        return f"{JOBS_ROOT}{self.job_id}/"

    @property
    def request(self) -> str:
        return f"{self.prefix}request.json"

    @property
    def inputs(self) -> str:
        return f"{self.prefix}inputs/"

    @property
    def outputs(self) -> str:
        return f"{self.prefix}outputs/"

    @property
    def summary(self) -> str:
        return f"{self.outputs}summary.json"

    def input(self, index: int, name: str) -> str:
        """An uploaded image: `name` is already the safe base name the backend chose."""
        return f"{self.inputs}{index}-{name}"

    def result(self, index: int) -> str:
        return f"{self.outputs}{index}/result.json"

    def overlay(self, index: int) -> str:
        return f"{self.outputs}{index}/overlay.png"

    def preview(self, index: int) -> str:
        """The overlay's small JPEG copy (services.common.previews) that reports embed."""
        return f"{self.outputs}{index}/preview.jpg"

    def csv(self, index: int) -> str:
        return f"{self.outputs}{index}/islets.csv"

    def relative(self, key: str) -> str:
        """The key's path inside the job folder (`outputs/0/result.json`)."""
        if not key.startswith(self.prefix):
            raise ValueError(f"Key {key!r} is not a file of job {self.job_id}.")
        return key[len(self.prefix):]

    def is_input(self, key: str) -> bool:
        return key.startswith(self.inputs)


def is_output_key(key: str) -> bool:
    """True for a result file of some job (`jobs/<id>/outputs/...`)."""
    job_id = job_id_of(key)
    return job_id is not None and key.startswith(JobKeys(job_id).outputs)


def is_input_key(key: str) -> bool:
    """True for an uploaded image of some job (`jobs/<id>/inputs/...`)."""
    job_id = job_id_of(key)
    return job_id is not None and key.startswith(JobKeys(job_id).inputs)


def deletion_order(keys: Iterable[str]) -> list[str]:
    """Keys in the order a job is deleted: results first, then inputs, then the rest (the
    request), so an interruption can leave an input without its result, never the reverse."""
    return sorted(keys, key=lambda key: (0 if is_output_key(key) else 1 if is_input_key(key) else 2, key))
