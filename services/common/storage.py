"""The one S3 module of the IsletNet services: every object read, write and delete goes through
`ObjectStore`.

Any S3 endpoint works by configuration (SeaweedFS by default, MinIO, AWS): path-style addressing,
signature v4, checksums only where S3 requires them (older S3 servers reject the new default
CRC headers). Timeouts are short and retries bounded, so a dead storage fails a request within a
few seconds with `StorageUnavailable` instead of hanging a worker.

Environment (`ObjectStore.from_env`): `S3_ENDPOINT_URL`, `S3_ACCESS_KEY`, `S3_SECRET_KEY`,
`S3_BUCKET` (default `isletnet`), optional `S3_REGION` (default `us-east-1`); the keys may come
from files instead (`S3_ACCESS_KEY_FILE`, `S3_SECRET_KEY_FILE`: Swarm secrets).

Usage::

    store = ObjectStore.from_env()
    store.ensure_bucket()
    store.put("jobs/abc/request.json", b"{}", "application/json")
    data = store.get("jobs/abc/request.json")      # ObjectNotFound if missing
    keys = store.list("jobs/abc/")                 # full keys, sorted
    sizes = store.list_objects("jobs/abc/")        # ObjectInfo(key, size, last_modified), sorted
    store.delete_prefix("jobs/abc/")
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from services.common.errors import ServiceError, Unavailable
from services.common.settings import read_secret

log = logging.getLogger(__name__)

DEFAULT_BUCKET = "isletnet"
DEFAULT_REGION = "us-east-1"
# S3 DeleteObjects accepts at most 1000 keys per call.
_DELETE_BATCH = 1000
_NOT_FOUND_CODES = {"404", "NoSuchKey", "NotFound"}
_NO_BUCKET_CODES = {"NoSuchBucket"}


class StorageError(ServiceError):
    """S3 answered, but refused the request (bad credentials, missing bucket, ...)."""


class StorageUnavailable(StorageError, Unavailable):
    """The S3 endpoint cannot be reached or timed out."""


class ObjectNotFound(StorageError):
    """The requested key does not exist in the bucket."""


@dataclass(frozen=True)
class ObjectInfo:
    """One stored object as a listing describes it."""

    key: str
    size: int
    last_modified: datetime | None


class ObjectStore:
    """A bucket on an S3 endpoint. Thread-safe (boto3 clients are) and fork-safe (one client per process)."""

    def __init__(
        self,
        endpoint_url: str | None,
        access_key: str | None,
        secret_key: str | None,
        bucket: str = DEFAULT_BUCKET,
        *,
        region: str = DEFAULT_REGION,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 20.0,
        max_attempts: int = 3,
    ) -> None:
        self.endpoint_url = endpoint_url
        self.bucket = bucket
        config = Config(
            connect_timeout=connect_timeout_s,
            read_timeout=read_timeout_s,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=32,
        )
        self._client_arguments: dict[str, Any] = {
            "endpoint_url": endpoint_url or None,
            "aws_access_key_id": access_key or None,
            "aws_secret_access_key": secret_key or None,
            "region_name": region,
            "config": config,
        }
        self._client_lock = threading.Lock()
        self._client_pid = -1
        self._client_object: Any = None

    @property
    def _client(self) -> Any:
        """The boto3 client of this process. A process forked after the store was made (gunicorn
        `--preload` loads the app once, then forks its workers) gets its own client, because a
        client's pooled connections must never be shared across processes."""
        with self._client_lock:
            if self._client_pid != os.getpid():
                self._client_object = boto3.session.Session().client("s3", **self._client_arguments)
                self._client_pid = os.getpid()
            return self._client_object

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **kwargs: Any) -> ObjectStore:
        """Build the store from `S3_*` variables (see the module docstring)."""
        env = os.environ if env is None else env
        return cls(
            env.get("S3_ENDPOINT_URL"),
            read_secret(env, "S3_ACCESS_KEY"),
            read_secret(env, "S3_SECRET_KEY"),
            env.get("S3_BUCKET") or DEFAULT_BUCKET,
            region=env.get("S3_REGION") or DEFAULT_REGION,
            **kwargs,
        )

    # -- bucket -----------------------------------------------------------------------------

    def ping(self) -> None:
        """Return when the bucket answers; raise `StorageUnavailable`/`StorageError` otherwise."""
        self._call("check the bucket", self._client.head_bucket, Bucket=self.bucket)

    def ensure_bucket(self) -> bool:
        """Create the bucket if it is missing. Returns True when it was created (idempotent)."""
        try:
            self.ping()
            return False
        except ObjectNotFound:
            pass
        try:
            self._call("create the bucket", self._client.create_bucket, Bucket=self.bucket)
        except StorageError as error:
            # Another process created it between our check and our create.
            if "BucketAlreadyOwnedByYou" in repr(error.__cause__) or "BucketAlreadyExists" in repr(error.__cause__):
                return False
            raise
        log.info("created bucket %s on %s", self.bucket, self.endpoint_url)
        return True

    # -- objects ----------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        """Store `data` under `key`, overwriting what was there."""
        self._call(
            f"store {key}", self._client.put_object, Bucket=self.bucket, Key=key, Body=data, ContentType=content_type
        )

    def get(self, key: str) -> bytes:
        """Return the bytes under `key`; `ObjectNotFound` when there are none."""
        response = self._call(f"read {key}", self._client.get_object, Bucket=self.bucket, Key=key)
        try:
            return response["Body"].read()
        except BotoCoreError as error:
            raise StorageUnavailable(f"Reading {key} from storage was interrupted; try again.") from error

    def exists(self, key: str) -> bool:
        """True when `key` exists."""
        try:
            self._call(f"check {key}", self._client.head_object, Bucket=self.bucket, Key=key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        """Every key starting with `prefix`, sorted."""
        return [item.key for item in self.list_objects(prefix)]

    def list_objects(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object starting with `prefix` with its size and modification time, sorted by key."""
        objects: list[ObjectInfo] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(f"list {prefix or 'the bucket'}", self._client.list_objects_v2, **kwargs)
            objects.extend(
                ObjectInfo(item["Key"], int(item.get("Size") or 0), item.get("LastModified"))
                for item in page.get("Contents", [])
            )
            if not page.get("IsTruncated"):
                break
            token = page.get("NextContinuationToken")
        return sorted(objects, key=lambda item: item.key)

    def delete(self, keys: Iterable[str]) -> int:
        """Delete `keys` (missing ones are fine). Returns how many were asked for."""
        pending = list(keys)
        for start in range(0, len(pending), _DELETE_BATCH):
            batch = pending[start : start + _DELETE_BATCH]
            response = self._call(
                f"delete {len(batch)} objects",
                self._client.delete_objects,
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
            )
            errors = response.get("Errors") or []
            if errors:
                first = errors[0]
                raise StorageError(
                    f"Storage refused to delete {len(errors)} objects (first: {first.get('Key')}: "
                    f"{first.get('Message') or first.get('Code')}); check the storage permissions."
                )
        return len(pending)

    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under `prefix`; returns how many. An empty prefix is refused."""
        if not prefix:
            raise StorageError("Refusing to delete the whole bucket; give a non-empty prefix.")
        return self.delete(self.list(prefix))

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, action: str, method: Any, **kwargs: Any) -> Any:
        """Call one S3 method and translate its failures into our one-sentence errors."""
        try:
            return method(**kwargs)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _NO_BUCKET_CODES:
                raise ObjectNotFound(
                    f"Storage bucket {self.bucket} does not exist; create it (the services do on start)."
                ) from error
            if code in _NOT_FOUND_CODES or status == 404:
                raise ObjectNotFound(f"Could not {action}: no such object in bucket {self.bucket}.") from error
            if isinstance(status, int) and status >= 500:
                raise StorageUnavailable(
                    f"Storage at {self.endpoint_url} failed to {action} (HTTP {status}); try again later."
                ) from error
            message = error.response.get("Error", {}).get("Message") or code or "refused"
            raise StorageError(f"Storage refused to {action}: {message.rstrip('.')}.") from error
        except BotoCoreError as error:
            # Connection refused, DNS, timeouts, closed connections: all "cannot reach it".
            raise StorageUnavailable(
                f"Storage at {self.endpoint_url or 'the default S3 endpoint'} cannot be reached "
                f"({type(error).__name__}); try again later."
            ) from error
