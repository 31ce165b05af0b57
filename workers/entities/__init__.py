"""Entity extraction from OCR'd or extracted text: pure Python, no I/O.

`extract_entities(text)` finds Belgian national register numbers, licence plates, telephone numbers, IBANs,
e-mail addresses and dates, each as an `Entity` with its normalised value, the text as found, its character
offsets, a confidence and the family's details. One module per family holds its rules and false-positive
guards; this module runs them all and settles overlaps.

Overlaps: every family is found independently, then entities are kept in PRECEDENCE order, each only where
it overlaps no entity kept before it. A stricter, check-digit-validated family wins over a looser one: an
IBAN's digits never come out as a phone number or a national number, a national number never as a date or a
phone number, a date never as a phone number. Entities of different kinds never share characters. Phone
numbers are looked for last, in the text with the other entities masked out.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import date

from workers.entities.dates import find_dates
from workers.entities.emails import find_emails
from workers.entities.iban import find_ibans
from workers.entities.model import KINDS, Entity
from workers.entities.national_number import find_national_numbers
from workers.entities.phones import find_phones
from workers.entities.plates import find_plates

__all__ = ["KINDS", "PRECEDENCE", "Entity", "extract_entities"]

PRECEDENCE = ("iban", "email", "national_number", "date", "plate", "phone")
MASK = "|"  # neither a digit nor a separator the phone matcher reads inside a number


def _settle(entities: list[Entity]) -> list[Entity]:
    """Keep entities in PRECEDENCE order where they overlap nothing kept; the result sorted by start."""
    rank = {kind: index for index, kind in enumerate(PRECEDENCE)}
    kept: list[Entity] = []  # sorted by start, non-overlapping
    starts: list[int] = []
    for entity in sorted(entities, key=lambda e: (rank[e.kind], e.start, e.start - e.end)):
        index = bisect_left(starts, entity.start)
        if index > 0 and kept[index - 1].end > entity.start:
            continue
        if index < len(kept) and kept[index].start < entity.end:
            continue
        kept.insert(index, entity)
        starts.insert(index, entity.start)
    return kept


def extract_entities(text: str, *, default_region: str | None = "BE", language: str | None = None,
                     today: date | None = None) -> list[Entity]:
    """The entities in `text`, sorted by start offset, no two sharing characters.

    `default_region` (ISO 3166 alpha-2, or None for international numbers only) is where nationally written
    telephone numbers are read; `language` (ISO 639-1 or 639-2: "nl", "fra", "deu", "eng"...) names the
    month names' language when a spelling is shared and, for English, allows US month-first dates where the
    day-first reading is impossible; `today` (default: the current date) bounds birth dates and sets the
    two-digit-year pivot.
    """
    found = _settle(find_ibans(text) + find_emails(text) + find_national_numbers(text, today)
                    + find_dates(text, language, today) + find_plates(text))
    return _settle(found + find_phones(_masked(text, found), default_region))


def _masked(text: str, entities: list[Entity]) -> str:
    """`text` with the entities' characters replaced by MASK, offsets unchanged.

    The phone matcher reads runs of digits and spaces greedily: unmasked, it would join a national number's
    check digits or a plate's first digit to a telephone number next to them, and then lose the number.
    """
    pieces, position = [], 0
    for entity in entities:
        pieces += [text[position:entity.start], MASK * (entity.end - entity.start)]
        position = entity.end
    return "".join([*pieces, text[position:]])
