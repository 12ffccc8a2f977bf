"""The pixel budget: a worker admits images within its share, an oversized image only alone in
the worker and under the container-wide lock file (real flock between real processes)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from services.shepherd.budget import PixelBudget
from services.shepherd.config import ShepherdConfig
from services.shepherd.supervisor import pixel_share


def test_images_within_the_share_are_admitted_until_it_is_used_up(tmp_path: Path) -> None:
    budget = PixelBudget(10, str(tmp_path / "lock"))
    first, second = budget.try_admit(6), budget.try_admit(4)
    assert first is not None and second is not None and budget.used_pixels == 10
    assert budget.try_admit(1) is None, "the share is used up"
    budget.release(first)
    assert budget.try_admit(5) is not None and budget.used_pixels == 9


def test_an_oversized_image_runs_alone_in_the_worker(tmp_path: Path) -> None:
    budget = PixelBudget(10, str(tmp_path / "lock"))
    small = budget.try_admit(3)
    assert small is not None
    assert budget.try_admit(50) is None, "not while another image is in flight"
    budget.release(small)
    big = budget.try_admit(50)
    assert big is not None and big.lock_fd is not None
    assert budget.try_admit(1) is None, "nothing beside it"
    budget.release(big)
    assert big.lock_fd is None and budget.used_pixels == 0


def test_admit_waits_for_a_release_by_another_thread(tmp_path: Path) -> None:
    budget = PixelBudget(10, str(tmp_path / "lock"))
    held = budget.try_admit(8)
    assert held is not None
    threading.Timer(0.2, budget.release, [held]).start()
    started = time.monotonic()
    assert budget.admit(5, wait_s=5.0) is not None
    assert time.monotonic() - started < 4, "woken by the release, not by the timeout"
    assert budget.admit(6, wait_s=0.1) is None


HOLD_THE_LOCK = """
import sys, time
from services.shepherd.budget import PixelBudget
budget = PixelBudget(1, sys.argv[1])
assert budget.try_admit(100) is not None
print("holding", flush=True)
time.sleep(60)
"""


def test_one_oversized_image_at_a_time_in_the_container_and_a_killed_holder_frees_the_lock(tmp_path: Path) -> None:
    lock = str(tmp_path / "oversized.lock")
    other_worker = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, lock], stdout=subprocess.PIPE, text=True)
    try:
        assert other_worker.stdout is not None and other_worker.stdout.readline().strip() == "holding"
        budget = PixelBudget(10, lock)
        assert budget.try_admit(100) is None, "another worker of the container runs an oversized image"
        assert budget.try_admit(5) is not None, "images within the share are not held up by it"
    finally:
        other_worker.kill()
        other_worker.wait(10)
    budget = PixelBudget(10, lock)
    assert budget.try_admit(100) is not None, "the kernel dropped the dead worker's lock"


def test_the_budget_is_shared_out_between_the_workers() -> None:
    config = ShepherdConfig.from_env({"SHEPHERD_PIXEL_BUDGET": "90000000"})
    assert config.worker_pixel_limit == 90_000_000
    assert ShepherdConfig.from_env({"SHEPHERD_PIXEL_BUDGET": "90000000", "SHEPHERD_PIXEL_SHARE": "30000000"}
                                   ).worker_pixel_limit == 30_000_000
    assert pixel_share(ShepherdConfig(pixel_budget=100_000_000), workers=3) == 33_333_333
