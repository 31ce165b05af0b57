"""Licence-plate formats, OCR repair, and what a plate reading says without losing a character.

`normalise_plate` turns what an OCR engine read on a plate into the registrations it can plausibly be among the
formats of Belgium, the Netherlands, France, Germany and Luxembourg (FORMATS), each with its country, format and
a confidence (0-1) that says how well the text fits. Pure Python: it is used by the plate analyzer and, for
plates written in documents, by OCR entity extraction.

`read_registration` (`workers.plate_registration`) reads a plate for the record without dropping a character.

How a reading is scored:

* only A-Z and 0-9 count; separators (spaces, dots, dashes) are kept as a hint: a format whose groups match
  where the reading was separated scores best, one that needs separators the reading did not have a little
  less, one that contradicts them clearly less;
* a leading EU band code ("B", "NL", "F", "D", "L") is tried both as part of the registration and stripped;
  when stripped, candidates of the band's country score higher than others;
* a stray character at either end (a plate's border or a screw read as "I" or "J") may be dropped, at a cost;
* letters and digits that OCR confuses (O/0, D/0, Q/0, I/1, Z/2, S/5, G/6, B/8) are swapped where a format
  wants the other kind at that position, at most twice, each swap costing confidence;
* each format has a prior, and a plausibility check where the issuing rules are known (the Dutch RDW's unused
  letters and banned combinations, the French SIV letters, German banned pairs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

COUNTRIES = ("BE", "NL", "FR", "DE", "LU")
LETTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# What OCR reads in place of a digit, and in place of a letter, on plates.
DIGIT_FOR_LETTER = {"O": "0", "D": "0", "Q": "0", "I": "1", "Z": "2", "S": "5", "G": "6", "B": "8"}
LETTERS_FOR_DIGIT = {"0": ("O", "D"), "1": ("I",), "2": ("Z",), "5": ("S",), "6": ("G",), "8": ("B",)}
SUBSTITUTION_PENALTY = 0.75  # per swapped character
MAX_SUBSTITUTIONS = 2
TRIM_PENALTY = 0.8  # for dropping a stray character at one end
BAND_AGREEMENT = 1.05  # a band code was stripped and the rest reads as that country's plate
FOREIGN_BAND_PENALTY = 0.85  # a band code was stripped, but the rest reads as another country's plate
# Reading separated as the format groups / not at all / at some of its groups only / elsewhere.
SEPARATORS_EXACT, SEPARATORS_NONE, SEPARATORS_PARTIAL, SEPARATORS_CONFLICT = 1.0, 0.9, 0.8, 0.7
MIN_CONFIDENCE = 0.15
MAX_READING_CHARACTERS = 16
EU_BANDS = {"NL": "NL", "B": "BE", "F": "FR", "D": "DE", "L": "LU"}

# Position classes in a layout: L letter (of the format's alphabet), D digit, N digit 1-9, X suffix E or H.
Layout = tuple[str, ...]


@dataclass(frozen=True)
class PlateCandidate:
    """One registration a reading can be: normalised text as printed, country, format, confidence 0-1."""

    text_normalised: str
    country: str
    format_name: str
    confidence: float
    substitutions: int = 0  # OCR letter/digit swaps made to fit the format

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for findings."""
        return asdict(self)


def _unchecked(groups: list[str]) -> float:
    return 1.0


@dataclass(frozen=True)
class PlateFormat:
    """A national plate format: its layouts, how it is printed, its prior and its plausibility check."""

    country: str
    name: str
    layouts: tuple[Layout, ...]
    prior: float
    separators: tuple[str, ...]  # printed between consecutive groups
    letters: frozenset[str] = LETTERS
    plausibility: Callable[[list[str]], float] = field(default=_unchecked)
    shown: int | None = None  # groups that make up the registration; later ones (a region band) are dropped

    def render(self, groups: list[str]) -> str:
        text = groups[0]
        for separator, group in zip(self.separators, groups[1:self.shown], strict=False):
            text += separator + group
        return text


# Netherlands: RDW sidecodes, in this module's layout notation (L a letter, D a digit; the RDW writes X and 9).
# Letters the RDW does not issue on regular plates: C and Q (like 0), and from sidecode 4 on the vowels (and Y);
# banned combinations are political parties and words.
NL_SIDECODES: dict[int, str] = {1: "LL-DD-DD", 2: "DD-DD-LL", 3: "DD-LL-DD", 4: "LL-DD-LL", 5: "LL-LL-DD",
                                6: "DD-LL-LL", 7: "DD-LLL-D", 8: "D-LLL-DD", 9: "LL-DDD-L", 10: "L-DDD-LL",
                                11: "LLL-DD-L", 12: "L-DD-LLL", 13: "D-LL-DDD", 14: "DDD-LL-D"}
NL_UNUSED_EARLY = frozenset("CQIOY")  # sidecodes 1-3
NL_UNUSED = frozenset("CQAEIOUY")  # sidecode 4 onwards
NL_BANNED = frozenset({"GVD", "KKK", "NSB", "PKK", "PSV", "TBS", "SS", "SD", "SA", "PVV", "SGP", "VVD"})
UNUSED_LETTER_FACTOR = 0.35
BANNED_COMBINATION_FACTOR = 0.5
FR_SIV_LETTERS = LETTERS - frozenset("IOU")
DE_BANNED = frozenset({"HJ", "KZ", "NS", "SA", "SS"})


def _letter_groups(groups: list[str]) -> list[str]:
    return [group for group in groups if group.isalpha()]


def _nl_plausibility(sidecode: int) -> Callable[[list[str]], float]:
    unused = NL_UNUSED_EARLY if sidecode <= 3 else NL_UNUSED

    def check(groups: list[str]) -> float:
        letters = "".join(_letter_groups(groups))
        factor = UNUSED_LETTER_FACTOR if set(letters) & unused else 1.0
        if any(word in group for group in _letter_groups(groups) for word in NL_BANNED):
            factor *= BANNED_COMBINATION_FACTOR
        return factor

    return check


def _fr_siv_plausibility(groups: list[str]) -> float:
    factor = 1.0
    if len(groups) > 3 and not _fr_department(groups[3]):  # the region band's department number
        factor *= UNUSED_LETTER_FACTOR
    if "SS" in (groups[0], groups[2]):  # never issued
        factor *= BANNED_COMBINATION_FACTOR
    if groups[1] == "000":
        factor *= BANNED_COMBINATION_FACTOR
    return factor


def _fr_department(number: str) -> bool:
    return 1 <= int(number) <= 95 if len(number) == 2 else 971 <= int(number) <= 976


def _fr_fni_plausibility(groups: list[str]) -> float:
    return 1.0 if _fr_department(groups[2]) else UNUSED_LETTER_FACTOR


def _de_plausibility(groups: list[str]) -> float:
    return BANNED_COMBINATION_FACTOR if groups[1] in DE_BANNED else 1.0


def _nl_layout(pattern: str) -> Layout:
    return tuple(pattern.split("-"))


def _de_layouts() -> tuple[Layout, ...]:
    layouts = []
    for city, letters, digits in product(range(1, 4), range(1, 3), range(1, 5)):
        if city + letters + digits <= 8:
            number = "N" + "D" * (digits - 1)
            layouts += [("L" * city, "L" * letters, number), ("L" * city, "L" * letters, number + "X")]
    return tuple(layouts)


FORMATS: tuple[PlateFormat, ...] = (
    PlateFormat("BE", "BE 2010 (1-ABC-234)", (("N", "LLL", "DDD"),), 0.95, ("-", "-")),
    PlateFormat("BE", "BE 1973-2008 (ABC-123)", (("LLL", "DDD"),), 0.85, ("-",)),
    PlateFormat("BE", "BE 2008-2010 (123-ABC)", (("DDD", "LLL"),), 0.85, ("-",)),
    *(PlateFormat("NL", f"NL sidecode {code} ({pattern})", (_nl_layout(pattern),), 0.9, ("-", "-"),
                  plausibility=_nl_plausibility(code)) for code, pattern in NL_SIDECODES.items()),
    # SIV plates carry the department of the owner's choice in the right band, which OCR may read too.
    PlateFormat("FR", "FR SIV (AB-123-CD)", (("LL", "DDD", "LL"), ("LL", "DDD", "LL", "DD"),
                                             ("LL", "DDD", "LL", "DDD")), 0.95, ("-", "-"), FR_SIV_LETTERS,
                _fr_siv_plausibility, shown=3),
    PlateFormat("FR", "FR FNI (1234 AB 56)",
                tuple(("N" + "D" * (digits - 1), "L" * letters, "DD")
                      for digits in range(1, 5) for letters in (2, 3)), 0.7, (" ", " "),
                plausibility=_fr_fni_plausibility),
    PlateFormat("DE", "DE (ABC-DE 1234)", _de_layouts(), 0.75, ("-", " "), plausibility=_de_plausibility),
    PlateFormat("LU", "LU (AB 1234)", (("LL", "DDDD"),), 0.75, (" ",)),
    PlateFormat("LU", "LU (12345)", (("NDDD",), ("NDDDD",), ("NDDDDD",)), 0.5, ()),
)


@dataclass(frozen=True)
class _Variant:
    """The reading's characters, where separators split them, a penalty and the EU band stripped (if any)."""

    text: str
    boundaries: frozenset[int]
    penalty: float
    band_country: str | None


def _boundaries(tokens: list[str]) -> frozenset[int]:
    positions, total = set(), 0
    for token in tokens[:-1]:
        total += len(token)
        positions.add(total)
    return frozenset(positions)


def _shift(boundaries: frozenset[int], start: int, length: int) -> frozenset[int]:
    """Boundaries of text[start:start + length]."""
    return frozenset(b - start for b in boundaries if 0 < b - start < length)


def _bases(raw: str) -> list[_Variant]:
    """The reading as is, and with a leading EU band code stripped."""
    tokens = re.findall(r"[A-Z0-9]+", raw.upper())
    text = "".join(tokens)
    if not text or len(text) > MAX_READING_CHARACTERS:
        return []
    boundaries = _boundaries(tokens)
    bases = [_Variant(text, boundaries, 1.0, None)]
    for code, country in EU_BANDS.items():
        if text.startswith(code) and len(text) - len(code) >= 4:
            rest = len(text) - len(code)
            bases.append(_Variant(text[len(code):], _shift(boundaries, len(code), rest), 1.0, country))
    return bases


def _trimmed(base: _Variant) -> list[_Variant]:
    """`base` without its first, or without its last character."""
    if len(base.text) < 5:
        return []
    length = len(base.text) - 1
    return [_Variant(base.text[1:], _shift(base.boundaries, 1, length), TRIM_PENALTY, base.band_country),
            _Variant(base.text[:-1], _shift(base.boundaries, 0, length), TRIM_PENALTY, base.band_country)]


def _options(char: str, kind: str, letters: frozenset[str]) -> list[tuple[str, int]]:
    """What `char` can be at a position of class `kind`: (character, 1 if it was swapped else 0)."""
    if kind == "L":
        if char in letters:
            return [(char, 0)]
        return [(letter, 1) for letter in LETTERS_FOR_DIGIT.get(char, ()) if letter in letters]
    if kind == "X":
        return [(char, 0)] if char in "EH" else []
    digit, swapped = (char, 0) if char.isdigit() else (DIGIT_FOR_LETTER.get(char, ""), 1)
    if not digit or (kind == "N" and digit == "0"):
        return []
    return [(digit, swapped)]


def _fit(text: str, layout: Layout, letters: frozenset[str]) -> Iterator[tuple[list[str], int]]:
    """Every way `text` fits `layout` with at most MAX_SUBSTITUTIONS swaps: (groups, swaps)."""
    pattern = "".join(layout)
    if len(pattern) != len(text):
        return
    choices = []
    for char, kind in zip(text, pattern, strict=True):
        options = _options(char, kind, letters)
        if not options:
            return
        choices.append(options)
    for combination in product(*choices):
        swaps = sum(swapped for _, swapped in combination)
        if swaps > MAX_SUBSTITUTIONS:
            continue
        fitted, groups, start = "".join(char for char, _ in combination), [], 0
        for group in layout:
            groups.append(fitted[start:start + len(group)])
            start += len(group)
        yield groups, swaps


def _separator_factor(reading: frozenset[int], layout: Layout) -> float:
    expected = _boundaries(list(layout))
    if reading == expected:
        return SEPARATORS_EXACT
    if not reading:
        return SEPARATORS_NONE
    return SEPARATORS_PARTIAL if reading <= expected else SEPARATORS_CONFLICT


def _candidates(variant: _Variant, formats: tuple[PlateFormat, ...] = FORMATS) -> Iterator[PlateCandidate]:
    for plate_format in formats:
        for layout in plate_format.layouts:
            for groups, swaps in _fit(variant.text, layout, plate_format.letters):
                band = (1.0 if variant.band_country is None else
                        BAND_AGREEMENT if variant.band_country == plate_format.country else FOREIGN_BAND_PENALTY)
                confidence = min(1.0, plate_format.prior * plate_format.plausibility(groups) * band * variant.penalty
                              * SUBSTITUTION_PENALTY ** swaps * _separator_factor(variant.boundaries, layout))
                if confidence >= MIN_CONFIDENCE:
                    yield PlateCandidate(plate_format.render(groups), plate_format.country, plate_format.name,
                                         round(confidence, 4), swaps)


def normalise_plate(raw: str) -> list[PlateCandidate]:
    """The registrations `raw` (an OCR reading of one plate) can plausibly be, most confident first.

    A stray end character is only dropped when the reading (with or without its band code) fits no format
    as read. An empty list when nothing fits well enough (every confidence under MIN_CONFIDENCE).
    """
    best: dict[tuple[str, str, str], PlateCandidate] = {}
    for base in _bases(raw):
        found = list(_candidates(base))
        if not any(candidate.substitutions == 0 for candidate in found):
            found += [candidate for trimmed in _trimmed(base) for candidate in _candidates(trimmed)]
        for candidate in found:
            key = (candidate.text_normalised, candidate.country, candidate.format_name)
            if key not in best or best[key].confidence < candidate.confidence:
                best[key] = candidate
    return sorted(best.values(), key=lambda c: (-c.confidence, c.substitutions, c.country, c.text_normalised))
