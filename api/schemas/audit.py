"""Response models of the audit log and its chain verification."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from api.schemas.base import ReadModel


class AuditEntryRead(ReadModel):
    """One entry of the audit log, with its place in the hash chain."""

    id: int
    at: dt.datetime
    actor: str
    actor_roles: list[str]
    action: str
    resource: str
    resource_id: str | None
    case_id: str | None
    person: str | None
    purpose_case: str | None
    justification: str | None
    recipients: list[str]
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    entry_hash: str


class ChainVerification(BaseModel):
    """The result of checking one hash chain (the audit log, or the chain of custody) from its start."""

    chain: str
    ok: bool
    checked: int
    unchained: int
    first_bad_id: int | None
    reason: str | None
    checkpoint: str | None = None  # the newest signed checkpoint the chain was checked against

