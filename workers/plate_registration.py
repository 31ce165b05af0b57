"""What a plate reading says, without losing a character: `read_registration` and the phantom-plate check.

The forensic reading of one plate: the formats of `workers.plate_formats` and of more countries
(WORLD_FORMATS: CZ, PL, IT, ES, CH, GB, AR, US), no character dropped or swapped in the reported text (a reading
no format takes as read is kept as read, format "unknown"), a country named only when the plate says so (a band
code, an emblem) or a single format fits, else the fitting countries as candidates; `implausibility` tells
phantom readings ("8", "LAUR") from plates.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any

from workers.plate_formats import (
    EU_BANDS,
    FORMATS,
    LETTERS,
    PlateCandidate,
    PlateFormat,
    _boundaries,
    _candidates,
    _shift,
    _trimmed,
    _Variant,
)

# Formats of other countries, used by `read_registration` only (so `normalise_plate`, whose callers expect the
# five countries above, reads as before). Each is one country's main current layouts, not every special series.
CZ_REGIONS = frozenset("ABCEHJKLMPSTUZ")
PL_VOIVODESHIPS = frozenset("BCDEFGKLNOPRSTWZ")
PL_UNUSED_SERIES = frozenset("BDIOZ")  # not used after the district code: they look like 8, 0, 1, 0, 2
CH_CANTONS = frozenset({"AG", "AI", "AR", "BE", "BL", "BS", "FR", "GE", "GL", "GR", "JU", "LU", "NE", "NW", "OW",
                        "SG", "SH", "SO", "SZ", "TG", "TI", "UR", "VD", "VS", "ZG", "ZH"})
IT_LETTERS = LETTERS - frozenset("IOQU")
ES_LETTERS = LETTERS - frozenset("AEIOUQ")
GB_LETTERS = LETTERS - frozenset("IQ")


def _cz_plausibility(groups: list[str]) -> float:
    return 1.0 if groups[0][1] in CZ_REGIONS else 0.0


def _pl_plausibility(groups: list[str]) -> float:
    return 1.0 if groups[0][0] in PL_VOIVODESHIPS and not set(groups[1]) & PL_UNUSED_SERIES else 0.0


def _ch_plausibility(groups: list[str]) -> float:
    return 1.0 if groups[0] in CH_CANTONS else 0.0


PL_SERIES = {2: ("DDDDD", "DDDDL", "DDDLL", "DLDDD", "DLLDD"), 3: ("LDDD", "DDLL", "DLDD", "DDLD", "DLLD", "LLDD")}
WORLD_FORMATS: tuple[PlateFormat, ...] = (
    PlateFormat("CZ", "CZ (1AB 2345)", (("NLL", "DDDD"), ("NLD", "DDDD")), 0.85, (" ",),
                plausibility=_cz_plausibility),
    PlateFormat("PL", "PL (WA 12345)", tuple(("L" * district, series) for district, layouts in PL_SERIES.items()
                                            for series in layouts), 0.8, (" ",), plausibility=_pl_plausibility),
    PlateFormat("IT", "IT (AB 123 CD)", (("LL", "DDD", "LL"),), 0.85, (" ", " "), IT_LETTERS),
    PlateFormat("ES", "ES (1234 BCD)", (("DDDD", "LLL"),), 0.85, (" ",), ES_LETTERS),
    PlateFormat("CH", "CH (ZH 123456)", tuple(("LL", "N" + "D" * digits) for digits in range(6)), 0.8, (" ",),
                plausibility=_ch_plausibility),
    PlateFormat("GB", "GB 2001 (AB12 CDE)", (("LLDD", "LLL"),), 0.85, (" ",), GB_LETTERS),
    PlateFormat("GB", "GB prefix (A123 BCD)", tuple(("L" + "N" + "D" * digits, "LLL") for digits in range(3)), 0.6,
                (" ",), GB_LETTERS),
    PlateFormat("AR", "AR Mercosur (AB 123 CD)", (("LL", "DDD", "LL"),), 0.85, (" ", " ")),
    PlateFormat("AR", "AR 1995 (ABC 123)", (("LLL", "DDD"),), 0.8, (" ",)),
    PlateFormat("US", "US California (7ABC123)", (("NLLL", "DDD"),), 0.6, ("",)),
    PlateFormat("US", "US (ABC-1234)", (("LLL", "DDDD"),), 0.6, ("-",)),
)
ALL_FORMATS = FORMATS + WORLD_FORMATS
# International distinguishing signs (EU band, or the oval sticker) of the countries that have formats here,
# and of EU/EEA neighbours a band may show; a caller may pass any of them as `band_code`.
BAND_CODES = {**EU_BANDS, "CZ": "CZ", "PL": "PL", "I": "IT", "E": "ES", "CH": "CH", "GB": "GB", "UK": "GB",
              "RA": "AR", "USA": "US", "A": "AT", "SK": "SK", "H": "HU", "SLO": "SI", "HR": "HR", "P": "PT",
              "IRL": "IE", "DK": "DK", "S": "SE", "FIN": "FI", "N": "NO", "EST": "EE", "LV": "LV", "LT": "LT",
              "RO": "RO", "BG": "BG", "GR": "GR", "CY": "CY", "M": "MT"}
UNKNOWN_FORMAT = "unknown"
UNKNOWN_FORMAT_CONFIDENCE = 0.3  # a reading kept as read: it is a plate only if the detector and reader say so
MIN_PLATE_CHARACTERS, MAX_PLATE_CHARACTERS = 4, 10
MAX_ALTERNATIVES = 8
MIN_DIGITS_ONLY = 5  # an all-digit plate (Luxembourg) shorter than this is not taken for one


@dataclass(frozen=True)
class Registration:
    """What a plate reading says, without losing a character read.

    `text_normalised` is the reading rendered in its best-fitting format, or, when no format fits every
    character (`format_name` "unknown"), the reading's letters and digits as read, separators dropped.
    `country` is named only when the plate says so (`country_source` "band" or "emblem") or when a single
    format fits the reading exactly ("single format"); `candidate_countries` are the countries whose formats fit,
    best first. `alternatives` are the other registrations the reading can be (other countries' renderings,
    OCR swaps, a stray end character dropped), for register matching; never the reported text.
    """

    text_read: str
    text_normalised: str
    format_name: str
    country: str | None
    candidate_countries: tuple[str, ...]
    confidence: float
    country_source: str | None = None
    alternatives: tuple[PlateCandidate, ...] = ()

    @property
    def compact(self) -> str:
        """The registration's letters and digits, the form registers are matched on."""
        return "".join(re.findall(r"[A-Z0-9]", self.text_normalised))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, for findings."""
        return {**asdict(self), "candidate_countries": list(self.candidate_countries),
                "alternatives": [candidate.as_dict() for candidate in self.alternatives]}


def _band_variant(text: str, boundaries: frozenset[int], code: str) -> _Variant:
    return _Variant(text[len(code):], _shift(boundaries, len(code), len(text) - len(code)), 1.0, BAND_CODES[code])


def _fits(variant: _Variant) -> list[PlateCandidate]:
    found: dict[tuple[str, str], PlateCandidate] = {}
    for candidate in _candidates(variant, ALL_FORMATS):
        key = (candidate.text_normalised, candidate.format_name)
        if key not in found or found[key].confidence < candidate.confidence:
            found[key] = candidate
    return sorted(found.values(), key=lambda c: (c.substitutions, -c.confidence, c.country, c.text_normalised))


def _choose_variant(raw: str, band_code: str | None) -> tuple[_Variant, list[PlateCandidate], list[_Variant]]:
    """The variant of `raw` to report (as read, or without a leading band code), its fits, and the other variants.

    A band code at the start of the reading is taken as a band (and dropped from the registration) only when the
    rest fits a format of the band's country exactly and either the code stands apart (a space after it) or the
    reading as read fits no format exactly; a band code the caller read elsewhere on the plate is dropped when
    the reading starts with it.
    """
    tokens = re.findall(r"[A-Z0-9]+", raw.upper())
    text, boundaries = "".join(tokens), _boundaries(tokens)
    as_read = _Variant(text, boundaries, 1.0, None)
    if band_code is not None and text.startswith(band_code) and len(text) - len(band_code) >= MIN_PLATE_CHARACTERS:
        stripped = _band_variant(text, boundaries, band_code)
        return stripped, _fits(stripped), [as_read]
    read_fits = _fits(as_read)
    exact_as_read = any(c.substitutions == 0 for c in read_fits)
    apart = re.match(r"\s*([A-Z]+)\s", raw.upper())
    for code, country in BAND_CODES.items():
        if not text.startswith(code) or len(text) - len(code) < MIN_PLATE_CHARACTERS:
            continue
        stripped = _band_variant(text, boundaries, code)
        fits = _fits(stripped)
        if (any(c.substitutions == 0 and c.country == country for c in fits)
                and ((apart is not None and apart.group(1) == code) or not exact_as_read)):
            return stripped, fits, [as_read]
    return as_read, read_fits, []


def _alternatives(best: PlateCandidate | None, fits: list[PlateCandidate], chosen: _Variant,
                  others: list[_Variant]) -> tuple[PlateCandidate, ...]:
    """Other registrations the reading can be, most confident first, at most MAX_ALTERNATIVES: the other exact
    fits (other countries' renderings, the reading with or without a band code); when nothing fits exactly,
    fits with OCR letter/digit swaps and with a stray end character dropped."""
    pool = fits + [c for other in others for c in _fits(other)]
    if best is None:
        pool += [c for variant in (chosen, *others) for trimmed in _trimmed(variant)
                 for c in _candidates(trimmed, ALL_FORMATS)]
    else:
        pool = [c for c in pool if c.substitutions == 0]
    found: dict[tuple[str, str, str], PlateCandidate] = {}
    for candidate in pool:
        key = (candidate.text_normalised, candidate.country, candidate.format_name)
        if key not in found or found[key].confidence < candidate.confidence:
            found[key] = candidate
    if best is not None:
        found.pop((best.text_normalised, best.country, best.format_name), None)
    return tuple(sorted(found.values(), key=lambda c: (-c.confidence, c.text_normalised))[:MAX_ALTERNATIVES])


def read_registration(raw: str, *, band_code: str | None = None, emblem_country: str | None = None,
                      ruled_out: Collection[str] = ()) -> Registration:
    """What the plate reading `raw` says (see `Registration`), every character read kept.

    `band_code`: the distinguishing sign the caller read on the plate's band (e.g. "CZ", "F"); `emblem_country`:
    the ISO country of a national emblem the caller recognised on the plate. Either names the country.
    `ruled_out`: countries the plate itself excludes (an EU band: not CH, AR, US; a white plate: not NL, LU;
    see `workers.plate_origin`); their formats are not fits, so neither candidates nor the single format.
    A format fits only when it takes every character as read (after a band code) in ALL_FORMATS; readings that
    fit only after an OCR letter/digit swap or with an end character dropped are kept as read, format "unknown",
    with those repairs among the alternatives.
    """
    band = band_code.upper().strip() if band_code else None
    chosen, fits, others = _choose_variant(raw, band if band in BAND_CODES else None)
    exact = [c for c in fits if c.substitutions == 0 and c.country not in ruled_out]
    country, source = None, None
    if emblem_country:
        country, source = emblem_country.upper(), "emblem"
    elif band in BAND_CODES:
        country, source = BAND_CODES[band], "band"
    elif chosen.band_country is not None:
        country, source = chosen.band_country, "band"
    elif len({c.format_name for c in exact}) == 1:
        country, source = exact[0].country, "single format"
    countries = tuple(dict.fromkeys(c.country for c in sorted(exact, key=lambda c: -c.confidence)))
    if country is not None:  # the plate names its country: only that country's formats can render it
        exact = [c for c in exact if c.country == country]
    best = min(exact, key=lambda c: (-c.confidence, c.text_normalised)) if exact else None
    alternatives = _alternatives(best, fits, chosen, others)
    if best is None:
        confidence = UNKNOWN_FORMAT_CONFIDENCE if _plausible_unknown(chosen.text) else 0.0
        return Registration(raw, chosen.text, UNKNOWN_FORMAT, country, countries, confidence, source, alternatives)
    return Registration(raw, best.text_normalised, best.format_name, country, countries, best.confidence, source,
                        alternatives)


def _plausible_unknown(text: str) -> bool:
    return (MIN_PLATE_CHARACTERS <= len(text) <= MAX_PLATE_CHARACTERS and any(c.isalpha() for c in text)
            and any(c.isdigit() for c in text))


def implausibility(registration: Registration) -> str | None:
    """Why `registration` cannot be a plate worth matching (a phantom: "8", "LAUR"), or None when it can.

    A plate has MIN_PLATE_CHARACTERS to MAX_PLATE_CHARACTERS letters and digits (MIN_DIGITS_ONLY when all are
    digits), and either fits a known format or, in an unknown format, holds at least one letter and one digit.
    """
    length = len(registration.compact)
    if not MIN_PLATE_CHARACTERS <= length <= MAX_PLATE_CHARACTERS:
        return f"{length} characters, not {MIN_PLATE_CHARACTERS}-{MAX_PLATE_CHARACTERS}"
    if registration.compact.isdigit() and length < MIN_DIGITS_ONLY:
        return f"{length} digits only: a year or a house number more often than a plate"
    if registration.format_name == UNKNOWN_FORMAT and not _plausible_unknown(registration.compact):
        return "fits no plate format and lacks a letter or a digit"
    return None


def is_plausible_plate(registration: Registration) -> bool:
    """Whether `registration` can be a plate (see `implausibility`)."""
    return implausibility(registration) is None
