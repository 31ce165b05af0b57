"""Real-time delivery: webhook subscriptions (create, list, read, delete), their delivery log and replays, and the
server-sent-events stream.

Who: every role that works with case data (`CASE_ROLES`: investigators, forensic examiners, supervisors, case
systems), each on its own subscriptions only (another's is 404, the same as a missing one). A subscription needs
a Locard account (what it may see is decided from the account when each delivery is sent,
`storage.subscriptions.may_see`) and names a case the caller sees (404 otherwise) or a watchlist, which needs a
role that reads watchlists (`REGISTER_READ_ROLES`, 403 otherwise). Its address is checked against server-side
request forgery (`storage.webhook_targets.check_url`: 422); loopback receivers are refused in production. The secret
is in the creation's answer only.

`GET /events/stream` is a `text/event-stream` of the events the reader may see (every case an event names
visible to the reader now), from the sequence number after `Last-Event-ID` (or `after`; without either: from
now, the current position sent as the first `id:`), optionally of one case, one watchlist or some kinds. It sends
what there is and stays open `wait` seconds for more (0: closes at once; an EventSource reconnects after `retry`
with its Last-Event-ID, so it polls), and closes early when the reader's account or key is revoked.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from api.access import note_of
from api.deps import (
    CASE_ROLES,
    Principal,
    SessionDep,
    SettingsDep,
    require_roles,
    visible_case_ids,
    visible_case_or_404,
)
from api.problems import Problem
from api.routes.registers import REGISTER_READ_ROLES
from api.schemas.subscriptions import (
    AttemptRead,
    DeliveryDetail,
    DeliveryRead,
    Replayed,
    ReplayRange,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
)
from api.security import still_valid
from storage import events, subscriptions, watchlists
from storage.db import reading
from storage.subscriptions import DELIVERY_STATES, Subscription
from storage.tables import utcnow
from storage.webhook_targets import TargetRefused

router = APIRouter(tags=["subscriptions"])
Subscriber = Annotated[Principal, require_roles(*CASE_ROLES)]
SubscriptionId = Annotated[str, PathParam(max_length=64)]
DeliveryId = Annotated[int, PathParam(ge=1, le=2**62)]
STREAM_POLL_SECONDS = 0.25
STREAM_BATCH = 200
RETRY_MS = 2000


def _own(request: Request, session: Session, principal: Principal, subscription_id: str) -> Subscription:
    """The caller's subscription; 404 for another's, as for a missing one."""
    found = subscriptions.get_subscription(session, subscription_id=subscription_id)
    if found is None or found.owner != principal.name:
        raise Problem(404, "Subscription not found", f"There is no subscription {subscription_id}.")
    note = note_of(request)
    if note is not None:
        note.resource_id, note.case_id = found.id, found.case_id
    return found


def _watchlist(session: Session, principal: Principal, watchlist_id: str) -> None:
    if not principal.has(*REGISTER_READ_ROLES):
        raise Problem(403, "Not permitted", "Watchlists are read by investigators, examiners and supervisors.")
    if watchlists.get_watchlist(session, watchlist_id=watchlist_id) is None:
        raise Problem(404, "Watchlist not found", f"There is no watchlist {watchlist_id}.")


@router.post("/subscriptions", status_code=status.HTTP_201_CREATED, response_model=SubscriptionCreated,
             responses={409: {"description": "the account holds the most subscriptions it may"}})
def create_subscription(request: Request, body: SubscriptionCreate, session: SessionDep, settings: SettingsDep,
                        principal: Subscriber) -> SubscriptionCreated:
    """A webhook for the events of one case (one you see) or one watchlist; the answer holds its signing secret,
    shown this once."""
    if principal.user_id is None:
        raise Problem(403, "A Locard account is needed", "Subscriptions belong to Locard accounts.")
    if body.case_id is not None:
        visible_case_or_404(request, session, principal, body.case_id)
    if body.watchlist_id is not None:
        _watchlist(session, principal, body.watchlist_id)
    if not body.description.isprintable():
        raise Problem(422, "Invalid subscription", "description contains control characters")
    try:
        subscription, secret = subscriptions.create_subscription(
            session, owner=principal.name, url=body.url, case_id=body.case_id, watchlist_id=body.watchlist_id,
            kinds=body.kinds, description=body.description,
            allow_loopback=settings.environment != "production")
    except TargetRefused as exc:
        raise Problem(422, "Address refused", str(exc)) from None
    except subscriptions.TooManySubscriptions as exc:
        raise Problem(409, "Too many subscriptions", str(exc)) from None
    note = note_of(request)
    if note is not None:  # where the events will go, for who reads the log
        note.resource_id, note.detail["url"] = subscription.id, subscription.url
    return SubscriptionCreated.model_validate({**SubscriptionRead.model_validate(subscription).model_dump(),
                                               "secret": secret})


@router.get("/subscriptions", response_model=list[SubscriptionRead])
def list_subscriptions(session: SessionDep, principal: Subscriber) -> list[Subscription]:
    """Your subscriptions (never their secrets)."""
    return list(subscriptions.subscriptions_of(session, owner=principal.name))


@router.get("/subscriptions/{subscription_id}", response_model=SubscriptionRead)
def get_subscription(request: Request, subscription_id: SubscriptionId, session: SessionDep,
                     principal: Subscriber) -> Subscription:
    return _own(request, session, principal, subscription_id)


@router.delete("/subscriptions/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_subscription(request: Request, subscription_id: SubscriptionId, session: SessionDep,
                        principal: Subscriber) -> Response:
    """Remove the subscription, its pending deliveries and its delivery log."""
    subscriptions.delete_subscription(session, subscription=_own(request, session, principal, subscription_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/subscriptions/{subscription_id}/deliveries", response_model=list[DeliveryRead])
def delivery_log(request: Request, subscription_id: SubscriptionId, session: SessionDep, principal: Subscriber,
                 state: Annotated[str | None, Query(max_length=20)] = None,
                 offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                 limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[DeliveryRead]:
    """The subscription's deliveries by sequence number: state, tries, the last answer or error."""
    if state is not None and state not in DELIVERY_STATES:
        raise Problem(422, "Unknown state", f"A delivery's state is one of {', '.join(DELIVERY_STATES)}.")
    found = _own(request, session, principal, subscription_id)
    return [DeliveryRead.model_validate(d) for d in subscriptions.deliveries_of(
        session, subscription_id=found.id, state=state, offset=offset, limit=limit)]


def _delivery(request: Request, session: Session, principal: Principal, subscription_id: str,
              delivery_id: int) -> tuple[Subscription, subscriptions.Delivery]:
    found = _own(request, session, principal, subscription_id)
    delivery = subscriptions.get_delivery(session, subscription_id=found.id, delivery_id=delivery_id)
    if delivery is None:
        raise Problem(404, "Delivery not found", f"There is no delivery {delivery_id}.")
    return found, delivery


@router.get("/subscriptions/{subscription_id}/deliveries/{delivery_id}", response_model=DeliveryDetail)
def delivery_detail(request: Request, subscription_id: SubscriptionId, delivery_id: DeliveryId,
                    session: SessionDep, principal: Subscriber) -> DeliveryDetail:
    """One delivery with every try."""
    _, delivery = _delivery(request, session, principal, subscription_id, delivery_id)
    tries = [AttemptRead.model_validate(a) for a in subscriptions.attempts_of(session, delivery_id=delivery.id)]
    return DeliveryDetail(**DeliveryRead.model_validate(delivery).model_dump(), attempt_log=tries)


def _replay(session: Session, subscription: Subscription, first: int, last: int) -> Replayed:
    if not subscription.active:
        raise Problem(409, "Subscription disabled", subscription.disabled_reason or "The subscription is disabled.")
    return Replayed(queued=subscriptions.replay(session, subscription_id=subscription.id, first=first, last=last,
                                                now=utcnow()))


@router.post("/subscriptions/{subscription_id}/deliveries/{delivery_id}/replay", response_model=Replayed,
             status_code=status.HTTP_202_ACCEPTED)
def replay_delivery(request: Request, subscription_id: SubscriptionId, delivery_id: DeliveryId,
                    session: SessionDep, principal: Subscriber) -> Replayed:
    """Send one finished delivery again (a pending one is left as it is)."""
    subscription, delivery = _delivery(request, session, principal, subscription_id, delivery_id)
    return _replay(session, subscription, delivery.event_id, delivery.event_id)


@router.post("/subscriptions/{subscription_id}/replay", response_model=Replayed,
             status_code=status.HTTP_202_ACCEPTED)
def replay_range(request: Request, subscription_id: SubscriptionId, body: ReplayRange, session: SessionDep,
                 principal: Subscriber) -> Replayed:
    """Send again the finished deliveries of sequence numbers `first`..`last`, in order."""
    return _replay(session, _own(request, session, principal, subscription_id), body.first, body.last)


# --- server-sent events -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFilter:
    case_id: str | None
    watchlist_id: str | None
    kinds: frozenset[str]
    with_watchlists: bool


def _read(factory: sessionmaker[Session], principal: Principal, after: int,
          wanted: StreamFilter) -> tuple[list[str], int, bool]:
    """The frames of the events after `after` this reader may see, the new position, and whether it still may
    read at all."""
    with reading(factory) as session:
        if not still_valid(session, principal) or (principal.expires_at is not None
                                                   and principal.expires_at <= dt.datetime.now(dt.UTC)):
            return [], after, False
        listed = visible_case_ids(session, principal)
        visible = set(listed) if listed is not None else None
        found = events.settled(session, after=after, limit=STREAM_BATCH)
    frames = []
    for event in found:
        if ((visible is None or set(event.case_ids) <= visible)
                and (wanted.case_id is None or wanted.case_id in event.case_ids)
                and (wanted.watchlist_id is None or wanted.watchlist_id in event.watchlist_ids)
                and (not wanted.kinds or event.kind in wanted.kinds)):
            data = events.body(event, with_watchlists=wanted.with_watchlists).decode()
            frames.append(f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n")
    position = found[-1].id if found else after
    if found and not frames:
        frames.append(f"id: {position}\n\n")  # nothing shown: the reader's position still moves on
    return frames, position, True


@router.get("/events/stream", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}})
def stream(request: Request, session: SessionDep, principal: Subscriber,
           last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
           after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
           case_id: Annotated[str | None, Query(max_length=64)] = None,
           watchlist_id: Annotated[str | None, Query(max_length=64)] = None,
           kind: Annotated[list[str] | None, Query(max_length=10)] = None,
           wait: Annotated[float, Query(ge=0, le=300)] = 0) -> StreamingResponse:
    """The events you may see, as server-sent events, resumable with Last-Event-ID."""
    if case_id is not None:
        visible_case_or_404(request, session, principal, case_id)
    if watchlist_id is not None:
        _watchlist(session, principal, watchlist_id)
    if kind and (unknown := set(kind) - set(events.EVENT_KINDS)):
        raise Problem(422, "Unknown event kind", f"{sorted(unknown)[0]!r} is not one of {events.EVENT_KINDS}.")
    if after is None and last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise Problem(422, "Invalid Last-Event-ID", "Last-Event-ID is a sequence number.")
        after = int(last_event_id)
    start = after if after is not None else events.latest(session)
    wanted = StreamFilter(case_id, watchlist_id, frozenset(kind or ()), principal.has(*REGISTER_READ_ROLES))
    factory = request.app.state.session_factory

    async def frames() -> AsyncIterator[str]:
        position, until = start, time.monotonic() + wait
        yield f"retry: {RETRY_MS}\nid: {position}\n\n"
        while True:
            found, position, allowed = await run_in_threadpool(_read, factory, principal, position, wanted)
            for frame in found:
                yield frame
            if not allowed or time.monotonic() >= until:
                return
            if not found:
                await asyncio.sleep(STREAM_POLL_SECONDS)

    return StreamingResponse(frames(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
