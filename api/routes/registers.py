"""The registers' shared rules (who may consult and write them, the optional purpose) and their bulk import.

The persons register (`api.routes.persons`), the vehicle register (`api.routes.vehicles`) and the face watchlists
(`api.routes.watchlists`) hold personal data of people who are not (yet) part of any case, so:

* consulting them (any read or lookup of a person, of a vehicle's owner, of a watchlist's members) needs a
  stated purpose (`api.deps.PurposeDep`: a case the caller works on and a justification), and every person
  whose data a request showed is noted for the audit log (`api.access.note_persons`, by national number);
* who consults: investigators, forensic examiners and supervisors (`REGISTER_READ_ROLES`, those who already
  search across cases); auditors and administrators never see register data (separation of duties);
* who writes and imports: supervisors, and case systems (a records management system feeding the registers by
  API key) (`REGISTER_WRITE_ROLES`); a write answers with the record written, which the writer supplied;
* watchlists decide whose faces are looked for in every case: only a supervisor makes or changes them
  (`WATCHLIST_ROLES`);
* minimisation: a vehicle's plate, make, model, colour and status are not personal data and may be read
  without a purpose; its owner's national number is, and is shown (and noted) only with a stated purpose,
  otherwise withheld (`owner_withheld`).

Bulk import: a CSV or JSON Lines file, as multipart part `file` or as the raw body, is spooled to disk under the
upload limit (never held in memory), then streamed into `storage.register_import.import_register`, which audits
it; the answer holds the counts and the first rejections with their line numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi import Path as PathParam
from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool

from api.access import note_of
from api.deps import (
    MATCHING_ROLES,
    PURPOSE_CASE_HEADER,
    PURPOSE_JUSTIFICATION_HEADER,
    CurrentPrincipal,
    Principal,
    Purpose,
    SessionDep,
    SettingsDep,
    require_purpose,
    require_roles,
)
from api.problems import Problem
from api.schemas.registers import ImportResult, RejectionRead
from api.uploads import SpooledUpload, receive_upload
from storage.register_files import ImportFileError
from storage.register_import import ImportReport, import_register
from storage.roles import CASE_SYSTEM, SUPERVISOR

REGISTER_READ_ROLES = MATCHING_ROLES  # investigators, forensic examiners, supervisors
REGISTER_WRITE_ROLES = (SUPERVISOR, CASE_SYSTEM)
WATCHLIST_ROLES = (SUPERVISOR,)
REJECTIONS_SHOWN = 100  # the import's audit entry and the answer name the first ones; every one is counted
FORMAT_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
FORMAT_BY_TYPE = {"text/csv": "csv", "application/csv": "csv", "application/jsonl": "jsonl",
                  "application/x-ndjson": "jsonl", "application/x-jsonlines": "jsonl", "application/jsonlines": "jsonl"}
IMPORT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                       "properties": {"file": {"type": "string", "format": "binary"}}}},
    "text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}}}}

Reader = Annotated[Principal, require_roles(*REGISTER_READ_ROLES)]
Writer = Annotated[Principal, require_roles(*REGISTER_WRITE_ROLES)]
WatchlistKeeper = Annotated[Principal, require_roles(*WATCHLIST_ROLES)]
RecordId = Annotated[str, PathParam(max_length=64)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=500)]


def optional_purpose(
        request: Request, session: SessionDep, principal: CurrentPrincipal,
        purpose_case: Annotated[str | None, Header(alias=PURPOSE_CASE_HEADER, max_length=64)] = None,
        justification: Annotated[str | None, Header(alias=PURPOSE_JUSTIFICATION_HEADER, max_length=1000)] = None,
) -> Purpose | None:
    """The stated purpose when the caller gives one (checked like `PurposeDep`), None when it gives none."""
    if purpose_case is None and justification is None:
        return None
    return require_purpose(request, session, principal, purpose_case, justification)


OptionalPurpose = Annotated[Purpose | None, Depends(optional_purpose)]


def note_resource(request: Request, resource_id: str) -> None:
    """Name the register record a request acted on in its audit entry."""
    note = note_of(request)
    if note is not None:
        note.resource_id = resource_id


router = APIRouter(prefix="/registers", tags=["registers"])


@router.post("/{register}/import", response_model=ImportResult, openapi_extra=IMPORT_BODY,
             responses={413: {"description": "the file is over the upload limit"},
                        422: {"description": "the file cannot be imported at all (the reason says why)"}})
async def import_file(request: Request, register: Literal["persons", "vehicles"], settings: SettingsDep,
                      principal: Writer,
                      file_format: Annotated[Literal["csv", "jsonl"] | None, Query(alias="format")] = None,
                      ) -> ImportResult:
    """Import a CSV or JSON Lines file into the persons or vehicle register (multipart part `file`, or the raw
    body with Content-Type text/csv or application/x-ndjson). Good records are kept, bad ones reported with their
    line numbers; importing the same file again changes nothing. The format is taken from `format`, else from
    the file name's suffix, else from the Content-Type."""
    spool: Path = request.app.state.spool
    upload = await _receive(request, limit=settings.max_upload_bytes, workdir=spool,
                            max_fields=settings.max_form_fields, max_field_bytes=settings.max_form_bytes)
    try:
        chosen = file_format or _format_of(upload)
        name = (upload.filename or f"{register}.{chosen}")[:200]
        try:
            report = await run_in_threadpool(_import, request, upload.path, register=register, file_name=name,
                                             file_format=chosen, principal=principal, size=upload.size)
        except ImportFileError as exc:
            raise Problem(422, "File refused", str(exc)) from None
    finally:
        upload.path.unlink(missing_ok=True)
    note = note_of(request)
    if note is not None:
        note.resource_id = report.sha256
        note.detail["import_audit_id"] = report.audit_id
    return _result(report)


def _import(request: Request, path: Path, *, register: str, file_name: str, file_format: str,
            principal: Principal, size: int) -> ImportReport:
    with path.open("rb") as stream:
        return import_register(request.app.state.session_factory, register=register, stream=stream,
                               file_name=file_name, file_format=file_format, actor=principal.name,
                               roles=principal.role_list, total_bytes=size)


def _result(report: ImportReport) -> ImportResult:
    return ImportResult.model_validate({
        "register": report.register, "file_name": report.file_name, "format": report.file_format,
        "sha256": report.sha256, "bytes": report.bytes_read, **report.counts(),
        "rejections": [RejectionRead(line=r.line, reason=r.reason) for r in report.rejections[:REJECTIONS_SHOWN]],
        "audit_id": report.audit_id})


def _format_of(upload: SpooledUpload) -> str:
    suffix = Path(upload.filename or "").suffix.lower()
    if suffix in FORMAT_BY_SUFFIX:
        return FORMAT_BY_SUFFIX[suffix]
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type in FORMAT_BY_TYPE:
        return FORMAT_BY_TYPE[content_type]
    raise Problem(422, "Unknown file format", "Say format=csv or format=jsonl, or send a file named *.csv or "
                                              "*.jsonl, or a Content-Type of text/csv or application/x-ndjson.")


async def _receive(request: Request, *, limit: int, workdir: Path, max_fields: int,
                   max_field_bytes: int) -> SpooledUpload:
    """The uploaded file on disk: a multipart part `file` (`api.uploads`), or the whole raw body."""
    content_type, _ = parse_options_header(request.headers.get("content-type", ""))
    if content_type == b"multipart/form-data":
        return await receive_upload(request, limit=limit, workdir=workdir, max_fields=max_fields,
                                    max_field_bytes=max_field_bytes)
    return await receive_raw(request, limit=limit, workdir=workdir)


async def receive_raw(request: Request, *, limit: int, workdir: Path) -> SpooledUpload:
    """Stream a raw request body to a spool file in `workdir`, refusing it (413) once it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise Problem(413, "Upload too large", f"The file is larger than the limit of {limit} bytes.")
    handle: IO[bytes] = tempfile.NamedTemporaryFile(prefix="locard-import-", dir=workdir, delete=False)  # noqa: SIM115
    dest = Path(handle.name)
    size = 0
    try:
        with handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise Problem(413, "Upload too large", f"The file is larger than the limit of {limit} bytes.")
                handle.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    if size == 0:
        dest.unlink(missing_ok=True)
        raise Problem(422, "Empty file", "The body is empty; send the CSV or JSON Lines file as the body or as "
                                         "a multipart part named 'file'.")
    content_type = request.headers.get("content-type")
    return SpooledUpload(dest, None, content_type, sha256="", size=size)
