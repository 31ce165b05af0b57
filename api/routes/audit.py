"""The audit log, for auditors only: query it, and verify that neither it nor the chain of custody was altered.

Nothing in Locard changes or removes an audit entry: there is no route for it, and the database refuses
UPDATE and DELETE on the table. Verification recomputes the HMAC chain against the newest signed checkpoint kept
outside the database (`storage.checkpoints`) and names the first bad entry.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request

from api.deps import SessionDep, SettingsDep, StoreDep, require_roles
from api.principal import Principal
from api.problems import Problem
from api.schemas.audit import AuditEntryRead, ChainVerification
from storage import audit, checkpoints
from storage.db import reading
from storage.roles import AUDITOR

router = APIRouter(prefix="/audit", tags=["audit"])
Text = Annotated[str | None, Query(max_length=200)]


@router.get("", response_model=list[AuditEntryRead])
def query_audit(session: SessionDep, principal: Principal = require_roles(AUDITOR), user: Text = None,
                case_id: Text = None, person: Text = None, action: Text = None, since: dt.datetime | None = None,
                until: dt.datetime | None = None, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditEntryRead]:
    """Audit entries by user, case, person (data subject), action and period, oldest first."""
    if action is not None and action not in audit.ACTIONS:
        raise Problem(422, "Unknown action", f"action must be one of {', '.join(audit.ACTIONS)}.")
    entries = audit.query(session, actor=user, case_id=case_id, person=person, action=action,
                          since=_utc(since), until=_utc(until), offset=offset, limit=limit)
    return [AuditEntryRead.model_validate(entry) for entry in entries]


@router.get("/verify", response_model=list[ChainVerification])
def verify_chains(request: Request, settings: SettingsDep, store: StoreDep,
                  principal: Principal = require_roles(AUDITOR)) -> list[ChainVerification]:
    """Recompute the audit log's and the chain of custody's HMAC chains, each against its newest signed
    checkpoint (the checkpoint bucket, when the object store locks objects, and the operator's file); each names
    its first bad entry and the checkpoint it was checked against."""
    sinks = checkpoints.sinks_for(settings, store)
    # A read of its own: on SQLite the request's session holds the write lock, and a long walk must not.
    with reading(request.app.state.session_factory) as session:
        results = checkpoints.verify(session, chain_key=settings.chain_key, sinks=sinks)
    return [ChainVerification.model_validate(result.to_dict()) for result in results]


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
