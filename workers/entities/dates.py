"""Calendar dates, numeric and written with Dutch, French, German or English month names.

Numeric rules (European order, day first):

* dd/mm/yyyy, dd-mm-yyyy, dd.mm.yyyy and yyyy-mm-dd (also with / or .), the same separator on both sides;
  day and month may have one digit ("5/3/2024");
* dd/mm/yy, dd-mm-yy and dd.mm.yy with a two-digit year: 20yy when yy is at most ten years past the current
  year's two digits, otherwise 19yy (in 2026: 00-36 -> 2000-2036, 37-99 -> 1937-1999). With dots the day and
  the month must have two digits, so version numbers such as "3.10.12" are not dates;
* day-first holds for every language, English included: European statements write 12/03/2024 for
  12 March. Only when `language` is English and the day-first reading is impossible (03/25/2024) is the
  month-first (US) reading taken, at a lower confidence;
* guards: not part of a longer number ("1.2.3.4", "12/03/2024/7", IP addresses, "12.05.07-012.34"; see
  `_glued`), but a range "01/02/2024-05/02/2024" gives both dates and "2024-03-12T14:30" its date; years
  1900-2099 only, and the date must exist (31/02/2024 is not an entity).

Written rules:

* "12 januari 2024", "3 mars 2023", "1er février 2022", "5. März 2021", "5th of March 2021",
  "12 déc. 2023", and month first "March 5, 2021"; month names in full or abbreviated, with or without
  accents ("Maerz", "fevrier", "aout"), in any case;
* a year is required (a day and month alone cannot be normalised to yyyy-mm-dd);
* the month name's language goes to details: the one language that spells it so, else the `language` hint
  when it is one of them, else None (all candidates are listed in `languages`).

A time right after the date ("12/03/2024 om 14:30", "le 3 mars 2023 à 14h30", "5. März 2021 um 9.15 Uhr") is
kept in details["time"]; the entity's span stays the date's.
"""

from __future__ import annotations

import re
from datetime import date

from workers.entities.model import Entity

MIN_YEAR, MAX_YEAR = 1900, 2099
TWO_DIGIT_YEAR_FUTURE = 10  # two-digit years up to this many years past the current one are 20yy
CONFIDENCE_ISO, CONFIDENCE_WRITTEN, CONFIDENCE_NUMERIC, CONFIDENCE_TWO_DIGIT, CONFIDENCE_MONTH_FIRST = (
    0.95, 0.95, 0.9, 0.75, 0.6)

LANGUAGE_CODES = {"nl": "nl", "nld": "nl", "dut": "nl", "fr": "fr", "fra": "fr", "fre": "fr",
                  "de": "de", "deu": "de", "ger": "de", "en": "en", "eng": "en"}
# Spellings of each month, by language (lowercase; full names, abbreviations, unaccented forms).
MONTH_NAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "nl": (("januari", "jan"), ("februari", "feb", "febr"), ("maart", "mrt", "mar"), ("april", "apr"),
           ("mei",), ("juni", "jun"), ("juli", "jul"), ("augustus", "aug"), ("september", "sep", "sept"),
           ("oktober", "okt", "oct"), ("november", "nov"), ("december", "dec")),
    "fr": (("janvier", "janv", "jan"), ("février", "fevrier", "févr", "fevr", "fév", "fev"), ("mars",),
           ("avril", "avr"), ("mai",), ("juin",), ("juillet", "juil"), ("août", "aout"),
           ("septembre", "sept", "sep"), ("octobre", "oct"), ("novembre", "nov"),
           ("décembre", "decembre", "déc", "dec")),
    "de": (("januar", "jänner", "jaenner", "jan", "jän"), ("februar", "feber", "feb", "febr"),
           ("märz", "maerz", "marz", "mär", "mrz"), ("april", "apr"), ("mai",), ("juni", "jun"), ("juli", "jul"),
           ("august", "aug"), ("september", "sep", "sept"), ("oktober", "okt"), ("november", "nov"),
           ("dezember", "dez")),
    "en": (("january", "jan"), ("february", "feb", "febr"), ("march", "mar"), ("april", "apr"), ("may",),
           ("june", "jun"), ("july", "jul"), ("august", "aug"), ("september", "sep", "sept"),
           ("october", "oct"), ("november", "nov"), ("december", "dec")),
}
MONTHS: dict[str, tuple[int, tuple[str, ...]]] = {}  # spelling -> (month, languages that spell it so)
for _language, _months in MONTH_NAMES.items():
    for _number, _spellings in enumerate(_months, start=1):
        for _spelling in _spellings:
            _known = MONTHS.get(_spelling, (_number, ()))
            assert _known[0] == _number, _spelling
            MONTHS[_spelling] = (_number, (*_known[1], _language))
_MONTH = "|".join(sorted(MONTHS, key=len, reverse=True))
_YEAR = r"(?P<year>\d{4})(?!\d)"
_AFTER_MONTH = r"(?![^\W\d_])"  # the month name ends where the word ends

WRITTEN_DAY_FIRST = re.compile(
    rf"(?<![\w.,/-])(?P<day>\d{{1,2}})(?:\s?(?:er|ère|re|ste|de|e|st|nd|rd|th)\b|\.)?\s*(?:of\s+|de\s+)?"
    rf"(?P<month>{_MONTH}){_AFTER_MONTH}(?:\.\s*|,?\s+){_YEAR}", re.IGNORECASE)
WRITTEN_MONTH_FIRST = re.compile(
    rf"(?<![\w.])(?P<month>{_MONTH}){_AFTER_MONTH}\.?\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?!\d)\b,?\s+{_YEAR}",
    re.IGNORECASE)
_NUMERIC_END = r"(?!(?!T\d)\w)"  # not glued to a word; "T" starts an ISO 8601 time
NUMERIC_DAY_FIRST = re.compile(
    rf"(?<!\w)(?P<day>\d{{1,2}})(?P<sep>[./-])(?P<month>\d{{1,2}})(?P=sep)(?P<year>\d{{4}}|\d{{2}}){_NUMERIC_END}")
NUMERIC_YEAR_FIRST = re.compile(
    rf"(?<!\w)(?P<year>\d{{4}})(?P<sep>[./-])(?P<month>\d{{1,2}})(?P=sep)(?P<day>\d{{1,2}}){_NUMERIC_END}")
TIME_AFTER = re.compile(
    r",?\s*(?:om|à|a|um|at|vers|rond|omstreeks|gegen|around|-|,|T(?=\d))?\s*"
    r"(?P<hour>[01]?\d|2[0-3])\s?[:hHu.]\s?(?P<minute>[0-5]\d)(?::[0-5]\d)?(?!\d|[.:]\d)")


def expand_two_digit_year(yy: int, today: date | None = None) -> int:
    """19yy or 20yy: 20yy unless that is more than TWO_DIGIT_YEAR_FUTURE years after `today`."""
    year = 2000 + yy
    return year if year <= (today or date.today()).year + TWO_DIGIT_YEAR_FUTURE else year - 100


def _valid(year: int, month: int, day: int) -> date | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return None
    try:
        return date(year, month, day)
    except ValueError:
        return None


def _glued(text: str, match: re.Match[str]) -> bool:
    """Whether the date is part of a longer dotted/slashed/dashed number.

    Glued: a dot or slash and a digit on either side, or the date's own separator and a digit; a dash and a
    digit only after a two-digit year (the date part of a national number, "12.05.07-012.34"). A dash between
    dates with four-digit years is a range ("01/02/2024-05/02/2024").
    """
    sep, start, end = match.group("sep"), match.start(), match.end()
    glue = {".", "/", sep} | ({"-"} if len(match.group("year")) == 2 else set())
    before = start >= 2 and text[start - 1] in glue and text[start - 2].isdigit()
    after = end + 1 < len(text) and text[end] in glue and text[end + 1].isdigit()
    return before or after


def _time_after(text: str, end: int) -> str | None:
    match = TIME_AFTER.match(text, end)
    if match is None or match.end() == end:
        return None
    return f"{int(match.group('hour')):02d}:{match.group('minute')}"


def _entity(text: str, match: re.Match[str], found: date, confidence: float, details: dict[str, object]) -> Entity:
    time = _time_after(text, match.end())
    if time is not None:
        details["time"] = time
    return Entity("date", found.isoformat(), match.group(0), match.start(), match.end(), confidence, details)


def _numeric(text: str, language: str | None, today: date | None) -> list[Entity]:
    found = []
    for match in NUMERIC_YEAR_FIRST.finditer(text):
        if _glued(text, match):
            continue
        valid = _valid(int(match.group("year")), int(match.group("month")), int(match.group("day")))
        if valid:
            sep = match.group("sep")
            found.append(_entity(text, match, valid, CONFIDENCE_ISO, {"pattern": f"yyyy{sep}mm{sep}dd"}))
    for match in NUMERIC_DAY_FIRST.finditer(text):
        day, month, year_text, sep = match.group("day"), match.group("month"), match.group("year"), match.group("sep")
        if _glued(text, match):
            continue
        two_digit = len(year_text) == 2
        if two_digit and sep == "." and (len(day) < 2 or len(month) < 2):
            continue
        year = expand_two_digit_year(int(year_text), today) if two_digit else int(year_text)
        yy = "yy" if two_digit else "yyyy"
        details: dict[str, object] = {"pattern": f"dd{sep}mm{sep}{yy}", "two_digit_year": two_digit}
        confidence = CONFIDENCE_TWO_DIGIT if two_digit else CONFIDENCE_NUMERIC
        valid = _valid(year, int(month), int(day))
        if valid is None and language == "en":
            valid = _valid(year, int(day), int(month))
            details["pattern"], confidence = f"mm{sep}dd{sep}{yy}", CONFIDENCE_MONTH_FIRST
        if valid:
            found.append(_entity(text, match, valid, confidence, details))
    return found


def _written(text: str, language: str | None) -> list[Entity]:
    found = []
    for pattern, order in ((WRITTEN_DAY_FIRST, "d month yyyy"), (WRITTEN_MONTH_FIRST, "month d, yyyy")):
        for match in pattern.finditer(text):
            month, languages = MONTHS[match.group("month").lower()]
            if order == "month d, yyyy" and "en" not in languages:
                continue
            valid = _valid(int(match.group("year")), month, int(match.group("day")))
            if valid is None:
                continue
            named = languages[0] if len(languages) == 1 else language if language in languages else None
            found.append(_entity(text, match, valid, CONFIDENCE_WRITTEN, {
                "pattern": order, "month_name": match.group("month"), "language": named,
                "languages": sorted(languages)}))
    return found


def find_dates(text: str, language: str | None = None, today: date | None = None) -> list[Entity]:
    """Every valid date in `text` (see the module's rules); `language` is an ISO 639-1 or 639-2 code or None."""
    code = LANGUAGE_CODES.get(language.lower()) if language else None
    return _numeric(text, code, today) + _written(text, code)
