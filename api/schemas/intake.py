"""Request and response models of the object-store intake webhook."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from api.schemas.base import ReadModel


class WebhookAck(BaseModel):
    records: int
    queued: int


class IntakeFailureRead(ReadModel):
    id: int
    dedupe_key: str
    attempts: int
    last_error: str | None
    updated_at: dt.datetime

