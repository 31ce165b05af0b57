"""What the plates analyzer makes of its readers' texts: the registration to report, when to ask Tesseract too,
and whether a detection is a plate worth matching at all.

Every reading goes through `workers.plate_registration.read_registration`, so the reported text keeps every
character read (a reading no format takes as read is kept as read, format "unknown"); OCR repairs are only
`alternatives`, for register matching. `rejections` says why a detection is not a plate to match (a phantom on a
page, a star field): the floors below were measured, not guessed.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

import numpy as np

from models.plates import PlateReading
from workers.plate_registration import UNKNOWN_FORMAT, Registration, implausibility, read_registration

# How much a reader's score counts: Tesseract is the second opinion, and misreads plate digits more often.
READER_WEIGHTS = {"rapidocr": 1.0, "tesseract": 0.8}
# When the rapidocr reading alone is conclusive, so that Tesseract is not asked (see `second_opinion_reason`).
# Rendered and real plates that PP-OCR reads right score 0.95-1.0; its misreads score lower.
SECOND_OPINION_BELOW = 0.9  # rapidocr's own confidence
# The registration's format fit (read_registration): a well-separated reading of a common format scores
# 0.9-1.0, an unseparated one 0.81-0.86, a reading no format takes as read 0.3.
SECOND_OPINION_FORMAT_BELOW = 0.8
# Another rendering of the same characters fitting nearly as well (its fit at least this share of the best
# one's): AB1234 is NL AB-12-34 (0.81) or DE A-B 1234 / LU AB 1234 (0.68); Tesseract's separators may decide.
SECOND_OPINION_RUNNER_UP = 0.8

# Floors a detection must pass to be a plate finding that a matcher may look up (else it is an unconfirmed
# candidate, kept for the examiner). Measured with the YOLOv8n detector at conf 0.05 and PP-OCR / Tesseract:
# - rendered plates of 10 countries on bus.jpg: detector 0.62-0.72, rapidocr 0.96-1.00, Tesseract 0.82-0.96;
# - empty scenes (scikit-image astronaut, page, text, hubble_deep_field, brick, camera, coffee, chelsea, grass,
#   gravel, rocket, motorcycle_left, coins; ultralytics zidane.jpg, bus.jpg): detections 0.05-0.29 (hubble
#   0.286, rapidocr "5" 0.63; motorcycle 0.159 "ANMAN" 0.50; brick 0.106) and one at 0.748 on the printed
#   page (rapidocr "", Tesseract "SEER" 0.38), so the detector floor alone cannot stop phantoms: the reading
#   must also be plausible (`is_plausible_plate`) and read with confidence.
DETECTION_FLOOR = 0.4  # real plates 0.62+, phantoms but one 0.29 or less
# The best supporting reader's own confidence: real 0.82+, phantom texts 0.13-0.63 (all implausible too).
READING_FLOOR = 0.6


def choose_reading(readings: dict[str, PlateReading], *, band_code: str | None = None,
                   ruled_out: Collection[str] = ()) -> list[dict[str, Any]]:
    """Registrations the readers support, best first, one per set of characters read.

    Each reader's text goes through `read_registration` (a band code read before the text, or `band_code` read
    on the band itself, names the country; `ruled_out` are the countries the plate's colours exclude);
    a reader scores its registration by the format fit times its own confidence (and READER_WEIGHTS); readers
    that read the same characters combine as a noisy-or (1 - prod(1 - score)), so agreement raises the
    confidence; a reader whose text reads as another's only after an OCR repair (an alternative) supports it
    with the repair's lower fit. Of agreeing readers, the registration that names a country (from a band) is
    kept, else the better-fitting one. `reader_confidence` is the best supporting reader's own confidence.
    """
    support: dict[str, tuple[Registration, dict[str, float], float]] = {}
    registrations: dict[str, Registration] = {}
    for reader, reading in readings.items():
        registration = read_registration(reading.text, band_code=band_code, ruled_out=ruled_out)
        if not registration.compact:
            continue
        score = registration.confidence * reading.confidence * READER_WEIGHTS.get(reader, 1.0)
        kept, scores, reader_confidence = support.get(registration.compact, (registration, {}, 0.0))
        scores[reader] = max(score, scores.get(reader, 0.0))
        if _rank(registration) > _rank(kept):
            kept = registration
        support[registration.compact] = (kept, scores, max(reader_confidence, reading.confidence))
        registrations[reader] = registration
    for reader, registration in registrations.items():  # a repair of one reader's text may support another's
        for alternative in registration.alternatives:
            compact = re.sub(r"[^A-Z0-9]", "", alternative.text_normalised)
            if compact != registration.compact and compact in support:
                score = alternative.confidence * readings[reader].confidence * READER_WEIGHTS.get(reader, 1.0)
                scores = support[compact][1]
                scores[reader] = max(score, scores.get(reader, 0.0))
    ranked = []
    for registration, scores, reader_confidence in support.values():
        combined = 1.0 - float(np.prod([1.0 - s for s in scores.values()]))
        ranked.append({**registration.as_dict(), "confidence": round(combined, 4),
                       "format_confidence": registration.confidence, "readers": sorted(scores),
                       "reader_confidence": round(reader_confidence, 4),
                       "implausibility": implausibility(registration)})
    return sorted(ranked, key=lambda c: (-c["confidence"], c["text_normalised"]))


def _rank(registration: Registration) -> tuple[bool, float]:
    return registration.country_source in ("band", "emblem"), registration.confidence


def second_opinion_reason(reading: PlateReading) -> str | None:
    """Why the rapidocr reading alone is not conclusive (so Tesseract reads the plate too), or None when it is:
    its confidence is under SECOND_OPINION_BELOW, it is no plausible plate, no format takes it as read, its
    format fit is under SECOND_OPINION_FORMAT_BELOW, or another rendering fits nearly as well
    (SECOND_OPINION_RUNNER_UP).
    """
    if reading.confidence < SECOND_OPINION_BELOW:
        return f"rapidocr confidence {reading.confidence:.3f} < {SECOND_OPINION_BELOW}"
    registration = read_registration(reading.text)
    why = implausibility(registration)
    if why is not None:
        return f"the rapidocr text is no plausible plate: {why}"
    if registration.format_name == UNKNOWN_FORMAT:
        return "the rapidocr text fits no known plate format as read"
    if registration.confidence < SECOND_OPINION_FORMAT_BELOW:
        return f"best format fit {registration.confidence:.3f} < {SECOND_OPINION_FORMAT_BELOW}"
    for other in registration.alternatives:
        if (other.substitutions == 0 and other.text_normalised != registration.text_normalised
                and other.confidence >= SECOND_OPINION_RUNNER_UP * registration.confidence):
            return (f"{other.text_normalised} ({other.country}) fits {other.confidence:.3f}, nearly as well as "
                    f"{registration.text_normalised} {registration.confidence:.3f}")
    return None


def rejections(detector_confidence: float, best: dict[str, Any] | None) -> list[str]:
    """Why a detection with this reading (`choose_reading`'s best, None when nothing was read) is not a plate
    to match: under DETECTION_FLOOR, read under READING_FLOOR, or no plausible plate. Empty: it is one."""
    reasons = []
    if detector_confidence < DETECTION_FLOOR:
        reasons.append(f"detector confidence {detector_confidence:.3f} < {DETECTION_FLOOR}")
    if best is None:
        return [*reasons, "nothing was read"]
    if best["reader_confidence"] < READING_FLOOR:
        reasons.append(f"reader confidence {best['reader_confidence']:.3f} < {READING_FLOOR}")
    if best["implausibility"] is not None:
        reasons.append(f"no plausible plate: {best['implausibility']}")
    return reasons


def label(text: str, country: str | None, format_name: str | None, candidates: list[str]) -> str:
    """A plate finding's label: the text and the country it names, or the candidate countries, or that its
    format is unknown."""
    if country:
        return f"{text} ({country})"
    if format_name == UNKNOWN_FORMAT or not candidates:
        return f"{text} (unknown format)"
    return f"{text} (one of {', '.join(candidates)})"

