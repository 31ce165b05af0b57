"""Request and response models of webhook subscriptions, their delivery log and replays."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from api.schemas.base import ReadModel
from storage.events import EVENT_KINDS


def _kind(value: str) -> str:
    if value not in EVENT_KINDS:
        raise ValueError(f"not an event kind; the kinds are {', '.join(EVENT_KINDS)}")
    return value


EventKind = Annotated[str, Field(max_length=40), AfterValidator(_kind)]
Id = Annotated[str, Field(min_length=1, max_length=64)]


class SubscriptionCreate(BaseModel):
    """A webhook: where to send (https; http only to 127.0.0.1 or localhost), and one case or one watchlist."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000)
    case_id: Id | None = None
    watchlist_id: Id | None = None
    kinds: list[EventKind] = Field(default_factory=list, max_length=10, description="empty: every kind")
    description: str = Field(default="", max_length=200)

    @model_validator(mode="after")
    def _one_scope(self) -> SubscriptionCreate:
        if (self.case_id is None) == (self.watchlist_id is None):
            raise ValueError("name one case (case_id) or one watchlist (watchlist_id)")
        return self


class SubscriptionRead(ReadModel):
    id: str
    owner: str
    url: str
    case_id: str | None
    watchlist_id: str | None
    kinds: list[str]
    description: str
    active: bool
    disabled_reason: str | None
    created_at: dt.datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(description="the signing secret (Standard Webhooks, whsec_...): shown only in this answer")


class DeliveryRead(ReadModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: int
    sequence: int = Field(validation_alias="event_id")
    kind: str
    state: str
    attempts: int
    next_attempt_at: dt.datetime
    deadline: dt.datetime
    last_status: int | None
    last_error: str | None
    delivered_at: dt.datetime | None
    replays: int
    created_at: dt.datetime


class AttemptRead(ReadModel):
    number: int
    at: dt.datetime
    status: int | None
    error: str | None
    duration_ms: float


class DeliveryDetail(DeliveryRead):
    attempt_log: list[AttemptRead]


class ReplayRange(BaseModel):
    """Send again the deliveries of sequence numbers `first`..`last` (at most 10,000 apart)."""

    model_config = ConfigDict(extra="forbid")

    first: int = Field(ge=1, le=2**62)
    last: int = Field(ge=1, le=2**62)

    @model_validator(mode="after")
    def _range(self) -> ReplayRange:
        if not 0 <= self.last - self.first <= 10_000:
            raise ValueError("last must be at least first, and at most 10000 after it")
        return self


class Replayed(BaseModel):
    queued: int
