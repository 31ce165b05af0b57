"""Evidence: upload (streamed) or presigned upload, read with custody, verified download, analysis, findings."""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from api.access import note_of, route_template
from api.deps import (
    CurrentCase,
    CurrentEvidence,
    CurrentPrincipal,
    Principal,
    SessionDep,
    SettingsDep,
    StoreDep,
    case_visible,
    findings_for,
    visible_case_or_404,
    visible_evidence,
)
from api.problems import Problem
from api.schemas.analysis import AnalysisRunRead, AnalysisStatus, FindingRead, JobRead
from api.schemas.cases import EvidenceDetail, EvidenceRead, PresignedUploadCreate, PresignedUploadRead, UploadResult
from api.uploads import receive_upload
from storage import intake, records
from storage.db import transaction
from storage.media import PRINT_MAX_PPI, PRINT_MIN_PPI
from storage.objectstore import IntegrityError, ObjectStoreError
from storage.tables import Case

router = APIRouter(tags=["evidence"])
KindFilter = Annotated[str | None, Query(max_length=100, description="a finding kind, or a prefix like 'hash.*'")]

MIN_PPI, MAX_PPI = PRINT_MIN_PPI, PRINT_MAX_PPI  # the fingerprint analyzer's range (storage.media)
UPLOAD_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary"},
                   "evidence_kind": {"type": "string", "enum": list(intake.EVIDENCE_KINDS),
                                     "description": "what the item is; 'fingerprint' routes it to the "
                                                    "fingerprint analyzer"},
                   "ppi": {"type": "number", "minimum": MIN_PPI, "maximum": MAX_PPI,
                           "description": "scan resolution of a fingerprint, when the file does not say"}}}}}}}


@router.post("/cases/{case_id}/evidence", response_model=UploadResult, status_code=status.HTTP_201_CREATED,
             openapi_extra=UPLOAD_BODY, responses={200: {"model": UploadResult,
                                                          "description": "content already held"}})
async def upload_evidence(request: Request, response: Response, case_id: Annotated[str, Path(max_length=64)],
                          store: StoreDep, settings: SettingsDep, principal: CurrentPrincipal) -> UploadResult:
    """Upload one evidence file (multipart part `file`); the same content twice answers with the existing item.

    No transaction is open while the body streams in or the object is stored: the case is read first, and the
    evidence is recorded (with this request's audit entry) once the object is stored.
    """
    case = await run_in_threadpool(_upload_case, request, principal, case_id)
    upload = await receive_upload(request, limit=settings.max_upload_bytes, workdir=request.app.state.spool,
                                  max_fields=settings.max_form_fields, max_field_bytes=settings.max_form_bytes)
    try:
        kind, ppi = _declared(upload.fields)
        result = await run_in_threadpool(
            intake.ingest_upload, request.app.state.session_factory, store, case=case, path=upload.path,
            sha256=upload.sha256, size=upload.size, filename=upload.filename,
            declared_media_type=upload.content_type, actor=principal.name, max_attempts=settings.job_max_attempts,
            declared_kind=kind, declared_ppi=ppi, claim_seconds=settings.upload_claim_seconds,
            record_with=lambda session: _write_note(request, session))
    except ObjectStoreError as exc:
        raise Problem(502, "Object store refused the evidence", str(exc)) from exc
    finally:
        upload.path.unlink(missing_ok=True)
    _note_written(request)
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return UploadResult(created=result.created, evidence=EvidenceRead.model_validate(result.evidence))


def _upload_case(request: Request, principal: Principal, case_id: str) -> Case:
    """The case an upload goes to, read in a transaction of its own (404 when hidden from the caller)."""
    with request.app.state.session_factory() as session, session.begin():
        return visible_case_or_404(request, session, principal, case_id)


def _write_note(request: Request, session: Session) -> None:
    """Add this request's audit entry to `session`, so that it commits with the data it logs."""
    note = note_of(request)
    if note is not None and not note.written:
        note.path = route_template(request)
        note.write(session, outcome="ok")


def _note_written(request: Request) -> None:
    note = note_of(request)
    if note is not None:
        note.written = True


def _declared(fields: dict[str, str]) -> tuple[str | None, float | None]:
    """The evidence kind and scan resolution declared in the upload's form fields, validated."""
    kind = fields.get("evidence_kind", "").strip() or None
    if kind is not None and kind not in intake.EVIDENCE_KINDS:
        raise Problem(422, "Unknown evidence kind", f"evidence_kind must be one of {', '.join(intake.EVIDENCE_KINDS)}.")
    raw_ppi = fields.get("ppi", "").strip()
    if not raw_ppi:
        return kind, None
    try:
        ppi = float(raw_ppi)
    except ValueError:
        raise Problem(422, "Invalid resolution", f"ppi must be a number, got {raw_ppi[:40]!r}.") from None
    if not MIN_PPI <= ppi <= MAX_PPI:
        raise Problem(422, "Invalid resolution", f"ppi must be between {MIN_PPI:g} and {MAX_PPI:g}.")
    return kind, ppi


@router.post("/cases/{case_id}/evidence/presigned-upload", response_model=PresignedUploadRead,
             status_code=status.HTTP_201_CREATED)
def presign_upload(body: PresignedUploadCreate, case: CurrentCase, session: SessionDep, store: StoreDep,
                   settings: SettingsDep, principal: CurrentPrincipal) -> PresignedUploadRead:
    """A short-lived URL to PUT one large file straight into the evidence bucket; intake follows by itself.

    The grant is single-use: the first object version written under the key becomes evidence; another is
    refused at intake (listed in the intake failures, noted in the item's custody)."""
    folder = f"{intake.FINGERPRINT_FOLDER}/" if body.evidence_kind == "fingerprint" else ""
    key = f"cases/{case.reference}/uploads/{uuid.uuid4()}/{folder}{intake.safe_filename(body.filename)}"
    expires = dt.timedelta(seconds=settings.presign_expiry_seconds)
    expires_at = dt.datetime.now(dt.UTC) + expires
    intake.grant_presigned_upload(session, bucket=store.evidence_bucket, key=key, case=case, actor=principal.name,
                                  expires_at=expires_at)  # committed before the URL is handed out
    url = store.presigned_put(key, expires)
    return PresignedUploadRead(url=url, bucket=store.evidence_bucket, key=key, expires_at=expires_at)


@router.get("/evidence/{evidence_id}", response_model=EvidenceDetail)
def get_evidence(evidence: CurrentEvidence, session: SessionDep) -> EvidenceDetail:
    custody = records.custody_of(session, evidence_id=evidence.id)
    base = EvidenceRead.model_validate(evidence).model_dump()
    return EvidenceDetail.model_validate({**base, "custody": list(custody)})


@router.get("/evidence/{evidence_id}/content", response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}},
                       409: {"description": "the stored bytes no longer match the recorded SHA-256"}})
def download_evidence(request: Request, evidence_id: Annotated[str, Path(max_length=64)], store: StoreDep,
                      principal: CurrentPrincipal) -> FileResponse:
    """The evidence bytes, released only after their SHA-256 has been checked against the intake record.

    No transaction is open while the object is read: the item is looked up, then the download is recorded (with
    this request's audit entry) in a transaction of its own.
    """
    factory = request.app.state.session_factory
    with factory() as session, session.begin():
        evidence = visible_evidence(session, principal, evidence_id)
    if evidence is None:
        raise Problem(404, "Evidence not found", f"There is no evidence item {evidence_id}.")
    note = note_of(request)
    if note is not None:
        note.action, note.case_id, note.resource_id = "disclosure", evidence.case_id, evidence.id
    path = _temporary_file("locard-download-", request.app.state.spool)
    try:
        store.download(evidence.bucket, evidence.object_key, evidence.version_id or "", path,
                       expected_sha256=evidence.sha256)
    except IntegrityError as exc:
        path.unlink(missing_ok=True)
        with transaction(factory) as own:
            records.add_custody(own, evidence_id=evidence.id, actor=principal.name, action="integrity_failure",
                                detail={"error": str(exc)})
        raise Problem(409, "Integrity check failed",
                      "The stored bytes do not match the SHA-256 recorded at intake; the download is refused.",
                      sha256=evidence.sha256) from exc
    except ObjectStoreError as exc:
        path.unlink(missing_ok=True)
        raise Problem(502, "Object store error", str(exc)) from exc
    try:
        with transaction(factory) as session:
            records.add_custody(session, evidence_id=evidence.id, actor=principal.name, action="downloaded",
                                detail={"sha256_verified": evidence.sha256})
            _write_note(request, session)
    except Exception:
        path.unlink(missing_ok=True)
        raise
    _note_written(request)
    name = evidence.original_filename or f"{evidence.id}.bin"
    return FileResponse(path, media_type=evidence.media_type, filename=intake.safe_filename(name),
                        headers={"X-Locard-SHA256": evidence.sha256},
                        background=BackgroundTask(path.unlink, missing_ok=True))


@router.get("/evidence/{evidence_id}/analysis", response_model=AnalysisStatus)
def analysis_status(evidence: CurrentEvidence, session: SessionDep) -> AnalysisStatus:
    job_rows = records.jobs_of(session, evidence_id=evidence.id)
    planning = records.plan_pending(session, evidence_id=evidence.id)
    if planning:
        state = "planning"
    elif any(job.state in ("queued", "running") for job in job_rows):
        state = "running"
    else:
        state = "done"
    return AnalysisStatus(evidence_id=evidence.id, state=state,
                          jobs=[JobRead.model_validate(j) for j in job_rows],
                          runs=[AnalysisRunRead.model_validate(r)
                                for r in records.runs_of(session, evidence_id=evidence.id)])


@router.get("/evidence/{evidence_id}/findings", response_model=list[FindingRead])
def evidence_findings(request: Request, evidence: CurrentEvidence, session: SessionDep, principal: CurrentPrincipal,
                      kind: KindFilter = None) -> list[FindingRead]:
    found = records.list_findings(session, evidence_id=evidence.id, kind=kind)
    return [FindingRead.model_validate(f) for f in findings_for(request, principal, found)]


@router.get("/findings/{finding_id}/artifacts/{index}", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}, "application/octet-stream": {}}}})
def finding_artifact(request: Request, finding_id: Annotated[str, Path(max_length=64)],
                     index: Annotated[int, Path(ge=0, le=1000)], session: SessionDep, store: StoreDep,
                     principal: CurrentPrincipal) -> FileResponse:
    """A derived file of a finding (thumbnail, crop), checked against the SHA-256 the worker recorded."""
    finding = records.get_finding(session, finding_id=finding_id)
    if finding is not None and not case_visible(session, principal, finding.case_id):
        finding = None  # another case's finding does not exist for this caller
    artifacts = finding.data.get("artifacts", []) if finding is not None else []
    if finding is None or index >= len(artifacts):
        raise Problem(404, "Artifact not found", f"Finding {finding_id} has no artifact {index}.")
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = finding.case_id, finding.id
    artifact = artifacts[index]
    path = _temporary_file("locard-artifact-", request.app.state.spool)
    try:
        store.download(artifact["bucket"], artifact["key"], artifact.get("version_id") or "", path,
                       expected_sha256=artifact.get("sha256"))
    except IntegrityError as exc:
        path.unlink(missing_ok=True)
        raise Problem(409, "Integrity check failed", "The stored artifact does not match its recorded SHA-256.")\
            from exc
    except ObjectStoreError as exc:
        path.unlink(missing_ok=True)
        raise Problem(502, "Object store error", str(exc)) from exc
    return FileResponse(path, media_type=artifact.get("content_type") or "application/octet-stream",
                        filename=intake.safe_filename(artifact.get("name")),
                        background=BackgroundTask(path.unlink, missing_ok=True))


def _temporary_file(prefix: str, folder: FilePath | None = None) -> FilePath:
    handle = tempfile.NamedTemporaryFile(prefix=prefix, dir=folder, delete=False)  # noqa: SIM115
    handle.close()
    return FilePath(handle.name)
