"""Licence plates written in running text (BE, NL, FR, DE, LU), read through `normalise_plate`.

Running text is full of letter/digit mixes (references, postcodes, years, times, product codes), so a plate
is taken only on one of two grounds:

1. **Shape**: written in capitals exactly as the plate is printed, dashes included, in a format that cannot be
   written by accident: Belgian 2010 (``1-ABC-234``), Dutch sidecodes (``GV-123-X``, ``12-HJK-3``), French SIV
   (``AB-123-CD``) and German (``M-AB 1234``, a dash then a space). The normaliser must read it unchanged (no
   OCR letter/digit swap, separators where the format prints them); letters and digits both present.
2. **Keyword**: within KEYWORD_WINDOW characters after a plate word (nummerplaat, kenteken,
   inschrijvingsplaat, plaque, immatriculation, Kennzeichen, Nummernschild, plate, registration, ...) and in
   the same sentence, the first run of capitals and digits that holds two digits or more (so "BMW X5" or
   "Audi A4" between keyword and plate are passed over) is read as one plate in any format and with any
   separators (``1ABC234``, ``ABC-123``, ``M AB 1234``, ``AB 1234``, ``1234 AB 56``), OCR swaps allowed at the
   normaliser's cost, if its best reading scores at least KEYWORD_MIN_CONFIDENCE. All-digit registrations
   (Luxembourg) need five digits or more and must follow the keyword directly (``plaque n° 12345``).

Guards for both: capitals only (a lowercase letter ends a run, so words never join a plate), a plate is not
glued to a word, "@", "/" or a dotted/dashed continuation ("EU-VO 2016/679" is no plate), and at most four
groups and MAX_PLATE_CHARACTERS letters and digits. The normaliser's repair of a stray end character is
not used: in typed text a character too many means another token, not a plate's border ("PV 12345").

value: the registration as the normaliser renders it; details: country, format, score (the normaliser's
confidence, also the entity's), substitutions, ground ("shape" or "keyword") and the other readings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from workers.entities.model import Entity
from workers.plate_formats import EU_BANDS, PlateCandidate, normalise_plate

KEYWORD = re.compile(r"nummerpla|kenteken|inschrijvingsplaat|\bplaques?\b|\bimmatricul|kennzeichen|nummernschild"
                     r"|\bplates?\b|\bregistration\b|\breg\.", re.IGNORECASE)
KEYWORD_WINDOW = 40
KEYWORD_MIN_CONFIDENCE = 0.5
SHAPE_MIN_CONFIDENCE = 0.3
SENTENCE_END = re.compile(r"[.!?;](?:\s|$)|\n\s*\n")
# A run of capital/digit groups joined by single dashes or spaces; each group ends where the word ends.
RUN = re.compile(r"(?<![\w@/.-])[A-Z0-9]+\b(?:[ -][A-Z0-9]+\b){0,7}")
GROUP = re.compile(r"[A-Z0-9]+")
DIRECTLY_AFTER = re.compile(r"[\s:#°()-]*(?:(?:nr|no|n°|num[ée]ro|nummer|number)\.?[\s:#°]*)?", re.IGNORECASE)
SHAPE_COUNTRIES = ("BE 2010", "NL ", "FR SIV", "DE ")
MAX_GROUPS, MAX_PLATE_CHARACTERS, MIN_DIGITS_ONLY, MIN_DIGITS_AFTER_KEYWORD = 4, 10, 5, 2
MAX_ALTERNATIVES = 3
# Pages repeat their tokens (headers, the same plate): readings are cached.
_readings = lru_cache(maxsize=8192)(normalise_plate)


@dataclass(frozen=True)
class _Slice:
    start: int
    end: int
    raw: str


def _glued_after(text: str, end: int) -> bool:
    """Whether `text` continues the token at `end` ("/679", ".5", "-x", "@")."""
    if end >= len(text):
        return False
    char = text[end]
    return char in "/@" or (char in ".,-" and end + 1 < len(text) and text[end + 1].isalnum())


def _slices(text: str, run: re.Match[str]) -> list[_Slice]:
    """Group-aligned pieces of a run that are not glued to their neighbours by a dash."""
    groups = [(run.start() + m.start(), run.start() + m.end()) for m in GROUP.finditer(run.group(0))]
    pieces = []
    for first in range(len(groups)):
        if first > 0 and text[groups[first][0] - 1] == "-":
            continue
        for last in range(first, min(first + MAX_GROUPS, len(groups))):
            start, end = groups[first][0], groups[last][1]
            if last + 1 < len(groups) and text[end] == "-":
                continue
            if last + 1 == len(groups) and _glued_after(text, end):
                continue
            raw = text[start:end]
            if sum(char.isalnum() for char in raw) <= MAX_PLATE_CHARACTERS and any(c.isdigit() for c in raw):
                pieces.append(_Slice(start, end, raw))
    return pieces


def _entity(piece: _Slice, best: PlateCandidate, others: list[PlateCandidate], ground: str) -> Entity:
    alternatives = [{"value": c.text_normalised, "country": c.country, "format": c.format_name,
                     "score": c.confidence} for c in others if c is not best][:MAX_ALTERNATIVES]
    return Entity("plate", best.text_normalised, piece.raw, piece.start, piece.end, best.confidence,
                  {"country": best.country, "format": best.format_name, "score": best.confidence,
                   "substitutions": best.substitutions, "ground": ground, "alternatives": alternatives})


def _by_shape(piece: _Slice) -> Entity | None:
    if "-" not in piece.raw or not any(char.isalpha() for char in piece.raw):
        return None
    candidates = _readings(piece.raw)
    for candidate in candidates:
        if (candidate.substitutions == 0 and candidate.text_normalised == piece.raw
                and candidate.format_name.startswith(SHAPE_COUNTRIES)
                and candidate.confidence >= SHAPE_MIN_CONFIDENCE):
            return _entity(piece, candidate, candidates, "shape")
    return None


def _whole(raw: str, candidate: PlateCandidate) -> bool:
    """Whether `candidate` reads every character of `raw` (at most without a leading band code of its country)."""
    written = "".join(char for char in raw if char.isalnum())
    read = sum(char.isalnum() for char in candidate.text_normalised)
    if read == len(written):
        return True
    band = written[:len(written) - read]
    return EU_BANDS.get(band) == candidate.country


def _by_keyword(piece: _Slice, directly_after_keyword: bool) -> Entity | None:
    digits = sum(char.isdigit() for char in piece.raw)
    if digits < MIN_DIGITS_AFTER_KEYWORD:
        return None
    if not any(char.isalpha() for char in piece.raw) and (not directly_after_keyword or digits < MIN_DIGITS_ONLY):
        return None
    candidates = [candidate for candidate in _readings(piece.raw) if _whole(piece.raw, candidate)]
    if not candidates or candidates[0].confidence < KEYWORD_MIN_CONFIDENCE:
        return None
    return _entity(piece, candidates[0], candidates, "keyword")


def _keyword_windows(text: str) -> list[tuple[int, int]]:
    """(start, end) of the text after each plate keyword where a plate may follow."""
    windows = []
    for match in KEYWORD.finditer(text):
        start = match.end()
        while start < len(text) and (text[start].isalnum() or text[start] == "_"):
            start += 1  # to the end of the word ("nummerplaten", "Kennzeichens")
        end = min(len(text), start + KEYWORD_WINDOW)
        stop = SENTENCE_END.search(text, start, end)
        windows.append((start, stop.start() if stop else end))
    return windows


def _best_of(entities: list[Entity]) -> list[Entity]:
    """Non-overlapping choice: longest first, then most confident."""
    chosen: list[Entity] = []
    for entity in sorted(entities, key=lambda e: (e.start - e.end, -e.confidence, e.start)):
        if all(entity.end <= other.start or entity.start >= other.end for other in chosen):
            chosen.append(entity)
    return chosen


def find_plates(text: str) -> list[Entity]:
    """Licence plates in `text`, by shape or after a plate keyword (see the module's rules)."""
    found = []
    runs = [run for run in RUN.finditer(text) if any(char.isdigit() for char in run.group(0))]
    for run in runs:
        found += [entity for piece in _slices(text, run) if (entity := _by_shape(piece)) is not None]
    for window_start, window_end in _keyword_windows(text):
        following = [run for run in runs if window_start <= run.start() < window_end
                     and sum(char.isdigit() for char in run.group(0)) >= MIN_DIGITS_AFTER_KEYWORD]
        if not following:
            continue
        run = following[0]
        directly = DIRECTLY_AFTER.fullmatch(text, window_start, run.start()) is not None
        readings = [entity for piece in _slices(text, run)
                    if (entity := _by_keyword(piece, directly and piece.start == run.start())) is not None]
        if readings:  # one plate per keyword: the earliest reading, then the longest, then the most confident
            found.append(min(readings, key=lambda e: (e.start, e.start - e.end, -e.confidence)))
    return _best_of(found)
