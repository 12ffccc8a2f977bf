"""DynamicBatcher: grouping, size and wait limits, failure isolation, shutdown, threads."""

import threading
import time
from concurrent.futures import CancelledError

import pytest

from services.islets import BatcherClosedError, DynamicBatcher


class Recorder:
    """predict() that doubles numbers, fails on "bad", and remembers its batches."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[list] = []
        self.delay = delay
        self.threads: set[str] = set()

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay)
        if "bad" in items:
            raise ValueError("bad input in batch")
        return [item * 2 for item in items]


def test_items_submitted_together_are_batched_up_to_the_limit():
    predict = Recorder(delay=0.05)
    with DynamicBatcher(predict, max_batch_size=8, max_wait_s=0.2) as batcher:
        futures = [batcher.submit(number) for number in range(20)]
        assert [future.result(timeout=10) for future in futures] == [2 * n for n in range(20)]
    sizes = [len(batch) for batch in predict.batches]
    assert sum(sizes) == 20
    assert max(sizes) <= 8
    assert len(sizes) <= 4  # grouped: 8 + 8 + 4 (a little slack for scheduling)
    # order inside the stream is kept
    assert [item for batch in predict.batches for item in batch] == list(range(20))


def test_a_lone_item_waits_at_most_max_wait():
    predict = Recorder()
    with DynamicBatcher(predict, max_batch_size=8, max_wait_s=0.05) as batcher:
        started = time.monotonic()
        assert batcher.submit(21).result(timeout=5) == 42
        elapsed = time.monotonic() - started
    assert elapsed < 0.5  # 50 ms wait + scheduling; a missing deadline would hang until close()
    assert predict.batches == [[21]]


def test_max_wait_zero_runs_what_is_there():
    predict = Recorder()
    with DynamicBatcher(predict, max_batch_size=4, max_wait_s=0.0) as batcher:
        assert batcher.submit(1).result(timeout=5) == 2


def test_a_failing_batch_fails_only_its_own_futures():
    predict = Recorder()
    with DynamicBatcher(predict, max_batch_size=4, max_wait_s=0.01) as batcher:
        bad = batcher.submit("bad")
        with pytest.raises(ValueError, match="bad input in batch"):
            bad.result(timeout=5)
        # the worker survived and serves the next batch
        assert batcher.submit(5).result(timeout=5) == 10
        assert batcher.batch_sizes[-1] == 1


def test_wrong_number_of_results_is_an_error_for_that_batch():
    with DynamicBatcher(lambda items: items[:-1], max_batch_size=2, max_wait_s=0.01) as batcher:
        future = batcher.submit(1)
        with pytest.raises(RuntimeError, match="returned 0 results for a batch of 1"):
            future.result(timeout=5)


def test_close_runs_what_was_submitted_then_refuses_more():
    predict = Recorder(delay=0.02)
    batcher = DynamicBatcher(predict, max_batch_size=2, max_wait_s=0.01)
    futures = [batcher.submit(n) for n in range(7)]
    batcher.close(timeout=10)
    assert [future.result(timeout=0) for future in futures] == [0, 2, 4, 6, 8, 10, 12]
    with pytest.raises(BatcherClosedError):
        batcher.submit(1)
    batcher.close()  # twice is fine


def test_cancelled_items_are_left_out():
    gate = threading.Event()

    def predict(items):
        gate.wait(5)
        return items

    with DynamicBatcher(predict, max_batch_size=1, max_wait_s=0.0) as batcher:
        first = batcher.submit("first")  # occupies the worker
        second = batcher.submit("second")
        assert second.cancel()
        gate.set()
        assert first.result(timeout=5) == "first"
        with pytest.raises(CancelledError):
            second.result(timeout=5)
    assert batcher.batch_sizes == [1]


def test_many_threads_submitting_at_once():
    predict = Recorder()
    results: dict[int, int] = {}
    lock = threading.Lock()
    with DynamicBatcher(predict, max_batch_size=8, max_wait_s=0.005) as batcher:

        def client(offset: int) -> None:
            futures = {offset + n: batcher.submit(offset + n) for n in range(50)}
            for key, future in futures.items():
                value = future.result(timeout=10)
                with lock:
                    results[key] = value

        threads = [threading.Thread(target=client, args=(1000 * t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
    assert len(results) == 400
    assert all(value == 2 * key for key, value in results.items())
    assert max(len(batch) for batch in predict.batches) <= 8
    assert len(predict.threads) == 1  # one worker thread runs every batch


@pytest.mark.parametrize(("size", "wait"), [(0, 0.01), (4, -1.0)])
def test_bad_settings_are_refused(size, wait):
    with pytest.raises(ValueError):
        DynamicBatcher(lambda items: items, max_batch_size=size, max_wait_s=wait)
