"""Belgian national register numbers (rijksregisternummer / numéro de registre national / Nationalregisternummer).

Eleven digits YYMMDD SSS CC: birth date, a serial (odd for men, even for women) and a check number. Written
as ``85.07.30-033.28``, ``85073003328``, ``850730 033 28``, ``85.07.30 033-28`` and similar: the date part is
either compact or uses one separator (a dot or a space) throughout, the serial and the check may each be
preceded by a space, a dot or a dash.

Rules:

* check: CC = 97 - (YYMMDDSSS mod 97); for people born in or after 2000 the nine digits are prefixed with
  "2" (97 - (2YYMMDDSSS mod 97)). The rule that matches gives the century; a number matching neither is not
  an entity (a random eleven-digit run passes by chance only about once in 97, hence the guards below);
* month 00 or day 00 is a legal unknown birth date (birth_date None); BIS numbers (given to people not in the
  register) add 20 to the month when the sex was unknown and 40 when it was known;
* impossible dates are rejected: a month outside 0-12 (after BIS), a day over 31, a calendar date that does
  not exist (30 February), and a birth date (or year) in the future for the century the check selected;
* guards: not preceded by a digit or "+" (international phone numbers) and not part of a longer run of
  digits, dotted numbers or slashed references.

The check and date rules (`parse_national_number`) are `storage.identifiers`, shared with the persons register.
"""

from __future__ import annotations

import re
from datetime import date

from storage.identifiers import parse_national_number
from workers.entities.model import Entity

NATIONAL_NUMBER = re.compile(
    r"(?<![\d+])(?<!\d[.,/-])"
    r"(?P<yy>\d{2})(?P<sep>[. ]?)(?P<mm>\d{2})(?P=sep)(?P<dd>\d{2})"
    r"[ .-]?(?P<serial>\d{3})[ .-]?(?P<check>\d{2})"
    r"(?!\d|[.,/-]\d)")
CONFIDENCE_FORMATTED, CONFIDENCE_COMPACT = 0.99, 0.9


def find_national_numbers(text: str, today: date | None = None) -> list[Entity]:
    """Every valid national register number in `text` (see the module's rules)."""
    found = []
    for match in NATIONAL_NUMBER.finditer(text):
        digits = "".join(match.group("yy", "mm", "dd", "serial", "check"))
        details = parse_national_number(digits, today)
        if details is None:
            continue
        raw = match.group(0)
        confidence = CONFIDENCE_COMPACT if raw.isdigit() else CONFIDENCE_FORMATTED
        found.append(Entity("national_number", digits, raw, match.start(), match.end(), confidence, details))
    return found
