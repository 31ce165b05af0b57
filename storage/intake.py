"""Intake: every way evidence arrives ends here, idempotent on bucket/key/version and on SHA-256.

API uploads claim their object key, store the object and record it (`ingest_upload`); objects written straight
into the evidence bucket arrive as S3 event records (MinIO webhook, or the reconciliation sweep) and become
durable intake jobs that a worker completes with `process_intake`. Both record the S3 event in MinIO's
notification format (`storage.s3events`), open the chain of custody, and enqueue analysis planning for the new
evidence item. A key claimed by an upload in progress is left to it; a presigned upload grant takes in one
object version only.
"""

from __future__ import annotations

import datetime as dt
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs
from storage.db import transaction
from storage.media import SNIFF_BYTES, sniff_media_type
from storage.objectstore import ObjectStore, StoredObject
from storage.s3events import object_created_record, parse_object_created
from storage.tables import Case, CustodyEvent, Evidence, EvidenceObject, IntakeClaim, Job, utcnow

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# What a submitter may declare an item to be. A fingerprint goes to the fingerprint analyzer whatever it looks
# like; through the bucket, a key with a `fingerprints/` folder in it declares one.
EVIDENCE_KINDS = ("fingerprint", "document", "photo")
FINGERPRINT_FOLDER = "fingerprints"


@dataclass(frozen=True)
class IntakeResult:
    """The evidence item an intake ended in, and whether this intake created it."""

    evidence: Evidence
    created: bool


@dataclass(frozen=True)
class IntakeRefusal:
    """An object version intake refused to take in (it stays in the bucket), with the reason."""

    reason: str


def safe_filename(name: str | None) -> str:
    """A file name that is safe as the last part of an object key."""
    base = (name or "evidence").replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _SAFE_NAME.sub("_", base).strip("._") or "evidence"
    return cleaned[:200]


def kind_from_key(key: str) -> str | None:
    """The evidence kind an object key declares (a `fingerprints/` folder anywhere in it), if any."""
    return "fingerprint" if FINGERPRINT_FOLDER in key.split("/")[:-1] else None


def _custody(session: Session, evidence_id: str, actor: str, action: str, **detail: Any) -> None:
    session.add(CustodyEvent(evidence_id=evidence_id, actor=actor, action=action, detail=detail))


def _enqueue_plan(session: Session, evidence: Evidence, max_attempts: int) -> None:
    jobs.enqueue(session, kind="plan", dedupe_key=f"plan:{evidence.id}", evidence_id=evidence.id,
                 max_attempts=max_attempts)


def find_duplicate(session: Session, *, case_id: str, sha256: str) -> Evidence | None:
    return session.scalar(select(Evidence).where(Evidence.case_id == case_id, Evidence.sha256 == sha256))


def record_duplicate(session: Session, evidence: Evidence, *, actor: str, filename: str | None,
                     source: str, location: dict[str, Any] | None = None) -> None:
    """Note in the chain of custody that the same content was received again."""
    _custody(session, evidence.id, actor, "duplicate_received", source=source, filename=filename,
             **({"object": location} if location else {}))


def ingest_upload(factory: sessionmaker[Session], store: ObjectStore, *, case: Case, path: Path, sha256: str,
                  size: int, filename: str | None, declared_media_type: str | None, actor: str,
                  max_attempts: int = 3, declared_kind: str | None = None, declared_ppi: float | None = None,
                  claim_seconds: float = 3600.0,
                  record_with: Callable[[Session], None] | None = None) -> IntakeResult:
    """Store an uploaded file as evidence of `case`, in three short transactions around the object store.

    The object key is claimed (committed) before the object is stored, so the sweep and the webhook leave the
    object to this upload; the evidence rows are then written in one transaction. No transaction is held while
    the object is stored. `record_with` is called in the transaction that records the outcome (the API writes
    the request's audit entry there).
    """
    media_type = _sniff(path)
    with transaction(factory) as session:
        existing = find_duplicate(session, case_id=case.id, sha256=sha256)
        if existing is not None:
            record_duplicate(session, existing, actor=actor, filename=filename, source="api")
            if record_with is not None:
                record_with(session)
            return IntakeResult(existing, False)
        evidence_id = str(uuid.uuid4())
        key = f"cases/{case.reference}/{evidence_id}/{safe_filename(filename)}"
        session.add(IntakeClaim(bucket=store.evidence_bucket, object_key=key, kind="upload", case_id=case.id,
                                actor=actor, state="pending",
                                expires_at=utcnow() + dt.timedelta(seconds=claim_seconds)))
    try:
        stored = store.put_evidence(key, path, sha256=sha256, content_type=media_type)
    except Exception:
        with transaction(factory) as session:  # the sweep takes in whatever the store may have kept
            session.execute(update(IntakeClaim).where(IntakeClaim.bucket == store.evidence_bucket,
                                                      IntakeClaim.object_key == key).values(state="failed"))
        raise
    with transaction(factory) as session:
        result = _record_upload(session, case=case, evidence_id=evidence_id, stored=stored, sha256=sha256,
                                size=size, media_type=media_type, declared_media_type=declared_media_type,
                                filename=filename, actor=actor, max_attempts=max_attempts,
                                declared_kind=declared_kind, declared_ppi=declared_ppi)
        if record_with is not None:
            record_with(session)
    return result


def ingest_file(session: Session, store: ObjectStore, *, case: Case, path: Path, sha256: str, size: int,
                filename: str | None, declared_media_type: str | None, actor: str,
                max_attempts: int = 3, declared_kind: str | None = None,
                declared_ppi: float | None = None) -> IntakeResult:
    """Store a file as evidence of `case` within the caller's transaction (tools and tests).

    The object is stored before the caller commits, so a sweep running meanwhile could see it first: the API
    uses `ingest_upload`, which claims the key beforehand.
    """
    existing = find_duplicate(session, case_id=case.id, sha256=sha256)
    if existing is not None:
        record_duplicate(session, existing, actor=actor, filename=filename, source="api")
        return IntakeResult(existing, False)
    media_type = _sniff(path)
    evidence_id = str(uuid.uuid4())
    key = f"cases/{case.reference}/{evidence_id}/{safe_filename(filename)}"
    stored = store.put_evidence(key, path, sha256=sha256, content_type=media_type)
    return _record_upload(session, case=case, evidence_id=evidence_id, stored=stored, sha256=sha256, size=size,
                          media_type=media_type, declared_media_type=declared_media_type, filename=filename,
                          actor=actor, max_attempts=max_attempts, declared_kind=declared_kind,
                          declared_ppi=declared_ppi)


def _sniff(path: Path) -> str:
    with path.open("rb") as handle:
        return sniff_media_type(handle.read(SNIFF_BYTES))


def _record_upload(session: Session, *, case: Case, evidence_id: str, stored: StoredObject, sha256: str, size: int,
                   media_type: str, declared_media_type: str | None, filename: str | None, actor: str,
                   max_attempts: int, declared_kind: str | None, declared_ppi: float | None) -> IntakeResult:
    """The evidence rows of a stored upload: a new item, or a duplicate of the item that holds its content."""
    location = {"bucket": stored.bucket, "key": stored.key, "version_id": stored.version_id}
    taken = _taken(session, stored.bucket, stored.key, stored.version_id)
    if taken is not None:  # the upload's claim ran out and the object was taken in from the bucket
        return IntakeResult(taken, False)
    existing = find_duplicate(session, case_id=case.id, sha256=sha256)
    if existing is None:
        evidence = Evidence(id=evidence_id, case_id=case.id, sha256=sha256, size=size, media_type=media_type,
                            declared_media_type=declared_media_type, original_filename=filename,
                            bucket=stored.bucket, object_key=stored.key, version_id=stored.version_id,
                            source="api", received_by=actor, declared_kind=declared_kind, declared_ppi=declared_ppi)
        try:
            with session.begin_nested():
                session.add(evidence)
                session.add(EvidenceObject(bucket=stored.bucket, object_key=stored.key,
                                           version_id=stored.version_id, evidence_id=evidence_id,
                                           outcome="original"))
                session.flush()
        except IntegrityError:  # the same content, or this very object, was recorded at the same moment
            taken = _taken(session, stored.bucket, stored.key, stored.version_id)
            if taken is not None:
                return IntakeResult(taken, False)
            existing = find_duplicate(session, case_id=case.id, sha256=sha256)
            if existing is None:
                raise
    if existing is not None:
        session.add(EvidenceObject(bucket=stored.bucket, object_key=stored.key, version_id=stored.version_id,
                                   evidence_id=existing.id, outcome="duplicate"))
        record_duplicate(session, existing, actor=actor, filename=filename, source="api", location=location)
        _finish_claim(session, stored=stored, evidence_id=existing.id)
        return IntakeResult(existing, False)
    record = object_created_record(bucket=stored.bucket, key=stored.key, version_id=stored.version_id,
                                   size=size, principal=actor, content_type=media_type)
    _custody(session, evidence_id, actor, "received", source="api", filename=filename, size=size,
             sha256=sha256, media_type=media_type, declared_media_type=declared_media_type, s3_event=record,
             **({"declared_kind": declared_kind} if declared_kind else {}),
             **({"declared_ppi": declared_ppi} if declared_ppi else {}))
    _custody(session, evidence_id, actor, "stored", bucket=stored.bucket, key=stored.key,
             version_id=stored.version_id, checksum="sha256 verified by the object store on write")
    session.flush()
    _enqueue_plan(session, evidence, max_attempts)
    _finish_claim(session, stored=stored, evidence_id=evidence_id)
    return IntakeResult(evidence, True)


def _taken(session: Session, bucket: str, key: str, version_id: str) -> Evidence | None:
    """The evidence item an object version was already recorded as, if any."""
    known = session.scalar(select(EvidenceObject).where(
        EvidenceObject.bucket == bucket, EvidenceObject.object_key == key, EvidenceObject.version_id == version_id))
    return session.get(Evidence, known.evidence_id) if known is not None and known.evidence_id else None


def _finish_claim(session: Session, *, stored: StoredObject, evidence_id: str) -> None:
    session.execute(update(IntakeClaim).where(IntakeClaim.bucket == stored.bucket,
                                              IntakeClaim.object_key == stored.key)
                    .values(state="done", version_id=stored.version_id, evidence_id=evidence_id))


def grant_presigned_upload(session: Session, *, bucket: str, key: str, case: Case, actor: str,
                           expires_at: dt.datetime) -> IntakeClaim:
    """Record a presigned upload grant: the first object version written under `key` is evidence, no other."""
    claim = IntakeClaim(bucket=bucket, object_key=key, kind="presigned", case_id=case.id, actor=actor,
                        state="pending", expires_at=expires_at)
    session.add(claim)
    session.flush()
    return claim


def _upload_in_progress(session: Session, bucket: str, key: str) -> bool:
    """Whether an API upload has claimed `key` and may still record it."""
    return session.scalar(select(IntakeClaim.id).where(
        IntakeClaim.bucket == bucket, IntakeClaim.object_key == key, IntakeClaim.kind == "upload",
        IntakeClaim.state == "pending", IntakeClaim.expires_at > utcnow())) is not None


def record_object_event(session: Session, *, evidence_bucket: str, record: dict[str, Any],
                        max_attempts: int = 3) -> Job | None:
    """Turn an `s3:ObjectCreated:*` record into a durable intake job, once per object version."""
    parsed = parse_object_created(record)
    if parsed is None:
        return None
    bucket, key, version_id, _size = parsed
    if bucket != evidence_bucket:
        return None
    known = session.scalar(select(EvidenceObject.id).where(
        EvidenceObject.bucket == bucket, EvidenceObject.object_key == key, EvidenceObject.version_id == version_id))
    if known is not None or _upload_in_progress(session, bucket, key):
        return None  # recorded already, or its uploader records it
    job, _new = jobs.enqueue(session, kind="intake", dedupe_key=f"intake:{bucket}/{key}@{version_id}",
                             payload={"record": record}, max_attempts=max_attempts)
    return job


def case_for_key(session: Session, key: str, *, inbox_reference: str, actor: str) -> Case:
    """The case an object key names (`cases/<reference>/...`), or the inbox for keys that name none."""
    parts = key.split("/")
    if len(parts) >= 3 and parts[0] == "cases":
        case = session.scalar(select(Case).where(Case.reference == parts[1]))
        if case is not None:
            return case
    inbox = session.scalar(select(Case).where(Case.reference == inbox_reference))
    if inbox is None:
        inbox = Case(reference=inbox_reference, title="Unassigned evidence received in the bucket",
                     description="Objects whose key names no known case wait here for assignment.",
                     created_by=actor)
        session.add(inbox)
        session.flush()
    return inbox


def process_intake(session: Session, store: ObjectStore, *, record: dict[str, Any], actor: str,
                   inbox_reference: str, max_bytes: int, max_attempts: int = 3,
                   workdir: Path | None = None) -> IntakeResult | IntakeRefusal | None:
    """Hash an object that arrived in the bucket and record it as evidence (or as a duplicate of one).

    The object is read before the first query, so no transaction is held while it is downloaded. A second
    version under a single-use presigned grant is refused: it is recorded as rejected, noted in the custody of
    the item the grant produced, and answered with an `IntakeRefusal` (its intake job fails with the reason).
    """
    parsed = parse_object_created(record)
    if parsed is None:
        return None
    bucket, key, version_id, _size = parsed
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        local = Path(tmp) / "object"
        sha256 = store.download(bucket, key, version_id, local, expected_sha256=None, max_bytes=max_bytes)
        size = local.stat().st_size
        media_type = _sniff(local)
    known = session.scalar(select(EvidenceObject).where(
        EvidenceObject.bucket == bucket, EvidenceObject.object_key == key, EvidenceObject.version_id == version_id))
    if known is not None:
        evidence = session.get(Evidence, known.evidence_id) if known.evidence_id else None
        return IntakeResult(evidence, False) if evidence is not None else None
    location = {"bucket": bucket, "key": key, "version_id": version_id}
    principal = record.get("userIdentity", {}).get("principalId", "unknown")
    grant = session.scalar(select(IntakeClaim).where(IntakeClaim.bucket == bucket, IntakeClaim.object_key == key))
    if grant is not None:
        if not _take_grant(session, grant, version_id):
            return IntakeRefusal(_refuse_version(session, grant, actor=actor, sha256=sha256, size=size, **location))
        principal = grant.actor  # the one the upload was granted to
    case = case_for_key(session, key, inbox_reference=inbox_reference, actor=actor)
    duplicate = find_duplicate(session, case_id=case.id, sha256=sha256)
    if duplicate is not None:
        session.add(EvidenceObject(bucket=bucket, object_key=key, version_id=version_id,
                                   evidence_id=duplicate.id, outcome="duplicate"))
        record_duplicate(session, duplicate, actor=actor, filename=key.rsplit("/", 1)[-1], source="bucket",
                         location=location)
        if grant is not None:
            grant.evidence_id = duplicate.id
        return IntakeResult(duplicate, False)
    evidence = Evidence(case_id=case.id, sha256=sha256, size=size, media_type=media_type,
                        declared_media_type=record["s3"]["object"].get("contentType") or None,
                        original_filename=key.rsplit("/", 1)[-1], bucket=bucket, object_key=key,
                        version_id=version_id, source="bucket", received_by=actor, declared_kind=kind_from_key(key))
    session.add(evidence)
    session.flush()
    session.add(EvidenceObject(bucket=bucket, object_key=key, version_id=version_id, evidence_id=evidence.id,
                               outcome="original"))
    _custody(session, evidence.id, actor, "received", source="bucket", uploader=principal, size=size,
             sha256=sha256, media_type=media_type, s3_event=record, declared_kind=evidence.declared_kind,
             **({"grant": grant.id} if grant is not None else {}), **location)
    session.flush()
    _enqueue_plan(session, evidence, max_attempts)
    if grant is not None:
        grant.evidence_id = evidence.id
    return IntakeResult(evidence, True)


def _take_grant(session: Session, grant: IntakeClaim, version_id: str) -> bool:
    """Whether `version_id` is the one version a claim takes in (the first to reach intake takes a free one)."""
    if grant.version_id is None:
        taken = session.execute(update(IntakeClaim).where(IntakeClaim.id == grant.id,
                                                          IntakeClaim.version_id.is_(None))
                                .values(version_id=version_id, state="done"))
        session.refresh(grant)
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            return True
    return grant.version_id == version_id


def _refuse_version(session: Session, grant: IntakeClaim, *, bucket: str, key: str, version_id: str, actor: str,
                    sha256: str, size: int) -> str:
    """Record a refused second version (rows and custody); the reason."""
    what = "presigned upload grant" if grant.kind == "presigned" else "API upload's key"
    reason = (f"second object version under a single-use {what}: {bucket}/{key} version {grant.version_id} "
              f"was taken in for {grant.actor}; version {version_id} (SHA-256 {sha256}) is not evidence and "
              "stays in the bucket")
    session.add(EvidenceObject(bucket=bucket, object_key=key, version_id=version_id, evidence_id=grant.evidence_id,
                               outcome="rejected", detail=reason))
    if grant.evidence_id is not None:
        _custody(session, grant.evidence_id, actor, "second_version_refused", bucket=bucket, key=key,
                 version_id=version_id, sha256=sha256, size=size, grant=grant.id, granted_to=grant.actor,
                 reason=reason)
    return reason


def sweep(session: Session, store: ObjectStore, *, principal: str, max_attempts: int = 3) -> int:
    """Reconcile the evidence bucket with the records: enqueue every object version Locard has not seen.

    For S3 servers that send no bucket notifications (SeaweedFS), this is how direct uploads are found. The
    bucket is listed before the records are read: an upload claims its key before storing its object, so every
    listed object of an upload in progress has its claim visible here, and is left to its uploader.
    """
    versions = list(store.list_versions(store.evidence_bucket))
    if not versions:
        return 0
    known = {(b, k, v) for b, k, v in session.execute(
        select(EvidenceObject.bucket, EvidenceObject.object_key, EvidenceObject.version_id))}
    queued = set(session.scalars(select(Job.dedupe_key).where(Job.kind == "intake")))
    now = utcnow()
    uploads = {(claim.bucket, claim.object_key): claim for claim in session.scalars(select(IntakeClaim).where(
        IntakeClaim.kind == "upload", IntakeClaim.state == "pending"))}
    added = 0
    for version in versions:
        if (version.bucket, version.key, version.version_id) in known:
            continue
        if f"intake:{version.bucket}/{version.key}@{version.version_id}" in queued:
            continue
        claim = uploads.get((version.bucket, version.key))
        if claim is not None and claim.expires_at > now:
            continue  # its uploader records it
        record = object_created_record(bucket=version.bucket, key=version.key, version_id=version.version_id,
                                       size=version.size, etag=version.etag,
                                       principal=claim.actor if claim is not None else principal,
                                       source="locard-sweep")
        if record_object_event(session, evidence_bucket=store.evidence_bucket, record=record,
                               max_attempts=max_attempts) is not None:
            added += 1
    return added
