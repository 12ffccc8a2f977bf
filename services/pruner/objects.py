"""Object listings with sizes and ages, which the pruner needs to report what it frees.

`services.common.storage.ObjectStore.list` returns keys only; this adds sizes and modification
times through the same client and the same error translation (one module still owns S3 errors).
To merge: an `ObjectStore.list_objects(prefix)` method with this body (see the pruner runbook).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.storage import ObjectStore


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    last_modified: datetime | None


def list_objects(store: ObjectStore, prefix: str) -> list[StoredObject]:
    """Every object under `prefix` with its size, sorted by key. Raises the store's errors."""
    objects: list[StoredObject] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": store.bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        page = store._call(f"list {prefix or 'the bucket'}", store._client.list_objects_v2, **kwargs)  # noqa: SLF001
        objects.extend(
            StoredObject(item["Key"], int(item.get("Size") or 0), item.get("LastModified"))
            for item in page.get("Contents", [])
        )
        if not page.get("IsTruncated"):
            break
        token = page.get("NextContinuationToken")
    return sorted(objects, key=lambda item: item.key)
