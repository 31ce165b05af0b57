"""In-memory stand-ins for unit tests. Never used by a running Locard."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import itertools
from collections.abc import Iterator
from pathlib import Path

from storage.objectstore import IntegrityError, ObjectStoreError, ObjectVersion, StoredObject, copy_hashing


class MemoryObjectStore:
    """A versioned, write-once object store in memory, with the same contract as `S3ObjectStore`."""

    def __init__(self, evidence_bucket: str = "evidence", derived_bucket: str = "derived") -> None:
        self.evidence_bucket = evidence_bucket
        self.derived_bucket = derived_bucket
        self.objects: dict[tuple[str, str, str], bytes] = {}
        self._versions = itertools.count(1)

    def ensure_buckets(self) -> None:
        return None

    def _put(self, bucket: str, key: str, data: bytes) -> StoredObject:
        version = f"v{next(self._versions)}"
        self.objects[(bucket, key, version)] = data
        return StoredObject(bucket, key, version, len(data))

    def put_evidence(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise ObjectStoreError("evidence upload refused: BadDigest")
        return self._put(self.evidence_bucket, key, data)

    def put_derived(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        return self._put(self.derived_bucket, key, data)

    def put_raw(self, key: str, data: bytes) -> StoredObject:
        """Write straight into the evidence bucket, as any S3 client could."""
        return self._put(self.evidence_bucket, key, data)

    def download(self, bucket: str, key: str, version_id: str, dest: Path, *, expected_sha256: str | None,
                 max_bytes: int | None = None) -> str:
        try:
            data = self.objects[(bucket, key, version_id)]
        except KeyError:
            raise ObjectStoreError(f"cannot read {bucket}/{key}: NoSuchKey") from None
        with dest.open("wb") as out:
            digest, _ = copy_hashing(io.BytesIO(data), out, max_bytes=max_bytes)
        if expected_sha256 is not None and digest != expected_sha256:
            dest.unlink(missing_ok=True)
            raise IntegrityError(f"{bucket}/{key} has SHA-256 {digest}, but {expected_sha256} was recorded")
        return digest

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
        for (b, key, version), data in list(self.objects.items()):
            if b == bucket and key.startswith(prefix):
                yield ObjectVersion(b, key, version, len(data), hashlib.md5(data).hexdigest(), None)

    def presigned_put(self, key: str, expires: dt.timedelta) -> str:
        return f"memory://{self.evidence_bucket}/{key}?expires={int(expires.total_seconds())}"

    def presigned_get(self, bucket: str, key: str, version_id: str, expires: dt.timedelta) -> str:
        return f"memory://{bucket}/{key}?versionId={version_id}"
