"""ObjectStore against a real SeaweedFS: round trips, listing, deletes and the errors callers rely on."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from services.common.storage import ObjectNotFound, ObjectStore, StorageError, StorageUnavailable
from tests.fixtures.servers import free_port

pytestmark = pytest.mark.integration


@pytest.fixture
def store(isolated_service_env: dict[str, str]) -> ObjectStore:
    store = ObjectStore.from_env(isolated_service_env)
    assert store.ensure_bucket() is True
    return store


def test_round_trip_list_and_delete(store: ObjectStore) -> None:
    store.put("jobs/a/inputs/0-x.png", b"\x89PNG data", "image/png")
    store.put("jobs/a/request.json", b"{}", "application/json")
    store.put("jobs/b/request.json", b"{}", "application/json")

    assert store.get("jobs/a/inputs/0-x.png") == b"\x89PNG data"
    assert store.exists("jobs/a/request.json")
    assert not store.exists("jobs/a/missing")
    assert store.list("jobs/a/") == ["jobs/a/inputs/0-x.png", "jobs/a/request.json"]

    assert store.delete_prefix("jobs/a/") == 2
    assert store.list("jobs/a/") == []
    assert store.list("jobs/") == ["jobs/b/request.json"], "deleting one prefix must leave the others"


def test_put_overwrites(store: ObjectStore) -> None:
    store.put("k", b"one")
    store.put("k", b"two")
    assert store.get("k") == b"two"


def test_list_pages_past_1000_keys(store: ObjectStore) -> None:
    keys = [f"many/{i:05d}" for i in range(1005)]
    with ThreadPoolExecutor(8) as pool:  # the store is shared between threads in the services too
        list(pool.map(lambda key: store.put(key, b""), keys))
    assert store.list("many/") == keys
    assert store.delete(keys) == 1005
    assert store.list("many/") == []


def test_list_objects_gives_sizes_and_times_across_pages(store: ObjectStore) -> None:
    before = datetime.now(UTC) - timedelta(minutes=5)  # the server's clock, give or take
    keys = [f"sized/{i:05d}" for i in range(1003)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: store.put(key, b"x" * (int(key[-5:]) % 7)), keys))
    store.put("sizedness", b"not under the prefix")

    objects = store.list_objects("sized/")

    assert [item.key for item in objects] == keys == store.list("sized/")
    assert [item.size for item in objects] == [i % 7 for i in range(1003)]
    assert all(item.last_modified is not None and item.last_modified > before for item in objects)
    assert store.list_objects("nothing/") == []


def test_ensure_bucket_is_idempotent(store: ObjectStore) -> None:
    assert store.ensure_bucket() is False
    store.ping()


def test_missing_key_is_object_not_found(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound, match="no such object"):
        store.get("nothing/here")


def test_empty_prefix_delete_is_refused(store: ObjectStore) -> None:
    store.put("keep", b"1")
    with pytest.raises(StorageError, match="non-empty prefix"):
        store.delete_prefix("")
    assert store.exists("keep")


def test_wrong_credentials_are_a_plain_error(isolated_service_env: dict[str, str]) -> None:
    store = ObjectStore.from_env({**isolated_service_env, "S3_SECRET_KEY": "wrong"})
    with pytest.raises(StorageError) as caught:
        store.put("x", b"1")
    assert not isinstance(caught.value, StorageUnavailable)
    assert str(caught.value).count(".") >= 1 and "\n" not in str(caught.value)


def test_unreachable_endpoint_fails_fast_with_storage_unavailable() -> None:
    store = ObjectStore(f"http://127.0.0.1:{free_port()}", "a", "b", "isletnet", connect_timeout_s=1, max_attempts=2)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="cannot be reached"):
        store.put("x", b"1")
    assert time.monotonic() - started < 10



def test_a_forked_process_gets_its_own_client_and_both_keep_working(store: ObjectStore) -> None:
    """gunicorn --preload makes the store in the master and forks the workers: a worker must not
    reuse the master's pooled connections (it makes a client of its own), and the master's client
    keeps working."""
    import multiprocessing
    import os

    store.put("fork/parent", b"before")
    parent_client = store._client
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)

    def child() -> None:  # runs in the forked process (fork: the closure is inherited, not pickled)
        data = store.get("fork/parent")
        store.put("fork/child", b"written by the child")
        send.send((store._client_pid == os.getpid(), store._client is not parent_client, data))

    process = context.Process(target=child)
    process.start()
    own_pid, own_client, data = receive.recv()
    process.join(30)
    assert process.exitcode == 0
    assert (own_pid, own_client, data) == (True, True, b"before")
    assert store._client is parent_client and store._client_pid == os.getpid(), "the parent keeps its own client"
    assert store.get("fork/child") == b"written by the child"
