"""How `make test` runs the suite on parallel workers: the order of the files and the work done
once per run (tests/fixtures/timing.py, tests/fixtures/once.py)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fixtures.once import once_per_run
from tests.fixtures.timing import costliest_first, recorded_seconds


class _Factory:
    """The part of pytest's TempPathFactory that once_per_run reads: each worker's base temp
    folder sits in the run's own root, as under pytest-xdist."""

    def __init__(self, run_root: Path, worker: str) -> None:
        self.run_root = run_root
        self.worker = worker

    def getbasetemp(self) -> Path:
        return self.run_root / f"popen-{self.worker}"


def _worker(run_root: str, worker: str, queue: multiprocessing.Queue) -> None:
    os.environ["PYTEST_XDIST_WORKER"] = worker
    calls = Path(run_root) / "calls"

    def build() -> dict[str, str]:
        with open(calls, "a") as made:
            made.write(f"{worker}\n")
        return {"backend": f"isletnet-backend:built-by-{worker}"}

    queue.put(once_per_run(_Factory(Path(run_root), worker), "images", build))  # type: ignore[arg-type]


def test_the_first_worker_builds_and_the_others_reuse_its_result(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_worker, args=(str(tmp_path), f"gw{n}", queue)) for n in range(3)]
    for process in workers:
        process.start()
    results = [queue.get(timeout=30) for _ in workers]
    for process in workers:
        process.join(timeout=30)
    assert len((tmp_path / "calls").read_text().split()) == 1
    assert len({str(result) for result in results}) == 1


def test_a_failed_build_is_not_recorded_and_the_next_worker_tries_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    factory = _Factory(tmp_path, "gw0")

    def broken() -> str:
        raise RuntimeError("docker build failed")

    with pytest.raises(RuntimeError, match="docker build failed"):
        once_per_run(factory, "images", broken)  # type: ignore[arg-type]
    assert once_per_run(factory, "images", lambda: "built") == "built"  # type: ignore[arg-type]
    assert once_per_run(factory, "images", broken) == "built"  # type: ignore[arg-type]


def test_without_xdist_the_work_is_simply_done(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    made: list[int] = []
    for _ in range(2):
        once_per_run(_Factory(tmp_path, "none"), "images", lambda: made.append(1))  # type: ignore[arg-type]
    assert made == [1, 1]
    assert not list(tmp_path.iterdir())


def test_files_run_costliest_first_and_each_file_keeps_its_order() -> None:
    items = [SimpleNamespace(nodeid=nodeid) for nodeid in (
        "tests/unit/test_a.py::one", "tests/integration/test_b.py::one", "tests/unit/test_a.py::two",
        "tests/integration/test_swarm.py::first", "tests/integration/test_swarm.py::second", "tests/unit/test_c.py::x",
    )]
    seconds = {"tests/integration/test_swarm.py": 600.0, "tests/integration/test_b.py": 100.0}
    ordered = [item.nodeid for item in costliest_first(items, seconds)]  # type: ignore[arg-type]
    assert ordered == [
        "tests/integration/test_swarm.py::first", "tests/integration/test_swarm.py::second",
        "tests/integration/test_b.py::one",
        "tests/unit/test_a.py::one", "tests/unit/test_a.py::two", "tests/unit/test_c.py::x",
    ]


def test_the_recorded_table_is_read_and_a_missing_one_orders_nothing(tmp_path: Path) -> None:
    table = tmp_path / "test-times.tsv"
    table.write_text("620.5\ttests/integration/test_swarm_deploy.py\n\n3.0\ttests/unit/test_lock.py\n")
    assert recorded_seconds(table) == {"tests/integration/test_swarm_deploy.py": 620.5, "tests/unit/test_lock.py": 3.0}
    assert recorded_seconds(tmp_path / "missing.tsv") == {}


def test_the_committed_table_names_only_files_that_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    missing = [path for path in recorded_seconds() if not (root / path).exists()]
    assert recorded_seconds() and not missing, f"refresh tests/test-times.tsv from build/test-times.tsv: {missing}"
