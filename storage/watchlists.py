"""Face watchlists: named lists of registered persons, each with a purpose, an owner and an expiry date.

A watchlist is used for matching only while it is in force (`active_watchlists`): an expired list is kept (its
existence and its use are part of the record) but no face is matched against it any more. Membership is by
person id; removing a person from the register removes their memberships.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import ForeignKey, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.persons import Person
from storage.registers import MAX_NAME_CHARS
from storage.tables import Base, new_id, utcnow


class WatchlistError(ValueError):
    """A watchlist that cannot be made or changed as asked (the message says why)."""


class Watchlist(Base):
    """A named list of persons whose faces are looked for, for a stated purpose, until it expires."""

    __tablename__ = "watchlists"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    purpose: Mapped[str] = mapped_column(Text)
    owner: Mapped[str] = mapped_column(String(200))  # the account answerable for the list
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class WatchlistMember(Base):
    """One person on one watchlist."""

    __tablename__ = "watchlist_members"

    watchlist_id: Mapped[str] = mapped_column(ForeignKey("watchlists.id", ondelete="CASCADE"), primary_key=True)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True,
                                           index=True)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    added_by: Mapped[str] = mapped_column(String(200))


def create_watchlist(session: Session, *, name: str, purpose: str, owner: str, expires_at: dt.datetime,
                     created_by: str, now: dt.datetime | None = None) -> Watchlist:
    """A new watchlist; its name must be free, its purpose stated and its expiry in the future."""
    name, purpose = name.strip(), purpose.strip()
    if not name or not purpose or not owner.strip():
        raise WatchlistError("a watchlist needs a name, a purpose and an owner")
    if expires_at.tzinfo is None:
        raise WatchlistError("the expiry must carry a time zone (UTC)")
    if expires_at <= (now or utcnow()):
        raise WatchlistError("the expiry must be in the future")
    if session.scalar(select(Watchlist.id).where(Watchlist.name == name)) is not None:
        raise WatchlistError(f"a watchlist named {name!r} exists already")
    watchlist = Watchlist(name=name, purpose=purpose, owner=owner.strip(), expires_at=expires_at,
                          created_by=created_by)
    session.add(watchlist)
    session.flush()
    return watchlist


def get_watchlist(session: Session, *, watchlist_id: str) -> Watchlist | None:
    return session.get(Watchlist, watchlist_id)


def list_watchlists(session: Session, *, offset: int = 0, limit: int = 100) -> Sequence[Watchlist]:
    """Every watchlist, expired ones included, by name."""
    return session.scalars(select(Watchlist).order_by(Watchlist.name).offset(offset).limit(limit)).all()


def active_watchlists(session: Session, *, now: dt.datetime) -> Sequence[Watchlist]:
    """The watchlists in force at `now` (not yet expired): the only ones faces are matched against."""
    return session.scalars(select(Watchlist).where(Watchlist.expires_at > now).order_by(Watchlist.name)).all()


def active_watchlists_of(session: Session, *, person_id: str, now: dt.datetime) -> Sequence[Watchlist]:
    """The watchlists in force at `now` that the person is on."""
    return session.scalars(select(Watchlist).join(WatchlistMember, WatchlistMember.watchlist_id == Watchlist.id)
                           .where(WatchlistMember.person_id == person_id, Watchlist.expires_at > now)
                           .order_by(Watchlist.name)).all()


def add_members(session: Session, *, watchlist: Watchlist, person_ids: Sequence[str], added_by: str) -> int:
    """Put the persons on the watchlist (those already on it are left as they are); how many were added."""
    wanted = sorted(set(person_ids))
    known = set(session.scalars(select(Person.id).where(Person.id.in_(wanted))))
    unknown = [person_id for person_id in wanted if person_id not in known]
    if unknown:
        raise WatchlistError(f"not in the persons register: {', '.join(unknown[:5])}")
    present = set(session.scalars(select(WatchlistMember.person_id).where(
        WatchlistMember.watchlist_id == watchlist.id, WatchlistMember.person_id.in_(wanted))))
    added = [person_id for person_id in wanted if person_id not in present]
    session.add_all(WatchlistMember(watchlist_id=watchlist.id, person_id=person_id, added_by=added_by)
                    for person_id in added)
    session.flush()
    return len(added)


def remove_member(session: Session, *, watchlist: Watchlist, person_id: str) -> bool:
    """Take the person off the watchlist; False when they were not on it."""
    member = session.get(WatchlistMember, (watchlist.id, person_id))
    if member is None:
        return False
    session.delete(member)
    session.flush()
    return True


def members(session: Session, *, watchlist_id: str) -> Sequence[Person]:
    """The persons on the watchlist, by family name."""
    return session.scalars(select(Person).join(WatchlistMember, WatchlistMember.person_id == Person.id)
                           .where(WatchlistMember.watchlist_id == watchlist_id)
                           .order_by(Person.family_folded, Person.given_folded, Person.id)).all()
