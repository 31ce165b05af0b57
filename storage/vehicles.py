"""The vehicle register: vehicles by plate and country, their status and its history (keyword-only access).

The natural key is the plate key (`storage.identifiers.plate_key`: letters and digits, upper case) with the
registration country; the plate as registered is kept too. A vehicle's status is one of VEHICLE_STATUSES, with
the authority and the date that set it; every change of status (and a first status other than "none") is kept
in `vehicle_status_history`. The plate matcher reads plates with `workers.plate_formats` and asks the register
for the keys it finds (`vehicles_by_plate_keys`), the OCR-tolerant candidates included. A vehicle added, or whose
plate or status changes, is re-matched with older evidence (`storage.rematch`: one job, run later).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Date, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.identifiers import national_number_digits, parse_national_number, plate_key
from storage.registers import MAX_NAME_CHARS, RowError, country_field, date_field, text
from storage.rematch import queue_rematch
from storage.tables import Base, new_id, utcnow

VEHICLE_STATUSES = ("none", "stolen", "wanted", "signalled")
VEHICLE_FIELDS = ("plate", "country", "make", "model", "colour", "owner_national_number", "status",
                  "status_authority", "status_date")
VEHICLE_REQUIRED = ("plate", "country")
MAX_PLATE_CHARS = 32


class Vehicle(Base):
    """One registered vehicle."""

    __tablename__ = "vehicles"
    __table_args__ = (UniqueConstraint("plate_key", "country", name="uq_vehicles_plate_key_country"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    plate: Mapped[str] = mapped_column(String(MAX_PLATE_CHARS))  # as registered ("1-ABC-234")
    plate_key: Mapped[str] = mapped_column(String(MAX_PLATE_CHARS), index=True)  # "1ABC234"
    country: Mapped[str] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    make: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    colour: Mapped[str] = mapped_column(String(100), default="")
    owner_national_number: Mapped[str | None] = mapped_column(String(11), index=True)
    status: Mapped[str] = mapped_column(String(20), default="none")  # one of VEHICLE_STATUSES
    status_authority: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS))
    status_date: Mapped[dt.date | None] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class VehicleStatusChange(Base):
    """One status a vehicle was given, by whom and when; appended, never changed."""

    __tablename__ = "vehicle_status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    vehicle_id: Mapped[str] = mapped_column(ForeignKey("vehicles.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    authority: Mapped[str | None] = mapped_column(String(MAX_NAME_CHARS))
    status_date: Mapped[dt.date | None] = mapped_column(Date)
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    recorded_by: Mapped[str] = mapped_column(String(200))  # "cli:alice", "import <sha256 prefix>", an account


@dataclass(frozen=True)
class VehicleRow:
    """One validated vehicle record, as the register keeps it."""

    plate: str
    plate_key: str
    country: str
    make: str
    model: str
    colour: str
    owner_national_number: str | None
    status: str
    status_authority: str | None
    status_date: dt.date | None

    @property
    def key(self) -> tuple[str, str]:
        return self.plate_key, self.country

    @property
    def status_fields(self) -> tuple[str, str | None, dt.date | None]:
        return self.status, self.status_authority, self.status_date

    def values(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in ROW_COLUMNS}


ROW_COLUMNS = tuple(VehicleRow.__dataclass_fields__)


def parse_vehicle(fields: Mapping[str, str | None], *, today: dt.date | None = None) -> VehicleRow:
    """A vehicle record from text fields (names as in VEHICLE_FIELDS), or RowError with the reason."""
    today = today or dt.date.today()
    plate = text(fields, "plate", required=True, max_chars=MAX_PLATE_CHARS)
    key = plate_key(plate)
    if not key:
        raise RowError(f"plate {plate!r} has no letters or digits")
    country = country_field(fields, "country", required=True)
    owner_raw = text(fields, "owner_national_number", max_chars=32)
    owner = national_number_digits(owner_raw) if owner_raw else None
    if owner is not None and parse_national_number(owner, today) is None:
        raise RowError(f"owner_national_number {owner_raw!r} is not a valid national number")
    status = text(fields, "status", max_chars=32).lower() or "none"
    if status not in VEHICLE_STATUSES:
        raise RowError(f"status {status!r} is not one of {', '.join(VEHICLE_STATUSES)}")
    authority = text(fields, "status_authority", max_chars=MAX_NAME_CHARS) or None
    since = date_field(fields, "status_date", today=today)
    if status != "none" and (authority is None or since is None):
        raise RowError(f"status {status!r} needs the status_authority and the status_date that set it")
    return VehicleRow(plate=plate, plate_key=key, country=str(country), make=text(fields, "make"),
                      model=text(fields, "model"), colour=text(fields, "colour"), owner_national_number=owner,
                      status=status, status_authority=authority, status_date=since)


def row_of(vehicle: Vehicle) -> VehicleRow:
    """The register's row of `vehicle`, to compare with an incoming one."""
    return VehicleRow(**{name: getattr(vehicle, name) for name in ROW_COLUMNS})


def history_entry(*, vehicle_id: str, row: VehicleRow, recorded_by: str) -> dict[str, object]:
    """The values of a status-history row for `row`'s status."""
    return {"vehicle_id": vehicle_id, "status": row.status, "authority": row.status_authority,
            "status_date": row.status_date, "recorded_at": utcnow(), "recorded_by": recorded_by}


def put_vehicle(session: Session, *, row: VehicleRow, recorded_by: str) -> tuple[Vehicle, str]:
    """Add the vehicle or bring the record up to `row` (a new status goes to the history); the record and what
    happened: "added", "updated" or "unchanged"."""
    vehicle = session.scalar(select(Vehicle).where(Vehicle.plate_key == row.plate_key,
                                                   Vehicle.country == row.country))
    if vehicle is None:
        vehicle = Vehicle(**row.values())
        session.add(vehicle)
        session.flush()
        if row.status != "none":
            session.add(VehicleStatusChange(**history_entry(vehicle_id=vehicle.id, row=row, recorded_by=recorded_by)))
        queue_rematch(session, target_kind="vehicle", target_ids=[vehicle.id], reason="added")
        return vehicle, "added"
    before = row_of(vehicle)
    if before == row:
        return vehicle, "unchanged"
    for name, value in row.values().items():
        setattr(vehicle, name, value)
    vehicle.updated_at = utcnow()
    if before.status_fields != row.status_fields:
        session.add(VehicleStatusChange(**history_entry(vehicle_id=vehicle.id, row=row, recorded_by=recorded_by)))
    session.flush()
    if (before.plate, before.status) != (row.plate, row.status):
        queue_rematch(session, target_kind="vehicle", target_ids=[vehicle.id],
                      reason=f"changed:{row.status}:{vehicle.updated_at.isoformat()}")
    return vehicle, "updated"


def set_vehicle_status(session: Session, *, vehicle: Vehicle, status: str, authority: str | None,
                       status_date: dt.date | None, recorded_by: str) -> None:
    """Give the vehicle a status (one of VEHICLE_STATUSES) set by `authority` on `status_date`; kept in history."""
    if status not in VEHICLE_STATUSES:
        raise RowError(f"status {status!r} is not one of {', '.join(VEHICLE_STATUSES)}")
    if status != "none" and (authority is None or status_date is None):
        raise RowError(f"status {status!r} needs the authority and the date that set it")
    row = replace(row_of(vehicle), status=status, status_authority=authority, status_date=status_date)
    put_vehicle(session, row=row, recorded_by=recorded_by)


def get_vehicle(session: Session, *, vehicle_id: str) -> Vehicle | None:
    return session.get(Vehicle, vehicle_id)


def vehicles_by_plate(session: Session, *, plate: str, country: str | None = None) -> Sequence[Vehicle]:
    """The vehicles registered under this plate (any way of writing it), in `country` when given."""
    return vehicles_by_plate_keys(session, keys=[plate_key(plate)], country=country)


def vehicles_by_plate_keys(session: Session, *, keys: Sequence[str], country: str | None = None) -> Sequence[Vehicle]:
    """The vehicles whose plate key is one of `keys` (e.g. a reading and its OCR-tolerant alternatives)."""
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return []
    query = select(Vehicle).where(Vehicle.plate_key.in_(wanted))
    if country is not None:
        query = query.where(Vehicle.country == country.upper())
    return session.scalars(query.order_by(Vehicle.plate_key, Vehicle.country)).all()


def vehicles_of_owner(session: Session, *, national_number: str) -> Sequence[Vehicle]:
    return session.scalars(select(Vehicle).where(
        Vehicle.owner_national_number == national_number_digits(national_number))
        .order_by(Vehicle.plate_key, Vehicle.country)).all()


def vehicles_with_status(session: Session, *, status: str, offset: int = 0, limit: int = 500) -> Sequence[Vehicle]:
    """Vehicles currently stolen, wanted or signalled (or "none"), most recently set first."""
    return session.scalars(select(Vehicle).where(Vehicle.status == status)
                           .order_by(Vehicle.status_date.desc(), Vehicle.id).offset(offset).limit(limit)).all()


def status_history(session: Session, *, vehicle_id: str) -> Sequence[VehicleStatusChange]:
    """The statuses the vehicle was given, oldest first."""
    return session.scalars(select(VehicleStatusChange).where(VehicleStatusChange.vehicle_id == vehicle_id)
                           .order_by(VehicleStatusChange.id)).all()
