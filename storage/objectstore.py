"""The object-store seam: evidence goes in write-once with its SHA-256, and comes out verified.

`S3ObjectStore` talks to any S3 endpoint through the `minio` SDK (MinIO in production, SeaweedFS embedded);
`storage.fakes.MemoryObjectStore` is the in-memory stand-in for unit tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from minio import Minio
from minio.commonconfig import COMPLIANCE, GOVERNANCE
from minio.error import S3Error
from minio.objectlockconfig import DAYS, ObjectLockConfig
from minio.retention import Retention
from minio.versioningconfig import ENABLED, VersioningConfig

from storage.settings import Settings

CHUNK = 1024 * 1024
SINGLE_PUT_LIMIT = 64 * 1024 * 1024  # above this, multipart with 64 MiB parts and a read-back check


class ObjectStoreError(Exception):
    """The object store refused or failed an operation."""


class IntegrityError(ObjectStoreError):
    """Stored bytes do not match the SHA-256 recorded for them."""


@dataclass(frozen=True)
class StoredObject:
    """Where an object version lives."""

    bucket: str
    key: str
    version_id: str
    size: int


@dataclass(frozen=True)
class ObjectVersion:
    """One listed object version (delete markers are never listed)."""

    bucket: str
    key: str
    version_id: str
    size: int
    etag: str
    last_modified: dt.datetime | None


class ObjectStore(Protocol):
    """What Locard needs of an object store."""

    evidence_bucket: str
    derived_bucket: str

    def ensure_buckets(self) -> None: ...

    def put_evidence(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject: ...

    def put_derived(self, key: str, data: bytes, *, content_type: str) -> StoredObject: ...

    def download(self, bucket: str, key: str, version_id: str, dest: Path, *, expected_sha256: str | None,
                 max_bytes: int | None = None) -> str: ...

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]: ...

    def presigned_put(self, key: str, expires: dt.timedelta) -> str: ...

    def presigned_get(self, bucket: str, key: str, version_id: str, expires: dt.timedelta) -> str: ...


def sha256_b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def copy_hashing(source: BinaryIO, dest: BinaryIO, *, max_bytes: int | None = None) -> tuple[str, int]:
    """Copy a stream chunk by chunk, returning its SHA-256 and size; refuse streams over `max_bytes`."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise ObjectStoreError(f"object is larger than the limit of {max_bytes} bytes")
        digest.update(chunk)
        dest.write(chunk)
    return digest.hexdigest(), size


class S3ObjectStore:
    """Evidence storage on an S3 endpoint with versioning, object lock and SHA-256 checksums."""

    def __init__(self, client: Minio, *, evidence_bucket: str, derived_bucket: str,
                 retention_mode: str = "COMPLIANCE", retention_days: int = 3650) -> None:
        self.client = client
        self.evidence_bucket = evidence_bucket
        self.derived_bucket = derived_bucket
        self.retention_mode = COMPLIANCE if retention_mode == "COMPLIANCE" else GOVERNANCE
        self.retention_days = retention_days

    @classmethod
    def from_settings(cls, settings: Settings) -> S3ObjectStore:
        client = Minio(settings.s3_endpoint, access_key=settings.s3_access_key,
                       secret_key=settings.s3_secret_key.get_secret_value(), secure=settings.s3_secure,
                       region=settings.s3_region)
        return cls(client, evidence_bucket=settings.evidence_bucket, derived_bucket=settings.derived_bucket,
                   retention_mode=settings.retention_mode, retention_days=settings.retention_days)

    def ensure_buckets(self) -> None:
        """Create the evidence bucket (versioned, object lock, default retention) and the derived bucket."""
        self.ensure_locked_bucket(self.evidence_bucket)
        try:
            if not self.client.bucket_exists(self.derived_bucket):
                self.client.make_bucket(self.derived_bucket)
                self.client.set_bucket_versioning(self.derived_bucket, VersioningConfig(ENABLED))
        except S3Error as exc:
            raise ObjectStoreError(f"cannot prepare buckets: {exc.code}: {exc.message}") from exc

    def _retention(self) -> Retention:
        until = dt.datetime.now(dt.UTC) + dt.timedelta(days=self.retention_days)
        return Retention(self.retention_mode, until)

    def put_evidence(self, key: str, path: Path, *, sha256: str, content_type: str) -> StoredObject:
        """Store a file write-once under retention; the server checks its SHA-256 (or it is read back)."""
        size = path.stat().st_size
        try:
            with path.open("rb") as handle:
                if size <= SINGLE_PUT_LIMIT:
                    result = self.client.put_object(
                        self.evidence_bucket, key, handle, size, content_type=content_type,
                        metadata={"x-amz-checksum-sha256": sha256_b64(sha256)},
                        part_size=SINGLE_PUT_LIMIT, retention=self._retention())
                else:
                    result = self.client.put_object(
                        self.evidence_bucket, key, handle, size, content_type=content_type,
                        part_size=SINGLE_PUT_LIMIT, retention=self._retention())
        except S3Error as exc:
            raise ObjectStoreError(f"evidence upload refused: {exc.code}: {exc.message}") from exc
        version = result.version_id or ""
        if size > SINGLE_PUT_LIMIT:
            self._verify_stored(self.evidence_bucket, key, version, sha256)
        return StoredObject(self.evidence_bucket, key, version, size)

    def _verify_stored(self, bucket: str, key: str, version_id: str, sha256: str) -> None:
        response = self.client.get_object(bucket, key, version_id=version_id or None)
        try:
            digest = hashlib.sha256()
            for chunk in response.stream(CHUNK):
                digest.update(chunk)
        finally:
            response.close()
            response.release_conn()
        if digest.hexdigest() != sha256:
            raise IntegrityError(f"{bucket}/{key} was stored with a different SHA-256 than was sent")

    def put_derived(self, key: str, data: bytes, *, content_type: str) -> StoredObject:
        digest = hashlib.sha256(data).hexdigest()
        try:
            result = self.client.put_object(self.derived_bucket, key, io.BytesIO(data), len(data),
                                            content_type=content_type,
                                            metadata={"x-amz-checksum-sha256": sha256_b64(digest)})
        except S3Error as exc:
            raise ObjectStoreError(f"artifact upload refused: {exc.code}: {exc.message}") from exc
        return StoredObject(self.derived_bucket, key, result.version_id or "", len(data))

    def download(self, bucket: str, key: str, version_id: str, dest: Path, *, expected_sha256: str | None,
                 max_bytes: int | None = None) -> str:
        """Stream an object version to `dest` and return its SHA-256; refuse it if that differs from the record."""
        try:
            response = self.client.get_object(bucket, key, version_id=version_id or None)
        except S3Error as exc:
            raise ObjectStoreError(f"cannot read {bucket}/{key}: {exc.code}: {exc.message}") from exc
        try:
            with dest.open("wb") as out:
                digest, _size = copy_hashing(response, out, max_bytes=max_bytes)  # type: ignore[arg-type]
        finally:
            response.close()
            response.release_conn()
        if expected_sha256 is not None and digest != expected_sha256:
            dest.unlink(missing_ok=True)
            raise IntegrityError(
                f"{bucket}/{key} (version {version_id or '-'}) has SHA-256 {digest}, "
                f"but {expected_sha256} was recorded at intake")
        return digest

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]:
        try:
            for obj in self.client.list_objects(bucket, prefix=prefix or None, recursive=True,
                                                include_version=True):
                if obj.is_delete_marker or obj.is_dir or obj.object_name is None:
                    continue
                yield ObjectVersion(bucket, obj.object_name, obj.version_id or "", obj.size or 0,
                                    (obj.etag or "").strip('"'), obj.last_modified)
        except S3Error as exc:
            raise ObjectStoreError(f"cannot list {bucket}: {exc.code}: {exc.message}") from exc

    # -- write-once records outside the evidence bucket (signed audit checkpoints) ------------------------
    def ensure_locked_bucket(self, bucket: str) -> None:
        """Create `bucket` (versioned, object lock) with the default retention: the evidence bucket, checkpoints."""
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket, object_lock=True)
            self.client.set_object_lock_config(bucket, ObjectLockConfig(self.retention_mode, self.retention_days,
                                                                        DAYS))
        except S3Error as exc:
            raise ObjectStoreError(f"cannot prepare bucket {bucket}: {exc.code}: {exc.message}") from exc

    def bucket_exists(self, bucket: str) -> bool:
        try:
            return bool(self.client.bucket_exists(bucket))
        except S3Error as exc:
            raise ObjectStoreError(f"cannot look up bucket {bucket}: {exc.code}: {exc.message}") from exc

    def put_locked(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject:
        """Store `data` write-once under retention in a locked bucket; the server checks its SHA-256."""
        digest = hashlib.sha256(data).hexdigest()
        try:
            result = self.client.put_object(bucket, key, io.BytesIO(data), len(data), content_type=content_type,
                                            metadata={"x-amz-checksum-sha256": sha256_b64(digest)},
                                            retention=self._retention())
        except S3Error as exc:
            raise ObjectStoreError(f"write to {bucket}/{key} refused: {exc.code}: {exc.message}") from exc
        return StoredObject(bucket, key, result.version_id or "", len(data))

    def read_bytes(self, bucket: str, key: str, version_id: str, *, max_bytes: int) -> bytes:
        """One small object version's bytes; refused when it is larger than `max_bytes`."""
        out = io.BytesIO()
        try:
            response = self.client.get_object(bucket, key, version_id=version_id or None)
        except S3Error as exc:
            raise ObjectStoreError(f"cannot read {bucket}/{key}: {exc.code}: {exc.message}") from exc
        try:
            copy_hashing(response, out, max_bytes=max_bytes)  # type: ignore[arg-type]
        finally:
            response.close()
            response.release_conn()
        return out.getvalue()

    def presigned_put(self, key: str, expires: dt.timedelta) -> str:
        return self.client.presigned_put_object(self.evidence_bucket, key, expires=expires)

    def presigned_get(self, bucket: str, key: str, version_id: str, expires: dt.timedelta) -> str:
        return self.client.presigned_get_object(bucket, key, expires=expires, version_id=version_id or None)
