"""Plates: each plate read in evidence, against the vehicle register and against plates read in other evidence.

Consumes the matchable plates the plates analyzer read ("plates.plate"; "plates.candidate" is never matched)
and the plates the entities analyzer found in text ("entity.plate"). A reading is looked up by its plate key
(letters and digits: a missing or extra separator is the same key), its reader's own alternative readings, and
the OCR confusions of its key (`storage.plate_keys`: 0/O, 1/I, 8/B, 5/S, 2/Z; at most MAX_SUBSTITUTIONS swaps,
MAX_VARIANTS variants), all in one query per side. The score says which: EXACT, ALTERNATIVE (ALTERNATIVE_TRIMMED
when the alternative dropped a character), or TOLERANT_SCORES by the number of swaps; a register vehicle outside
the countries the reading allows scores COUNTRY_PENALTY times less, and one of another country than the plate
names (its EU band, an emblem) is no match. A vehicle that is stolen, wanted or signalled is flagged
(`detail["alert"]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from storage.identifiers import plate_key
from storage.matches import KeyHit, findings_by_keys
from storage.plate_keys import confusion_variants, confusions_applied
from storage.vehicles import Vehicle, vehicles_by_plate_keys
from workers.matchers.base import Key, Matcher, Proposal, Subject
from workers.matchers.registry import register

PLATE_KIND, ENTITY_KIND = "plates.plate", "entity.plate"
EXACT, ALTERNATIVE, ALTERNATIVE_TRIMMED = 1.0, 0.85, 0.65  # an alternative with an end character dropped: less
TOLERANT_SCORES = {1: 0.75, 2: 0.6}
COUNTRY_PENALTY = 0.9
THRESHOLD = 0.6
ALERT_STATUSES = frozenset({"stolen", "wanted", "signalled"})
NAMING_SOURCES = frozenset({"band", "emblem"})  # a country the plate itself shows, not one guessed from a format


@dataclass(frozen=True)
class PlateReading:
    """What a plate finding says, for matching: its key, its alternatives' keys and its countries."""

    text: str
    key: str
    alternatives: tuple[str, ...]
    country: str | None  # named by the plate itself (band, emblem): another country's vehicle is not this one
    countries: tuple[str, ...]  # the countries whose formats fit (empty: any)


def reading_of(subject: Subject) -> PlateReading:
    """The reading of a "plates.plate" or "entity.plate" finding."""
    data = subject.data
    if subject.kind == ENTITY_KIND:
        details = data.get("details") or {}
        text = str(data.get("value") or subject.label or "")
        alternatives = [str(alt.get("value") or "") for alt in details.get("alternatives") or []]
        guessed = details.get("country")
        return PlateReading(text, plate_key(text), _keys(alternatives, text), None, (guessed,) if guessed else ())
    text = str(data.get("text") or data.get("text_read") or "")
    alternatives = [str(alt.get("text_normalised") or "") for alt in data.get("alternatives") or []]
    named = data.get("country") if data.get("country_source") in NAMING_SOURCES else None
    countries = tuple(data.get("candidate_countries") or ()) or ((data["country"],) if data.get("country") else ())
    return PlateReading(text, plate_key(text), _keys(alternatives, text), named, countries)


def _keys(texts: list[str], reading: str) -> tuple[str, ...]:
    own = plate_key(reading)
    return tuple(dict.fromkeys(key for key in map(plate_key, texts) if key and key != own))


@register
class PlateMatcher(Matcher):
    """Plates read in evidence, against the vehicle register and the plates read in other evidence."""

    name = "plates"
    version = "1.0.0"
    modality = "plate"
    consumes = frozenset({PLATE_KIND, ENTITY_KIND})
    threshold = THRESHOLD

    def wants(self, subject: Subject) -> bool:
        return subject.kind in self.consumes and subject.data.get("matchable", True) is not False

    def keys(self, subject: Subject) -> list[Key]:
        reading = reading_of(subject)
        if not reading.key:
            return []
        return [Key(reading.key, True)] + [Key(alternative, False) for alternative in reading.alternatives]

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        reading = reading_of(subject)
        if not reading.key:
            return []
        lookup = self._lookup(reading)
        proposals = [self._to_vehicle(subject, reading, vehicle, lookup[vehicle.plate_key])
                     for vehicle in vehicles_by_plate_keys(session, keys=list(lookup))]
        hits: dict[str, KeyHit] = {}
        for hit in findings_by_keys(session, modality=self.modality, keys=list(lookup),
                                    exclude_evidence_id=subject.evidence_id):
            best = hits.get(hit.finding_id)
            if best is None or self._hit_method(hit, lookup)[1] > self._hit_method(best, lookup)[1]:
                hits[hit.finding_id] = hit
        proposals += [self._to_finding(subject, reading, hit, lookup) for hit in hits.values()]
        return [proposal for proposal in proposals if proposal is not None]

    @staticmethod
    def _lookup(reading: PlateReading) -> dict[str, tuple[str, float]]:
        """Every key to look up, with how it relates to the reading: (method, score)."""
        lookup = {variant: ("tolerant", TOLERANT_SCORES.get(swaps, 0.0))
                  for variant, swaps in confusion_variants(reading.key).items()}
        lookup.update({alternative: ("alternative", ALTERNATIVE if len(alternative) == len(reading.key)
                                     else ALTERNATIVE_TRIMMED) for alternative in reading.alternatives})
        lookup[reading.key] = ("exact", EXACT)
        return lookup

    @staticmethod
    def _hit_method(hit: KeyHit, lookup: dict[str, tuple[str, float]]) -> tuple[str, float]:
        method, score = lookup[hit.key]
        if method == "exact" and not hit.exact:
            return "alternative", ALTERNATIVE  # our reading is one of the other finding's alternatives
        return method, score

    def _to_vehicle(self, subject: Subject, reading: PlateReading, vehicle: Vehicle,
                    how: tuple[str, float]) -> Proposal | None:
        if reading.country is not None and vehicle.country != reading.country:
            return None
        method, score = how
        agrees = None if not reading.countries else vehicle.country in reading.countries
        if agrees is False:
            score *= COUNTRY_PENALTY
        detail: dict[str, Any] = {
            **self._side_a(subject, reading), "register_plate": vehicle.plate, "matched_key": vehicle.plate_key,
            "vehicle_country": vehicle.country, "country_agrees": agrees,
            "confusions": confusions_applied(reading.key, vehicle.plate_key) if method == "tolerant" else [],
            "vehicle": {"make": vehicle.make, "model": vehicle.model, "colour": vehicle.colour},
            "vehicle_status": vehicle.status, "status_authority": vehicle.status_authority,
            "status_date": vehicle.status_date.isoformat() if vehicle.status_date else None,
            "alert": vehicle.status in ALERT_STATUSES}
        return Proposal("vehicle", vehicle.id, round(score, 4), method, detail)

    def _to_finding(self, subject: Subject, reading: PlateReading, hit: KeyHit,
                    lookup: dict[str, tuple[str, float]]) -> Proposal | None:
        other = reading_of(hit)
        if reading.country and other.country and reading.country != other.country:
            return None
        method, score = self._hit_method(hit, lookup)
        detail = {**self._side_a(subject, reading), "other_reading": other.text, "other_key": other.key,
                  "other_country": other.country or (list(other.countries) or None), "matched_key": hit.key,
                  "confusions": confusions_applied(reading.key, hit.key) if method == "tolerant" else [],
                  "same_case": hit.case_id == subject.case_id}
        return Proposal("finding", hit.finding_id, round(score, 4), method, detail, target_evidence_id=hit.evidence_id,
                        target_case_id=hit.case_id, target_analyzer=hit.analyzer, target_version=hit.analyzer_version)

    @staticmethod
    def _side_a(subject: Subject, reading: PlateReading) -> dict[str, Any]:
        return {"reading": reading.text, "text_read": subject.data.get("text_read") or subject.data.get("raw"),
                "key": reading.key, "reading_country": reading.country or (list(reading.countries) or None),
                "finding_confidence": subject.confidence}
