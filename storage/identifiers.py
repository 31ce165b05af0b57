"""Identifiers that registers key on: Belgian national register numbers and licence-plate keys (pure functions).

The national number's check rules live here, in storage, so that the registers validate the numbers they keep with
the very code the text-entity extractor (`workers.entities.national_number`) uses to find them in evidence.

Eleven digits YYMMDDSSS CC: birth date, a serial (odd for men, even for women) and a check number.

* check: CC = 97 - (YYMMDDSSS mod 97); for people born in or after 2000 the nine digits are prefixed with
  "2" (97 - (2YYMMDDSSS mod 97)). The rule that matches gives the century;
* month 00 or day 00 is a legal unknown birth date (birth_date None); BIS numbers (given to people not in the
  register) add 20 to the month when the sex was unknown and 40 when it was known;
* impossible dates are rejected: a month outside 0-12 (after BIS), a day over 31, a calendar date that does
  not exist (30 February), and a birth date (or year) in the future for the century the check selected.

A plate key is the plate's letters and digits only, upper case ("1-abc-234" -> "1ABC234"): what the vehicle
register is looked up by. It knows no plate format; the format-aware reading of a plate in evidence (and the
OCR-tolerant candidates) is `workers.plate_formats`, which then asks the register for those keys.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date

CENTURY_2000_PREFIX = 2_000_000_000
BIS_SEX_UNKNOWN, BIS_SEX_KNOWN = 20, 40
NATIONAL_NUMBER_SEPARATORS = re.compile(r"[ .\-]")
NOT_PLATE_CHARACTER = re.compile(r"[^A-Z0-9]")


def check_number(first_nine: str, born_2000_or_later: bool) -> int:
    """The check number (two digits, 1-97) of the nine digits YYMMDDSSS under one century rule."""
    number = int(first_nine) + (CENTURY_2000_PREFIX if born_2000_or_later else 0)
    return 97 - number % 97


def _birth(yy: int, mm: int, dd: int, century: int, today: date) -> tuple[bool, date | None]:
    """Whether YY/MM/DD is a possible birth date in `century` (zeros are unknown parts), and the date if known."""
    year = century + yy
    if mm > 12 or dd > 31 or year > today.year:
        return False, None
    if mm == 0 or dd == 0:
        return True, None
    try:
        born = date(year, mm, dd)
    except ValueError:
        return False, None
    return born <= today, born


def parse_national_number(digits: str, today: date | None = None) -> dict[str, object] | None:
    """The details of an eleven-digit national number, or None when its check or its date is impossible."""
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit():
        return None
    today = today or date.today()
    yy, mm, dd, serial, check = int(digits[:2]), int(digits[2:4]), int(digits[4:6]), digits[6:9], int(digits[9:])
    bis = mm >= BIS_SEX_UNKNOWN
    sex_known = not bis or mm >= BIS_SEX_KNOWN
    month = mm - (BIS_SEX_KNOWN if mm >= BIS_SEX_KNOWN else BIS_SEX_UNKNOWN if bis else 0)
    for century, rule_2000 in ((1900, False), (2000, True)):
        if check_number(digits[:9], rule_2000) != check:
            continue
        possible, born = _birth(yy, month, dd, century, today)
        if not possible:
            continue
        return {
            "formatted": f"{digits[:2]}.{digits[2:4]}.{digits[4:6]}-{serial}.{digits[9:]}",
            "birth_date": born.isoformat() if born else None,
            "birth_year": century + yy,
            "century": century,
            "bis": bis,
            "sex": ("M" if int(serial) % 2 else "F") if sex_known else None,
            "serial": serial,
        }
    return None


def national_number_digits(raw: str) -> str:
    """The digits of a national number as written ("85.07.30-033.28" -> "85073003328"); not validated."""
    return NATIONAL_NUMBER_SEPARATORS.sub("", raw.strip())


def plate_key(raw: str) -> str:
    """The register key of a plate: its ASCII letters and digits, upper case (compatibility forms folded first,
    so full-width "１ＡＢＣ" reads as "1ABC")."""
    return NOT_PLATE_CHARACTER.sub("", unicodedata.normalize("NFKC", raw).upper())
