"""Request and response models of the fingerprint gallery (tenprint records of registered persons).

The vocabularies are the gallery's own (`storage.tenprints`): finger positions 1-10 (`FINGER_POSITIONS`) and the
impression types (`IMPRESSIONS`); an unknown field, a finger out of range or another impression is a 422.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.registers import StrictModel
from storage.tenprints import FINGER_POSITIONS

Impression = Literal["rolled", "plain", "latent"]  # storage.tenprints.IMPRESSIONS


class TenprintEnrol(StrictModel):
    """Which finger of the person the print is (ISO/IEC 19794-2 and ANSI/NIST-ITL codes) and how it was taken."""

    finger: int = Field(ge=min(FINGER_POSITIONS), le=max(FINGER_POSITIONS),
                        description="1 right thumb ... 5 right little, 6 left thumb ... 10 left little")
    impression: Impression


class TenprintRead(BaseModel):
    """A tenprint record. The print's evidence id and case are named only to a reader who may see its case
    (`evidence_withheld` says when they are not)."""

    id: str
    person_id: str
    finger: int
    finger_name: str
    impression: str
    nfiq2: int | None
    minutiae: int  # how many minutiae the template holds (the minutiae themselves are never shown here)
    evidence_id: str | None
    case_id: str | None
    evidence_withheld: bool = False
    enrolled_by: str
    enrolled_at: dt.datetime


class GalleryRead(BaseModel):
    """The size of the fingerprint gallery: the templates held for matching (prints of every case, enrolled or
    not), the tenprint records and the persons they belong to."""

    templates: int
    newest_template_id: int  # changes whenever a template is added or replaced (0: none held)
    records: int
    persons: int
