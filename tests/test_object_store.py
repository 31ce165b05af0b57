"""The evidence bucket on a real SeaweedFS: write-once under retention, checksums and signatures enforced."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from minio import Minio
from minio.error import S3Error

from storage import objectstore
from storage.objectstore import IntegrityError, ObjectStoreError, S3ObjectStore
from storage.seaweed import SeaweedServer
from tests.media_samples import bus_jpg_path


def _put(store: S3ObjectStore, tmp_path: Path, key: str, data: bytes) -> objectstore.StoredObject:
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    return store.put_evidence(key, path, sha256=hashlib.sha256(data).hexdigest(), content_type="image/jpeg")


def test_evidence_bucket_has_versioning_and_object_lock(s3_store: S3ObjectStore) -> None:
    client = s3_store.client
    assert client.get_bucket_versioning(s3_store.evidence_bucket).status == "Enabled"
    lock = client.get_object_lock_config(s3_store.evidence_bucket)
    assert lock.mode == "COMPLIANCE" and lock.duration == 1 and lock.duration_unit.upper() == "DAYS"


def test_evidence_cannot_be_overwritten_or_deleted_under_retention(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    data = bus_jpg_path().read_bytes()
    stored = _put(s3_store, tmp_path, "cases/T/bus.jpg", data)
    client = s3_store.client
    retention = client.get_object_retention(s3_store.evidence_bucket, stored.key, version_id=stored.version_id)
    assert retention is not None and retention.mode == "COMPLIANCE"
    with pytest.raises(S3Error) as refused:
        client.remove_object(s3_store.evidence_bucket, stored.key, version_id=stored.version_id)
    assert refused.value.code == "AccessDenied"
    # A PUT to the same key makes a new version; the evidence version is untouched.
    client.put_object(s3_store.evidence_bucket, stored.key, io.BytesIO(b"tampered"), 8)
    client.remove_object(s3_store.evidence_bucket, stored.key)  # only adds a delete marker
    dest = tmp_path / "back.jpg"
    digest = s3_store.download(s3_store.evidence_bucket, stored.key, stored.version_id, dest,
                               expected_sha256=hashlib.sha256(data).hexdigest())
    assert digest == hashlib.sha256(data).hexdigest() and dest.read_bytes() == data
    with pytest.raises(S3Error) as bucket_refused:
        client.remove_bucket(s3_store.evidence_bucket)
    assert bucket_refused.value.code == "BucketNotEmpty"


def test_wrong_checksum_is_refused_by_the_server(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    path.write_bytes(b"evidence bytes")
    with pytest.raises(ObjectStoreError, match="BadDigest"):
        s3_store.put_evidence("cases/T/x.bin", path, sha256=hashlib.sha256(b"other bytes").hexdigest(),
                              content_type="application/octet-stream")


def test_bad_signature_is_refused(seaweed: SeaweedServer, s3_store: S3ObjectStore) -> None:
    forged = Minio(seaweed.config.s3_endpoint, access_key=seaweed.config.access_key, secret_key="not-the-secret",
                   secure=False)
    with pytest.raises(S3Error) as refused:
        forged.list_objects(s3_store.evidence_bucket).__next__()
    assert refused.value.code == "SignatureDoesNotMatch"


def test_download_refuses_bytes_that_do_not_match_the_record(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    stored = _put(s3_store, tmp_path, "cases/T/y.bin", b"original evidence")
    dest = tmp_path / "y.bin"
    with pytest.raises(IntegrityError, match="recorded at intake"):
        s3_store.download(s3_store.evidence_bucket, stored.key, stored.version_id, dest,
                          expected_sha256=hashlib.sha256(b"what the record says").hexdigest())
    assert not dest.exists()


def test_large_evidence_goes_multipart_and_is_read_back(s3_store: S3ObjectStore, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objectstore, "SINGLE_PUT_LIMIT", 5 * 1024 * 1024)
    data = bytes(range(256)) * (13 * 4096)  # 13 MiB: three parts
    stored = _put(s3_store, tmp_path, "cases/T/large.bin", data)
    assert stored.size == len(data)
    versions = list(s3_store.list_versions(s3_store.evidence_bucket, prefix="cases/T/large.bin"))
    assert [v.version_id for v in versions] == [stored.version_id]


def test_derived_artifacts_go_to_their_own_bucket(s3_store: S3ObjectStore, tmp_path: Path) -> None:
    stored = s3_store.put_derived("evidence/e1/probe/thumbnail.jpg", b"\xff\xd8\xff thumbnail",
                                  content_type="image/jpeg")
    assert stored.bucket == s3_store.derived_bucket
    dest = tmp_path / "t.jpg"
    s3_store.download(stored.bucket, stored.key, stored.version_id, dest, expected_sha256=None)
    assert dest.read_bytes() == b"\xff\xd8\xff thumbnail"


def test_seaweed_keeps_its_ports_and_identity(tmp_path: Path) -> None:
    first = SeaweedServer(tmp_path / "a")
    again = SeaweedServer(tmp_path / "a")
    other = SeaweedServer(tmp_path / "b")
    assert first.config == again.config
    assert first.config.access_key != other.config.access_key
    assert "-s3.allowDeleteBucketNotEmpty=false" in first.command()
    assert all(arg != "-ip.bind=0.0.0.0" for arg in first.command())
