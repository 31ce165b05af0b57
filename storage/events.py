"""The event outbox: what case systems and readers are told of (new matches, decisions, leads), kept durably.

`publish` adds an event in the caller's transaction, with one pending delivery per webhook subscription that
asks for it (`storage.subscriptions.fan_out`): the event and its deliveries commit with the match or decision
they tell of, or not at all, so a restart of the API or the worker service loses none (the delivery loop,
`workers.delivery`, sends them when it runs again). The server-sent-events stream (`api.routes.subscriptions`)
reads the same table, by sequence.

An event's `id` is its sequence: events are read in that order. On PostgreSQL a transaction may commit after one
that took a later id, so a reader that moved past a missing id could skip an event committed late; `settled`
therefore stops at a gap in the sequence until the gap is `GAP_SECONDS` old (a rolled-back transaction leaves a
gap for ever; a late commit fills it within moments).

Payloads are thin (as Standard Webhooks recommends, "Thin vs full payloads"): ids and states, never personal
data, so that a receiver reads what it needs through the API, where each consultation is audited. An event names
the cases it concerns: it is shown only to who may see every one of them (a lead spanning a case the reader
does not see is published once per case, each naming that case).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage import subscriptions
from storage.matches import Match
from storage.tables import Base, utcnow

MATCH_CREATED = "match.created"
MATCH_CONFIRMED = "match.confirmed"
MATCH_REJECTED = "match.rejected"
LEAD_CREATED = "lead.created"
LEAD_UPDATED = "lead.updated"
EVENT_KINDS = (MATCH_CREATED, MATCH_CONFIRMED, MATCH_REJECTED, LEAD_CREATED, LEAD_UPDATED)
MAX_PAYLOAD_BYTES = 16 * 1024  # Standard Webhooks: "usually smaller than 20kb"
MAX_IDS = 100  # cases or watchlists one event names
GAP_SECONDS = 10.0  # how long a reader waits for a missing sequence number before passing it


class Event(Base):
    """One thing that happened, to be told to who may see it; its `id` is its sequence number."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    uid: Mapped[str] = mapped_column(String(40), unique=True, default=lambda: f"evt_{uuid.uuid4().hex}")
    kind: Mapped[str] = mapped_column(String(40))
    case_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    watchlist_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


def publish(session: Session, *, kind: str, case_ids: Sequence[str], watchlist_ids: Sequence[str] = (),
            payload: dict[str, Any]) -> Event:
    """Add an event and its pending deliveries to the caller's transaction (they commit with it)."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"not an event kind: {kind!r}")
    cases, watched = list(dict.fromkeys(case_ids)), list(dict.fromkeys(watchlist_ids))
    if not cases:  # an event of no case would be visible to everyone
        raise ValueError("an event names at least one case")
    if len(cases) > MAX_IDS or len(watched) > MAX_IDS or not all(isinstance(i, str) for i in cases + watched):
        raise ValueError("an event names at most 100 cases and 100 watchlists, by id")
    if len(json.dumps(payload)) > MAX_PAYLOAD_BYTES:
        raise ValueError("an event's payload is thin: ids and states, at most 16 KiB")
    event = Event(kind=kind, case_ids=cases, watchlist_ids=watched, payload=payload, created_at=utcnow())
    session.add(event)
    session.flush()
    subscriptions.fan_out(session, event_id=event.id, kind=kind, case_ids=cases, watchlist_ids=watched,
                          at=event.created_at)
    return event


def publish_match(session: Session, *, kind: str, match: Match) -> list[Event]:
    """Tell each case on the match's sides about it (one event per case: a subscriber sees the events of the
    cases they may see), with the match's id and state only; the rest is read through the API, audited."""
    payload = {"match_id": match.id, "modality": match.modality, "status": match.status, "score": match.score,
               "threshold": match.threshold, "target_kind": match.target_kind}
    cases = [case for case in (match.case_id, match.target_case_id) if case]
    return [publish(session, kind=kind, case_ids=[case], payload=payload) for case in dict.fromkeys(cases)]


def get_event(session: Session, *, event_id: int) -> Event | None:
    return session.get(Event, event_id)


def get_events(session: Session, *, ids: Collection[int]) -> dict[int, Event]:
    return {e.id: e for e in session.scalars(select(Event).where(Event.id.in_(set(ids))))} if ids else {}


def body(event: Event, *, with_watchlists: bool) -> bytes:
    """The JSON body sent for an event (Standard Webhooks payload structure: type, timestamp, data), minified.

    `with_watchlists`: whether the reader may read watchlists (only then are the event's watchlists named)."""
    document = {"id": event.uid, "type": event.kind, "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
                "sequence": event.id, "case_ids": event.case_ids,
                "watchlist_ids": event.watchlist_ids if with_watchlists else [], "data": event.payload}
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def settled(session: Session, *, after: int, limit: int, now: dt.datetime | None = None) -> list[Event]:
    """Up to `limit` events after sequence number `after`, in order, stopping at a gap younger than
    `GAP_SECONDS` (a transaction that took the missing number may still commit)."""
    now = now or utcnow()
    found = session.scalars(select(Event).where(Event.id > after).order_by(Event.id).limit(limit)).all()
    shown: list[Event] = []
    expected = after + 1
    for event in found:
        if event.id != expected and event.created_at > now - dt.timedelta(seconds=GAP_SECONDS):
            break
        shown.append(event)
        expected = event.id + 1
    return shown


def latest(session: Session) -> int:
    """The highest sequence number so far (0 when there is no event)."""
    return session.scalar(select(Event.id).order_by(Event.id.desc()).limit(1)) or 0
