"""Text entities: national numbers against the persons register, and identifiers shared between evidence items.

Consumes what the entities analyzer found in text: a national number (eleven digits, its check already passed)
links to the person registered under it; a national number, an IBAN, a phone number (E.164) or an e-mail
address links to the same value found in other evidence, in any case. Values are compared as the entities
analyzer normalised them, exactly: these identifiers carry their own checks (mod-97, phone parsing), so a
tolerant match would link different people. Plates found in text are the plate matcher's.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.matches import findings_by_keys
from storage.persons import Person
from workers.matchers.base import Key, Matcher, Proposal, Subject
from workers.matchers.registry import register

KINDS = ("national_number", "iban", "phone", "email")
PERSON_KIND = "national_number"


def entity_kind(subject: Subject) -> str:
    return subject.kind.removeprefix("entity.")


def value_of(subject: Subject) -> str:
    return str(subject.data.get("value") or subject.label or "")


@register
class EntityMatcher(Matcher):
    """Identifiers found in text, against the persons register and the same identifiers in other evidence."""

    name = "entities"
    version = "1.0.0"
    modality = "entity"
    consumes = frozenset(f"entity.{kind}" for kind in KINDS)
    threshold = 1.0  # exact only

    def keys(self, subject: Subject) -> list[Key]:
        value = value_of(subject)
        return [Key(f"{entity_kind(subject)}:{value}", True)] if value else []

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        value, kind = value_of(subject), entity_kind(subject)
        if not value:
            return []
        side_a: dict[str, Any] = {"entity_kind": kind, "value": value, "raw": subject.data.get("raw"),
                                  "page": subject.data.get("page")}
        proposals = []
        if kind == PERSON_KIND:
            person = session.scalar(select(Person).where(Person.national_number == value))
            if person is not None:
                proposals.append(Proposal("person", person.id, 1.0, "exact", side_a))
        seen = set()
        for hit in findings_by_keys(session, modality=self.modality, keys=[f"{kind}:{value}"],
                                    exclude_evidence_id=subject.evidence_id):
            if hit.finding_id in seen:
                continue
            seen.add(hit.finding_id)
            detail = {**side_a, "other_raw": hit.data.get("raw"), "other_page": hit.data.get("page"),
                      "same_case": hit.case_id == subject.case_id}
            proposals.append(Proposal("finding", hit.finding_id, 1.0, "exact", detail,
                                      target_evidence_id=hit.evidence_id, target_case_id=hit.case_id,
                                      target_analyzer=hit.analyzer, target_version=hit.analyzer_version))
        return proposals
