"""Request and response models of the registers (persons, vehicles, watchlists) and of their bulk import.

A record's fields are checked by its register (`storage.persons.parse_person`, `storage.vehicles.parse_vehicle`),
the same code a bulk import uses; these models only bound their sizes and refuse unknown fields, so a typo in a
field name is a 422, never a silently ignored value.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.schemas.base import ReadModel
from storage.registers import MAX_NAME_CHARS, MAX_SHORT_TEXT_CHARS

VehicleStatus = Literal["none", "stolen", "wanted", "signalled"]  # storage.vehicles.VEHICLE_STATUSES


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PersonCreate(StrictModel):
    """A new person: the national number (with or without separators) and the family name are required."""

    national_number: str = Field(min_length=1, max_length=32)
    family_name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    given_names: str = Field(default="", max_length=MAX_NAME_CHARS)
    date_of_birth: dt.date | None = None  # taken from the national number when it fixes one
    nationality: str | None = Field(default=None, max_length=32)  # ISO 3166-1 alpha-2


class PersonUpdate(StrictModel):
    """Fields to change; those left out stay as they are (the national number is the key: never changed)."""

    family_name: str | None = Field(default=None, min_length=1, max_length=MAX_NAME_CHARS)
    given_names: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    date_of_birth: dt.date | None = None
    nationality: str | None = Field(default=None, max_length=32)


class PersonRead(ReadModel):
    id: str
    national_number: str
    family_name: str
    given_names: str
    date_of_birth: dt.date | None
    nationality: str | None
    photos: list[str] = []  # evidence ids of the reference photos
    created_at: dt.datetime
    updated_at: dt.datetime


class PhotoLink(BaseModel):
    person_id: str
    evidence_id: str
    linked: bool  # False when the item already was (PUT) or was not (DELETE) a reference photo


class VehicleCreate(StrictModel):
    """A new vehicle: plate and country are required; a status other than "none" needs its authority and date."""

    plate: str = Field(min_length=1, max_length=32)
    country: str = Field(min_length=1, max_length=32)
    make: str = Field(default="", max_length=MAX_SHORT_TEXT_CHARS)
    model: str = Field(default="", max_length=MAX_SHORT_TEXT_CHARS)
    colour: str = Field(default="", max_length=MAX_SHORT_TEXT_CHARS)
    owner_national_number: str | None = Field(default=None, max_length=32)
    status: VehicleStatus = "none"
    status_authority: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    status_date: dt.date | None = None


class VehicleUpdate(StrictModel):
    """Fields to change (plate and country are the key; the status has its own route, which keeps history)."""

    make: str | None = Field(default=None, max_length=MAX_SHORT_TEXT_CHARS)
    model: str | None = Field(default=None, max_length=MAX_SHORT_TEXT_CHARS)
    colour: str | None = Field(default=None, max_length=MAX_SHORT_TEXT_CHARS)
    owner_national_number: str | None = Field(default=None, max_length=32)  # null removes the owner


class VehicleStatusUpdate(StrictModel):
    status: VehicleStatus
    authority: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    status_date: dt.date | None = None


class VehicleRead(ReadModel):
    """A vehicle; its owner's national number only with a stated purpose (`owner_withheld` says when it is not)."""

    id: str
    plate: str
    plate_key: str
    country: str
    make: str
    model: str
    colour: str
    owner_national_number: str | None
    owner_withheld: bool = False
    status: str
    status_authority: str | None
    status_date: dt.date | None
    created_at: dt.datetime
    updated_at: dt.datetime


class VehicleStatusRead(ReadModel):
    status: str
    authority: str | None
    status_date: dt.date | None
    recorded_at: dt.datetime
    recorded_by: str


class WatchlistCreate(StrictModel):
    name: str = Field(min_length=1, max_length=MAX_NAME_CHARS)
    purpose: str = Field(min_length=1, max_length=10_000)
    owner: str = Field(min_length=1, max_length=200)  # the account answerable for the list
    expires_at: AwareDatetime


class WatchlistRead(ReadModel):
    id: str
    name: str
    purpose: str
    owner: str
    expires_at: dt.datetime
    created_at: dt.datetime
    created_by: str
    active: bool = True


class MembersAdd(StrictModel):
    person_ids: list[str] = Field(min_length=1, max_length=1000)


class MembersAdded(BaseModel):
    watchlist_id: str
    added: int


class RejectionRead(BaseModel):
    line: int
    reason: str


class ImportResult(BaseModel):
    """What an import did: every record read was added, updated, unchanged or rejected."""

    model_config = ConfigDict(populate_by_name=True)

    register_: str = Field(alias="register")  # "persons" or "vehicles" ("register" is taken by pydantic)
    file_name: str
    format: str
    sha256: str
    bytes: int
    rows: int
    added: int
    updated: int
    unchanged: int
    rejected: int
    rejections: list[RejectionRead]  # the first ones, with their line numbers
    audit_id: int | None
