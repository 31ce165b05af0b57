"""Bucket intake: MinIO bucket-notification webhook, and the list of objects that could not be taken in."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header

from api.deps import SessionDep, SettingsDep, require_roles
from api.principal import Principal
from api.problems import Problem
from api.schemas.intake import IntakeFailureRead, WebhookAck
from storage import intake, records
from storage.roles import ADMINISTRATOR, SUPERVISOR

router = APIRouter(prefix="/intake", tags=["intake"])

MAX_RECORDS = 1000


def webhook_token(settings: SettingsDep, authorization: Annotated[str | None, Header()] = None) -> None:
    """The webhook's own credential: the bearer token MinIO is configured with (checked before the body)."""
    expected = settings.webhook_token.get_secret_value()
    if not expected:
        raise Problem(503, "Webhook disabled", "No webhook token is configured (LOCARD_WEBHOOK_TOKEN).")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Problem(401, "Unauthorized", "The webhook call carries no valid bearer token.")


@router.post("/minio-events", response_model=WebhookAck, dependencies=[Depends(webhook_token)])
def minio_events(settings: SettingsDep, session: SessionDep,
                 body: Annotated[dict[str, Any], Body(description="a MinIO bucket notification")]) -> WebhookAck:
    """Receive MinIO bucket notifications (`MINIO_NOTIFY_WEBHOOK_ENDPOINT` pointed here)."""
    found = body.get("Records")
    if not isinstance(found, list) or not found or len(found) > MAX_RECORDS:
        raise Problem(400, "Malformed notification",
                      f"Expected a MinIO event with a 'Records' list of 1 to {MAX_RECORDS} records.")
    queued = 0
    for index, record in enumerate(found):
        try:
            job = intake.record_object_event(session, evidence_bucket=settings.evidence_bucket, record=record,
                                             max_attempts=settings.job_max_attempts)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise Problem(400, "Malformed notification", f"Record {index} is not an S3 event record: {exc!r}.")\
                from exc
        queued += job is not None
    return WebhookAck(records=len(found), queued=queued)


@router.get("/failures", response_model=list[IntakeFailureRead])
def intake_failures(session: SessionDep,
                    principal: Principal = require_roles(SUPERVISOR, ADMINISTRATOR)) -> list[IntakeFailureRead]:
    """Objects in the evidence bucket that intake could not record, with the reason; they stay in the bucket."""
    return [IntakeFailureRead.model_validate(job) for job in records.failed_intake(session)]
