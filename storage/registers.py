"""What the registers share: how one record's fields are checked, whatever brought them (a bulk import, the API).

The registers themselves are `storage.persons` (persons and their reference photos), `storage.vehicles`
(vehicles and their status history) and `storage.watchlists` (face watchlists); `storage.register_import` fills
the first two from CSV or JSON Lines. A record arrives as a mapping of field name to text (or None); each
register's `parse_*` turns it into a typed row or raises `RowError` with a reason a person can act on.
Values are kept as text exactly as given (after trimming): a spreadsheet formula ("=cmd|' /C calc'!A0") is a
string like any other and is never evaluated.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

MAX_NAME_CHARS = 200
MAX_SHORT_TEXT_CHARS = 100
COUNTRY_CODE = re.compile(r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2, the one vocabulary of countries ("BE", "NL")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed; a newline inside a value is not


class RowError(ValueError):
    """One record that cannot be kept; the message says which field and why."""


def text(fields: Mapping[str, str | None], name: str, *, required: bool = False,
         max_chars: int = MAX_SHORT_TEXT_CHARS) -> str:
    """Field `name`, trimmed ("" when absent); refused when required and empty, too long or with control characters."""
    value = (fields.get(name) or "").strip()
    if required and not value:
        raise RowError(f"{name} is empty")
    if len(value) > max_chars:
        raise RowError(f"{name} is longer than {max_chars} characters")
    if CONTROL_CHARACTERS.search(value):
        raise RowError(f"{name} contains control characters")
    return value


def date_field(fields: Mapping[str, str | None], name: str, *, today: dt.date) -> dt.date | None:
    """Field `name` as a date (YYYY-MM-DD, not in the future), or None when empty."""
    value = text(fields, name, max_chars=32)
    if not value:
        return None
    if not ISO_DATE.match(value):
        raise RowError(f"{name} {value!r} is not a date (YYYY-MM-DD)")
    try:
        parsed = dt.date.fromisoformat(value)
    except ValueError:
        raise RowError(f"{name} {value!r} is not a date of the calendar") from None
    if parsed > today:
        raise RowError(f"{name} {value} is in the future")
    return parsed


def country_field(fields: Mapping[str, str | None], name: str, *, required: bool = False) -> str | None:
    """Field `name` as an ISO 3166-1 alpha-2 code, upper case ("be" -> "BE"), or None when empty."""
    value = text(fields, name, required=required, max_chars=32).upper()
    if not value:
        return None
    if not COUNTRY_CODE.match(value):
        raise RowError(f"{name} {value!r} is not a two-letter country code (ISO 3166-1 alpha-2)")
    return value
