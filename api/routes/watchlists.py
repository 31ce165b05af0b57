"""Face watchlists: create (name, purpose, owner, expiry), list, add and remove members, read members.

A watchlist's name, purpose, owner and expiry name no one and are read without a purpose; its members are
persons, read only with a stated purpose and noted for the audit log. Only a supervisor makes or changes a
watchlist. The rules are in `api.routes.registers`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.access import note_persons
from api.deps import PurposeDep, SessionDep
from api.problems import Problem
from api.routes.persons import shown
from api.routes.registers import Limit, Offset, Reader, RecordId, WatchlistKeeper, note_resource
from api.schemas.registers import MembersAdd, MembersAdded, PersonRead, WatchlistCreate, WatchlistRead
from storage import persons, watchlists
from storage.registers import CONTROL_CHARACTERS
from storage.tables import utcnow
from storage.watchlists import Watchlist, WatchlistError

router = APIRouter(prefix="/watchlists", tags=["registers"])


def _read(watchlist: Watchlist) -> WatchlistRead:
    return WatchlistRead.model_validate(watchlist).model_copy(update={"active": watchlist.expires_at > utcnow()})


def _load(request: Request, session: Session, watchlist_id: str) -> Watchlist:
    watchlist = watchlists.get_watchlist(session, watchlist_id=watchlist_id)
    if watchlist is None:
        raise Problem(404, "Watchlist not found", f"There is no watchlist {watchlist_id}.")
    note_resource(request, watchlist.id)
    return watchlist


def _note_members(request: Request, session: Session, person_ids: list[str]) -> None:
    """Note the persons a membership change concerns (by national number) for the audit log."""
    found = (persons.get_person_by_id(session, person_id=person_id) for person_id in dict.fromkeys(person_ids))
    note_persons(request, [person.national_number for person in found if person is not None])


def _check_text(body: WatchlistCreate) -> None:
    """Refuse control characters in the name and the owner (one line each), and a NUL in the purpose."""
    for name in ("name", "owner"):
        if CONTROL_CHARACTERS.search(getattr(body, name)):
            raise Problem(422, "Invalid watchlist", f"{name} contains control characters")
    if "\x00" in body.purpose:
        raise Problem(422, "Invalid watchlist", "purpose contains a NUL character")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WatchlistRead,
             responses={409: {"description": "a watchlist of that name exists"}})
def create_watchlist(request: Request, body: WatchlistCreate, session: SessionDep,
                     principal: WatchlistKeeper) -> WatchlistRead:
    """A new watchlist: its name must be free, its purpose stated and its expiry in the future."""
    _check_text(body)
    taken = Problem(409, "Watchlist exists", f"A watchlist named {body.name.strip()!r} exists already.")
    if session.scalar(select(Watchlist.id).where(Watchlist.name == body.name.strip())) is not None:
        raise taken
    try:
        watchlist = watchlists.create_watchlist(session, name=body.name, purpose=body.purpose, owner=body.owner,
                                                expires_at=body.expires_at, created_by=principal.name)
    except WatchlistError as exc:
        raise Problem(422, "Invalid watchlist", str(exc)) from None
    except IntegrityError:  # made by a concurrent request between the check and the insert
        raise taken from None
    note_resource(request, watchlist.id)
    return _read(watchlist)


@router.get("", response_model=list[WatchlistRead])
def list_watchlists(session: SessionDep, principal: Reader,
                    active: Annotated[bool, Query(description="only those in force (not expired)")] = True,
                    offset: Offset = 0, limit: Limit = 100) -> list[WatchlistRead]:
    """The watchlists in force (or, with active=false, every one, expired ones included), by name."""
    found = (watchlists.active_watchlists(session, now=utcnow())[offset:offset + limit] if active
             else watchlists.list_watchlists(session, offset=offset, limit=limit))
    return [_read(watchlist) for watchlist in found]


@router.get("/{watchlist_id}", response_model=WatchlistRead)
def get_watchlist(request: Request, watchlist_id: RecordId, session: SessionDep,
                  principal: Reader) -> WatchlistRead:
    return _read(_load(request, session, watchlist_id))


@router.get("/{watchlist_id}/members", response_model=list[PersonRead])
def watchlist_members(request: Request, watchlist_id: RecordId, session: SessionDep, principal: Reader,
                      purpose: PurposeDep) -> list[PersonRead]:
    """The persons on the watchlist, by family name; needs a stated purpose."""
    watchlist = _load(request, session, watchlist_id)
    return shown(request, session, watchlists.members(session, watchlist_id=watchlist.id))


@router.post("/{watchlist_id}/members", response_model=MembersAdded)
def add_members(request: Request, watchlist_id: RecordId, body: MembersAdd, session: SessionDep,
                principal: WatchlistKeeper) -> MembersAdded:
    """Put registered persons (by id) on the watchlist; those on it already are left as they are."""
    watchlist = _load(request, session, watchlist_id)
    if malformed := [person_id for person_id in body.person_ids if not person_id.isprintable()]:
        raise Problem(422, "Unknown persons", f"{malformed[0]!r} is not a person id.")
    try:
        added = watchlists.add_members(session, watchlist=watchlist, person_ids=body.person_ids,
                                       added_by=principal.name)
    except WatchlistError as exc:
        raise Problem(422, "Unknown persons", str(exc)) from None
    _note_members(request, session, body.person_ids)
    return MembersAdded(watchlist_id=watchlist.id, added=added)


@router.delete("/{watchlist_id}/members/{person_id}", status_code=status.HTTP_204_NO_CONTENT)
def remove_member(request: Request, watchlist_id: RecordId, person_id: RecordId, session: SessionDep,
                  principal: WatchlistKeeper) -> Response:
    """Take the person off the watchlist (404 when they were not on it)."""
    watchlist = _load(request, session, watchlist_id)
    _note_members(request, session, [person_id])
    if not watchlists.remove_member(session, watchlist=watchlist, person_id=person_id):
        raise Problem(404, "Not a member", f"Person {person_id} is not on watchlist {watchlist.id}.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
