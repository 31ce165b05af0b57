"""The vehicle register: create, read, update, set a status (kept in history), lookup by plate or by status.

A vehicle's plate, make, model, colour and status are read without a purpose; its owner's national number only
with a stated purpose (then noted for the audit log), else withheld. Writes are for supervisors and case
systems; a write answers the owner it wrote, any other only with a stated purpose (a change is no way round
the purpose rule). The rules are in `api.routes.registers`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.access import note_persons
from api.deps import SessionDep
from api.problems import Problem
from api.routes.registers import Limit, OptionalPurpose, Reader, RecordId, Writer, note_resource
from api.schemas.registers import (
    VehicleCreate,
    VehicleRead,
    VehicleStatus,
    VehicleStatusRead,
    VehicleStatusUpdate,
    VehicleUpdate,
)
from storage import vehicles
from storage.identifiers import plate_key
from storage.registers import MAX_NAME_CHARS, RowError, text
from storage.vehicles import Vehicle, VehicleRow

router = APIRouter(prefix="/vehicles", tags=["registers"])


def vehicle_read(vehicle: Vehicle, *, show_owner: bool) -> VehicleRead:
    """The vehicle as answered: its owner's national number only when `show_owner` (else withheld)."""
    read = VehicleRead.model_validate(vehicle)
    if show_owner or read.owner_national_number is None:
        return read
    return read.model_copy(update={"owner_national_number": None, "owner_withheld": True})


def answered(request: Request, found: Sequence[Vehicle], *, show_owner: bool) -> list[VehicleRead]:
    """The vehicles as answered; the owners shown are noted for the audit log."""
    if show_owner:
        note_persons(request, [v.owner_national_number for v in found if v.owner_national_number])
    return [vehicle_read(vehicle, show_owner=show_owner) for vehicle in found]


def _parse(fields: dict[str, Any]) -> VehicleRow:
    text = {name: (value.isoformat() if isinstance(value, dt.date) else value) for name, value in fields.items()}
    try:
        return vehicles.parse_vehicle(text)
    except RowError as exc:
        raise Problem(422, "Invalid vehicle", str(exc)) from None


def _load(request: Request, session: Session, vehicle_id: str) -> Vehicle:
    vehicle = vehicles.get_vehicle(session, vehicle_id=vehicle_id)
    if vehicle is None:
        raise Problem(404, "Vehicle not found", f"There is no vehicle {vehicle_id} in the register.")
    note_resource(request, vehicle.id)
    return vehicle


@router.post("", status_code=status.HTTP_201_CREATED, response_model=VehicleRead,
             responses={409: {"description": "the plate is registered already in that country"}})
def create_vehicle(request: Request, body: VehicleCreate, session: SessionDep, principal: Writer) -> VehicleRead:
    """Register a vehicle; a status other than "none" needs the authority and the date that set it."""
    row = _parse(body.model_dump())
    if vehicles.vehicles_by_plate_keys(session, keys=[row.plate_key], country=row.country):
        raise Problem(409, "Vehicle exists", f"Plate {row.plate!r} is registered already in {row.country}.")
    try:
        vehicle, _ = vehicles.put_vehicle(session, row=row, recorded_by=principal.name)
    except IntegrityError:  # registered by a concurrent request between the check and the insert
        raise Problem(409, "Vehicle exists", f"Plate {row.plate!r} is registered already in {row.country}.") \
            from None
    note_resource(request, vehicle.id)
    return answered(request, [vehicle], show_owner=True)[0]


@router.get("", response_model=list[VehicleRead])
def lookup_vehicles(
        request: Request, session: SessionDep, principal: Reader, purpose: OptionalPurpose,
        plate: Annotated[str | None, Query(min_length=1, max_length=32,
                                           description="any way of writing it: '1-abc-234' finds 1ABC234")] = None,
        country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
        status_: Annotated[VehicleStatus | None, Query(alias="status")] = None,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0, limit: Limit = 100) -> list[VehicleRead]:
    """Vehicles by plate (its key: letters and digits, upper case), or by status (most recently set first).
    Owners are shown only with a stated purpose."""
    if (plate is None) == (status_ is None):
        raise Problem(422, "One lookup at a time", "Give exactly one of plate and status.")
    if plate is not None:
        if not plate_key(plate):
            raise Problem(422, "Invalid plate", "The plate has no letters or digits.")
        found = vehicles.vehicles_by_plate(session, plate=plate, country=country)
    else:
        assert status_ is not None
        found = vehicles.vehicles_with_status(session, status=status_, offset=offset, limit=limit)
    return answered(request, found, show_owner=purpose is not None)


@router.get("/{vehicle_id}", response_model=VehicleRead)
def get_vehicle(request: Request, vehicle_id: RecordId, session: SessionDep, principal: Reader,
                purpose: OptionalPurpose) -> VehicleRead:
    return answered(request, [_load(request, session, vehicle_id)], show_owner=purpose is not None)[0]


@router.patch("/{vehicle_id}", response_model=VehicleRead)
def update_vehicle(request: Request, vehicle_id: RecordId, body: VehicleUpdate, session: SessionDep,
                   principal: Writer, purpose: OptionalPurpose) -> VehicleRead:
    """Change make, model, colour or owner (plate and country are the key; the status has its own route). The
    owner is answered when this change wrote it, or with a stated purpose (else withheld, as for a read)."""
    vehicle = _load(request, session, vehicle_id)
    current = vehicles.row_of(vehicle)
    fields: dict[str, Any] = {name: getattr(current, name) for name in vehicles.VEHICLE_FIELDS}
    fields.update({name: getattr(body, name) for name in body.model_fields_set})
    vehicle, _ = vehicles.put_vehicle(session, row=_parse(fields), recorded_by=principal.name)
    supplied = "owner_national_number" in body.model_fields_set
    return answered(request, [vehicle], show_owner=supplied or purpose is not None)[0]


@router.put("/{vehicle_id}/status", response_model=VehicleRead)
def set_status(request: Request, vehicle_id: RecordId, body: VehicleStatusUpdate, session: SessionDep,
               principal: Writer, purpose: OptionalPurpose) -> VehicleRead:
    """Give the vehicle a status: stolen, wanted or signalled need the authority and the date that set it;
    "none" clears it. Every change is kept in the vehicle's status history. The owner is answered only with a
    stated purpose."""
    vehicle = _load(request, session, vehicle_id)
    if body.status_date is not None and body.status_date > dt.date.today():
        raise Problem(422, "Invalid status", f"status_date {body.status_date} is in the future.")
    try:
        authority = text({"authority": body.authority}, "authority", max_chars=MAX_NAME_CHARS) or None
        vehicles.set_vehicle_status(session, vehicle=vehicle, status=body.status, authority=authority,
                                    status_date=body.status_date, recorded_by=principal.name)
    except RowError as exc:
        raise Problem(422, "Invalid status", str(exc)) from None
    return answered(request, [vehicle], show_owner=purpose is not None)[0]


@router.get("/{vehicle_id}/status-history", response_model=list[VehicleStatusRead])
def status_history(request: Request, vehicle_id: RecordId, session: SessionDep,
                   principal: Reader) -> list[VehicleStatusRead]:
    """The statuses the vehicle was given, oldest first, with the authority, the date and who recorded them."""
    vehicle = _load(request, session, vehicle_id)
    return [VehicleStatusRead.model_validate(change)
            for change in vehicles.status_history(session, vehicle_id=vehicle.id)]
