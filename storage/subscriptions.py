"""Webhook subscriptions and their deliveries: who is told of which events, where, and what came of each try.

A subscription belongs to a Locard account (`owner`, by name) and names one case or one watchlist; it receives
the events of that case or watchlist (optionally only some kinds) at an HTTPS address, signed with a secret of
its own, shown once (Standard Webhooks, https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/
standard-webhooks.md: `whsec_` + base64 of 32 random bytes; `sign`). The secret is kept sealed (AES-GCM under a
key derived from the record store's chain key, `session.info["chain_key"]`): a copy of the database alone cannot
forge deliveries. Changing the audit key makes the subscriptions' secrets unreadable: they must be made again.

Who may see an event (`may_see`, checked when a delivery is sent, since assignments change): the owner's account
must be active and see every case the event names (supervisors see all cases; investigators, forensic examiners
and case systems the cases assigned to them: the rule of `api.deps.case_visible`); a watchlist subscription gets
its watchlist's events only while its owner holds a role that reads watchlists (`WATCHLIST_READERS`, as
`api.routes.registers.REGISTER_READ_ROLES`; a test holds the two equal) and the watchlist exists.

Addresses are checked against server-side request forgery by `storage.webhook_targets` (when a subscription is
made, and again, with the name resolved, at each delivery).

Deliveries are claimed under leases (the pattern of `storage.jobs`) and strictly in order per subscription: only
the pending delivery of a subscription's lowest sequence number is claimable (`claim_due`), so the next waits
until the previous one is delivered, given up or withheld.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import os
import secrets
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from storage import accounts
from storage.roles import CASE_DATA_ROLES, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import DEVELOPMENT_AUDIT_KEY
from storage.tables import Base, new_id, utcnow
from storage.watchlists import Watchlist
from storage.webhook_targets import MAX_URL, check_url

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
DELIVERY_WINDOW = dt.timedelta(hours=24)  # a delivery is tried for this long, then given up
MAX_PER_OWNER = 50  # subscriptions one account may hold (each event is sent once per subscription)
WATCHLIST_READERS = (INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR)
PENDING, DELIVERED, FAILED, WITHHELD = "pending", "delivered", "failed", "withheld"
DELIVERY_STATES = (PENDING, DELIVERED, FAILED, WITHHELD)


class TooManySubscriptions(ValueError):
    """The account holds `MAX_PER_OWNER` subscriptions already."""


class Subscription(Base):
    """A case system's (or a person's) subscription to the events of one case or one watchlist."""

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner: Mapped[str] = mapped_column(String(100), index=True)  # the account, by (lower-case) name
    url: Mapped[str] = mapped_column(String(MAX_URL))
    case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"), index=True)
    watchlist_id: Mapped[str | None] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"), index=True)
    kinds: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every kind
    description: Mapped[str] = mapped_column(String(200), default="")
    sealed_secret: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Delivery(Base):
    """One event to one subscription: pending until delivered, given up (failed) or withheld (not visible)."""

    __tablename__ = "deliveries"
    __table_args__ = (UniqueConstraint("subscription_id", "event_id", name="uq_delivery_event"),
                      Index("ix_deliveries_head", "state", "subscription_id", "event_id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(20), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deadline: Mapped[dt.datetime] = mapped_column()
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column()
    replays: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DeliveryAttempt(Base):
    """One try of a delivery: the receiver's status (None: no answer) or the error, and how long it took."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column()
    status: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float)


# --- secrets and signatures ---------------------------------------------------------------------------------------


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, *, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _box(session: Session) -> AESGCM:
    chain_key = session.info.get("chain_key") or DEVELOPMENT_AUDIT_KEY.encode()
    return AESGCM(hmac.new(chain_key, b"locard webhook secrets v1", hashlib.sha256).digest())


def _seal(session: Session, secret: str, subscription_id: str) -> str:
    nonce = os.urandom(12)
    return base64.b64encode(nonce + _box(session).encrypt(nonce, secret.encode(), subscription_id.encode())).decode()


def secret_of(session: Session, subscription: Subscription) -> str:
    """The subscription's signing secret, unsealed."""
    sealed = base64.b64decode(subscription.sealed_secret)
    return _box(session).decrypt(sealed[:12], sealed[12:], subscription.id.encode()).decode()


# --- subscriptions ------------------------------------------------------------------------------------------------


def create_subscription(session: Session, *, owner: str, url: str, case_id: str | None, watchlist_id: str | None,
                        kinds: Sequence[str] = (), description: str = "",
                        allow_loopback: bool = True) -> tuple[Subscription, str]:
    """A new subscription and its secret (returned only here). The caller checks that the owner may see the
    case or read the watchlist."""
    if (case_id is None) == (watchlist_id is None):
        raise ValueError("a subscription names one case or one watchlist")
    check_url(url, allow_loopback=allow_loopback)
    held = session.scalar(select(func.count()).select_from(Subscription).where(Subscription.owner == owner)) or 0
    if held >= MAX_PER_OWNER:
        raise TooManySubscriptions(f"an account holds at most {MAX_PER_OWNER} subscriptions")
    subscription = Subscription(id=new_id(), owner=owner, url=url, case_id=case_id, watchlist_id=watchlist_id,
                                kinds=sorted(set(kinds)), description=description)
    secret = new_secret()
    subscription.sealed_secret = _seal(session, secret, subscription.id)
    session.add(subscription)
    session.flush()
    return subscription, secret


def get_subscription(session: Session, *, subscription_id: str) -> Subscription | None:
    return session.get(Subscription, subscription_id)


def subscriptions_of(session: Session, *, owner: str) -> Sequence[Subscription]:
    return session.scalars(select(Subscription).where(Subscription.owner == owner)
                           .order_by(Subscription.created_at, Subscription.id)).all()


def delete_subscription(session: Session, *, subscription: Subscription) -> None:
    """Remove the subscription with its deliveries and their attempts."""
    session.delete(subscription)
    session.flush()


def disable(session: Session, *, subscription_id: str, reason: str) -> None:
    """Stop a subscription (its receiver answered 410 Gone): its pending deliveries are given up."""
    session.execute(update(Subscription).where(Subscription.id == subscription_id)
                    .values(active=False, disabled_reason=reason))
    session.execute(update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.state == PENDING)
                    .values(state=FAILED, last_error=reason, lease_owner=None, lease_expires_at=None))


@dataclass(frozen=True)
class Viewer:
    """What an (active) account may see now: its roles, and its cases (None: every case, a supervisor's)."""

    roles: frozenset[str]
    cases: frozenset[str] | None

    @property
    def reads_watchlists(self) -> bool:
        return bool(self.roles & set(WATCHLIST_READERS))

    def sees(self, case_ids: Sequence[str], *, watchlist: bool = False) -> bool:
        """Whether it sees every one of these cases (and, for `watchlist`, reads watchlists)."""
        if self.cases is not None and not set(case_ids) <= self.cases:
            return False
        return self.reads_watchlists if watchlist else True


def viewers(session: Session, *, owners: Collection[str]) -> dict[str, Viewer]:
    """The active accounts among `owners`, each with what it may see (the rule of `api.deps.case_visible`)."""
    users = session.execute(select(accounts.User.username, accounts.User.roles)
                            .where(accounts.User.username.in_(set(owners)), accounts.User.active.is_(True))).all()
    assigned: dict[str, set[str]] = {}
    for username, case_id in session.execute(select(accounts.CaseAssignment.username, accounts.CaseAssignment.case_id)
                                             .where(accounts.CaseAssignment.username.in_([u for u, _ in users]))):
        assigned.setdefault(username, set()).add(case_id)
    found = {}
    for username, roles in users:
        held = frozenset(roles or ())
        cases = (None if SUPERVISOR in held else
                 frozenset(assigned.get(username, ())) if held & set(CASE_DATA_ROLES) else frozenset())
        found[username] = Viewer(held, cases)
    return found


def may_see(session: Session, *, owner: str, case_ids: Sequence[str], watchlist_id: str | None = None) -> bool:
    """Whether the account `owner` may now see an event of these cases (and of that watchlist)."""
    viewer = viewers(session, owners=[owner]).get(owner)
    if viewer is None or not viewer.sees(case_ids, watchlist=watchlist_id is not None):
        return False
    return watchlist_id is None or session.get(Watchlist, watchlist_id) is not None


def existing_watchlists(session: Session, *, ids: Collection[str]) -> set[str]:
    return set(session.scalars(select(Watchlist.id).where(Watchlist.id.in_(set(ids))))) if ids else set()


def get_subscriptions(session: Session, *, ids: Collection[str]) -> dict[str, Subscription]:
    return {s.id: s for s in session.scalars(select(Subscription).where(Subscription.id.in_(set(ids))))}


# --- deliveries ---------------------------------------------------------------------------------------------------


def fan_out(session: Session, *, event_id: int, kind: str, case_ids: Sequence[str], watchlist_ids: Sequence[str],
            at: dt.datetime) -> int:
    """A pending delivery of a new event for every active subscription to one of its cases or watchlists."""
    scope = [Subscription.case_id.in_(case_ids)]
    if watchlist_ids:
        scope.append(Subscription.watchlist_id.in_(watchlist_ids))
    found = session.scalars(select(Subscription).where(Subscription.active.is_(True), or_(*scope))).all()
    wanted = [s for s in found if not s.kinds or kind in s.kinds]
    session.add_all(Delivery(subscription_id=s.id, event_id=event_id, kind=kind, next_attempt_at=at,
                             deadline=at + DELIVERY_WINDOW, created_at=at) for s in wanted)
    session.flush()
    return len(wanted)


@dataclass(frozen=True)
class ClaimedDelivery:
    """A delivery held under the lease `lease` (one per claim), for its attempt number `attempt`."""

    id: int
    subscription_id: str
    event_id: int
    attempt: int
    deadline: dt.datetime
    lease: str


def claim_due(factory: sessionmaker[Session], *, owner: str, now: dt.datetime, lease_seconds: float,
              limit: int, run: int = 1) -> list[ClaimedDelivery]:
    """Lease to `owner` the due head (lowest pending sequence number) of up to `limit` subscriptions, each with up
    to `run - 1` due deliveries that follow it, in one conditional UPDATE (a row another claimer leased in between
    is left out: its lease is not free any more), by subscription and sequence number. Followers are to be sent
    only after their head was delivered (or withheld), one after the other."""
    lease = f"{owner}:{secrets.token_hex(6)}"
    free = or_(Delivery.lease_owner.is_(None), Delivery.lease_expires_at < now)
    with factory() as session, session.begin():
        rank = func.row_number().over(partition_by=Delivery.subscription_id, order_by=Delivery.event_id)
        ranked = (select(Delivery.id, Delivery.subscription_id, Delivery.next_attempt_at, Delivery.lease_owner,
                         Delivery.lease_expires_at, rank.label("rank"))
                  .where(Delivery.state == PENDING).subquery())
        ready = and_(ranked.c.next_attempt_at <= now,
                     or_(ranked.c.lease_owner.is_(None), ranked.c.lease_expires_at < now))
        heads = (select(ranked.c.subscription_id).where(ranked.c.rank == 1, ready)
                 .order_by(ranked.c.next_attempt_at, ranked.c.id).limit(limit))
        rows = session.execute(select(ranked.c.id, ranked.c.subscription_id, ready.label("ready"))
                               .where(ranked.c.rank <= run, ranked.c.subscription_id.in_(heads.scalar_subquery()))
                               .order_by(ranked.c.subscription_id, ranked.c.rank)).all()
        chosen: dict[str, list[int]] = {}
        stopped: set[str] = set()
        for delivery_id, subscription_id, is_ready in rows:  # each subscription's due run, up to a gap
            if not is_ready:
                stopped.add(subscription_id)
            elif subscription_id not in stopped:
                chosen.setdefault(subscription_id, []).append(delivery_id)
        wanted = [delivery_id for ids in chosen.values() for delivery_id in ids]
        if not wanted:
            return []
        session.execute(update(Delivery).where(Delivery.id.in_(wanted), Delivery.state == PENDING, free)
                        .values(lease_owner=lease, lease_expires_at=now + dt.timedelta(seconds=lease_seconds),
                                attempts=Delivery.attempts + 1)
                        .execution_options(synchronize_session=False))
        held = {row.id: row for row in session.execute(
            select(Delivery.id, Delivery.subscription_id, Delivery.event_id, Delivery.attempts, Delivery.deadline)
            .where(Delivery.id.in_(wanted), Delivery.lease_owner == lease))}
        claimed, dropped = [], []
        for ids in chosen.values():  # a run another claimer broke into is cut where it was broken
            cut = next((i for i, delivery_id in enumerate(ids) if delivery_id not in held), len(ids))
            claimed += [held[delivery_id] for delivery_id in ids[:cut]]
            dropped += [delivery_id for delivery_id in ids[cut:] if delivery_id in held]
        if dropped:
            session.execute(update(Delivery).where(Delivery.id.in_(dropped), Delivery.lease_owner == lease)
                            .values(lease_owner=None, lease_expires_at=None, attempts=Delivery.attempts - 1)
                            .execution_options(synchronize_session=False))
    return [ClaimedDelivery(row.id, row.subscription_id, row.event_id, row.attempts, row.deadline, lease)
            for row in claimed]


@dataclass(frozen=True)
class AttemptResult:
    """How an attempt ended: `state` pending (tried again at `next_attempt_at`) or final; `duration_ms` None:
    nothing was sent (withheld), so no attempt is logged."""

    claimed: ClaimedDelivery
    at: dt.datetime
    state: str
    status: int | None
    error: str | None
    duration_ms: float | None
    next_attempt_at: dt.datetime | None = None
    released: bool = False  # not tried (an earlier one of its run failed): the lease is handed back as it was


def record_attempts(session: Session, *, results: Sequence[AttemptResult]) -> list[AttemptResult]:
    """Record each attempt under its lease; those whose lease was lost (taken over) are returned, unrecorded."""
    table = cast(Table, Delivery.__table__)  # plain UPDATEs: no ORM bookkeeping per row
    lost: list[AttemptResult] = []
    logged: list[dict[str, Any]] = []
    for result in results:
        claimed = result.claimed
        values: dict[str, Any] = {"state": result.state, "lease_owner": None, "lease_expires_at": None,
                                  "last_status": result.status, "last_error": result.error}
        if result.released:
            values = {"lease_owner": None, "lease_expires_at": None}
        if result.state == DELIVERED:
            values["delivered_at"] = result.at
        if result.next_attempt_at is not None:
            values["next_attempt_at"] = result.next_attempt_at
        if result.duration_ms is None or result.released:
            values["attempts"] = claimed.attempt - 1
        done = session.execute(update(table).where(table.c.id == claimed.id, table.c.lease_owner == claimed.lease,
                                                   table.c.state == PENDING).values(**values))
        if done.rowcount != 1:  # type: ignore[attr-defined]
            lost.append(result)
        elif result.duration_ms is not None and not result.released:
            logged.append({"delivery_id": claimed.id, "number": claimed.attempt, "at": result.at,
                           "status": result.status, "error": result.error, "duration_ms": result.duration_ms})
    if logged:
        session.execute(insert(DeliveryAttempt), logged)
    return lost


def deliveries_of(session: Session, *, subscription_id: str, state: str | None = None, offset: int = 0,
                  limit: int = 100) -> Sequence[Delivery]:
    """The subscription's delivery log, by sequence number."""
    query = select(Delivery).where(Delivery.subscription_id == subscription_id)
    if state is not None:
        query = query.where(Delivery.state == state)
    return session.scalars(query.order_by(Delivery.event_id).offset(offset).limit(limit)).all()


def get_delivery(session: Session, *, subscription_id: str, delivery_id: int) -> Delivery | None:
    delivery = session.get(Delivery, delivery_id)
    return delivery if delivery is not None and delivery.subscription_id == subscription_id else None


def attempts_of(session: Session, *, delivery_id: int) -> Sequence[DeliveryAttempt]:
    return session.scalars(select(DeliveryAttempt).where(DeliveryAttempt.delivery_id == delivery_id)
                           .order_by(DeliveryAttempt.number, DeliveryAttempt.id)).all()


def replay(session: Session, *, subscription_id: str, first: int, last: int, now: dt.datetime) -> int:
    """Send again the subscription's finished deliveries of sequence numbers `first`..`last` (each pending, with a
    new 24-hour window); those pending already are left as they are. How many were queued again."""
    result = session.execute(
        update(Delivery).where(Delivery.subscription_id == subscription_id, Delivery.event_id >= first,
                               Delivery.event_id <= last, Delivery.state != PENDING)
        .values(state=PENDING, next_attempt_at=now, deadline=now + DELIVERY_WINDOW, lease_owner=None,
                lease_expires_at=None, replays=Delivery.replays + 1))
    return int(result.rowcount)  # type: ignore[attr-defined]
