"""Leads: the live matches between two cases rolled up into one investigation suggestion (keyword-only access).

Two cases are linked when a live match (neither superseded nor rejected, `storage.graph.LIVE`) joins a finding of
one to a finding of the other (a "shared" link: the same plate, IBAN, face, print, a near-duplicate photo), or
when each has a live match to the same register record (a "register" link: both matched one vehicle or person;
confirmed only when both matches are; a vehicle whose plate the cases already share is not said twice). A lead is
one pair of cases with every link between them; it is computed from the matches when asked, so it follows every
review, re-analysis and re-import at once.

Its id (`lead_id`) is a name-based UUID of the pair (RFC 4122 version 5): the same lead keeps its id, and the id
says nothing of the cases (a reader who may see one case only cannot derive the other from it); `find_lead`
resolves an id among the pairs of the cases a reader may see.

Ranking (`rank`): leads with more confirmed links first, then more links, then stronger ones (a link's strength
is its score over the threshold in force, capped at STRENGTH_CAP, so modalities of different scales compare).

Reasons are written in plain words (`reason`, `summary`); whether values and the other case are named is the
API's decision (`api.routes.leads`), as is who may read a lead. `contacts` says whom to ask about a case: the
supervisors assigned to it, else the supervisors who assigned people to it.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session, aliased

from storage.accounts import CaseAssignment, User
from storage.graph import LIVE
from storage.matches import Match
from storage.persons import Person
from storage.roles import SUPERVISOR
from storage.tables import Case
from storage.vehicles import Vehicle

LEAD_NAMESPACE = uuid.UUID("5f0c2b7e-6a41-4c5e-9d0b-1c3a7e2f4b88")  # Locard's leads, for uuid5
STRENGTH_CAP = 2.0
MAX_LINK_ROWS = 20_000  # matches read for one case's leads at most
LINK_KINDS = ("shared", "register")
ENTITY_WORDS = {"national_number": ("national number", "a"), "iban": ("IBAN", "an"),
                "phone": ("phone number", "a"), "email": ("e-mail address", "an")}
MODALITY_WORDS = {"face": "a face", "fingerprint": "a fingerprint", "image": "a near-duplicate photo"}
PERSONAL_ENTITIES = frozenset({"national_number"})  # values that name a person: shown under the register rules


@dataclass(frozen=True)
class Link:
    """One reason two cases are linked: a match between their findings, or two matches to one register record."""

    kind: str  # one of LINK_KINDS
    modality: str
    status: str  # "confirmed" or "candidate"
    score: float
    strength: float
    match_ids: tuple[str, ...]
    evidence: tuple[tuple[str, str], ...]  # (case id, evidence id) of each side in a case
    entity_kind: str | None = None  # an entity link: its kind ("iban")
    value: str | None = None  # the plate read, the entity's value, the register vehicle's plate
    other_value: str | None = None  # the other plate read, when not the same
    keys: tuple[str, ...] = ()  # a plate link's plate keys (both readings), a register vehicle's
    record_kind: str | None = None  # a register link: "vehicle" or "person"
    record_id: str | None = None
    person_name: str | None = None
    national_number: str | None = None  # a person link's, or an entity link naming one


@dataclass(frozen=True)
class Lead:
    """Two linked cases (`cases`: ids, sorted) and every link between them."""

    id: str
    cases: tuple[str, str]
    references: tuple[str, str]
    links: tuple[Link, ...]

    @property
    def confirmed(self) -> int:
        return sum(1 for link in self.links if link.status == "confirmed")

    @property
    def strength(self) -> float:
        return round(sum(link.strength for link in self.links), 4)

    def other(self, case_id: str) -> str:
        return self.cases[1] if self.cases[0] == case_id else self.cases[0]


def lead_id(case_a: str, case_b: str) -> str:
    """The id of the lead between two cases, whichever is named first."""
    first, second = sorted((case_a, case_b))
    return str(uuid.uuid5(LEAD_NAMESPACE, f"{first}|{second}"))


def _strength(match: Match) -> float:
    if match.threshold <= 0:
        return 1.0
    return round(min(STRENGTH_CAP, max(0.0, match.score / match.threshold)), 4)


def _status(*matches: Match) -> str:
    return "confirmed" if all(match.status == "confirmed" for match in matches) else "candidate"


def _shared(match: Match) -> Link:
    detail = match.detail if isinstance(match.detail, dict) else {}
    assert match.target_case_id is not None and match.target_evidence_id is not None
    evidence = ((match.case_id, match.evidence_id), (match.target_case_id, match.target_evidence_id))
    common = {"kind": "shared", "modality": match.modality, "status": _status(match), "score": match.score,
              "strength": _strength(match), "match_ids": (match.id,), "evidence": evidence}
    if match.modality == "plate":
        same = detail.get("key") == detail.get("other_key")
        keys = tuple(sorted({str(detail[name]) for name in ("key", "other_key") if detail.get(name)}))
        return Link(**common, value=str(detail.get("reading") or detail.get("key") or ""),  # type: ignore[arg-type]
                    other_value=None if same else str(detail.get("other_reading") or detail.get("other_key") or ""),
                    keys=keys)
    if match.modality == "entity":
        kind, value = str(detail.get("entity_kind") or ""), str(detail.get("value") or "")
        return Link(**common, entity_kind=kind, value=value,  # type: ignore[arg-type]
                    national_number=value if kind in PERSONAL_ENTITIES else None)
    return Link(**common)  # type: ignore[arg-type]


def _register(first: Match, second: Match, vehicles: dict[str, Vehicle], persons: dict[str, Person]) -> Link:
    """Two cases' matches to one register record."""
    evidence = tuple(sorted(((first.case_id, first.evidence_id), (second.case_id, second.evidence_id))))
    common = {"kind": "register", "modality": first.modality, "status": _status(first, second),
              "score": min(first.score, second.score), "strength": min(_strength(first), _strength(second)),
              "match_ids": tuple(sorted((first.id, second.id))), "evidence": evidence,
              "record_kind": first.target_kind, "record_id": first.target_id}
    if first.target_kind == "vehicle":
        vehicle = vehicles.get(first.target_id)
        return Link(**common, value=vehicle.plate if vehicle else None,  # type: ignore[arg-type]
                    keys=(vehicle.plate_key,) if vehicle else ())
    person = persons.get(first.target_id)
    return Link(**common,  # type: ignore[arg-type]
                person_name=f"{person.given_names} {person.family_name}".strip() if person else None,
                national_number=person.national_number if person else None)


def _shared_matches(session: Session, condition: ColumnElement[bool]) -> Sequence[Match]:
    return session.scalars(select(Match).where(
        LIVE, Match.target_kind == "finding", Match.target_case_id.is_not(None),
        Match.target_case_id != Match.case_id, condition).order_by(Match.id).limit(MAX_LINK_ROWS)).all()


def _register_pairs(session: Session, *, case_id: str, other_id: str | None = None) -> list[tuple[Match, Match]]:
    """Pairs of live matches, the first from `case_id`, the second from another case, to the same record."""
    first, second = aliased(Match), aliased(Match)
    live_second = second.superseded_at.is_(None) & (second.status != "rejected")
    query = (select(first, second)
             .join(second, and_(second.target_kind == first.target_kind, second.target_id == first.target_id,
                                second.case_id != first.case_id, live_second))
             .where(first.case_id == case_id, first.target_kind.in_(("vehicle", "person")),
                    first.superseded_at.is_(None), first.status != "rejected"))
    if other_id is not None:
        query = query.where(second.case_id == other_id)
    return [(a, b) for a, b in session.execute(query.order_by(first.id, second.id).limit(MAX_LINK_ROWS)).tuples()]


def _leads(session: Session, shared: Sequence[Match], pairs: Sequence[tuple[Match, Match]]) -> list[Lead]:
    by_pair: dict[tuple[str, str], list[Link]] = {}
    for match in shared:
        assert match.target_case_id is not None
        key = (match.case_id, match.target_case_id)
        by_pair.setdefault((min(key), max(key)), []).append(_shared(match))
    best: dict[tuple[str, str, str, str], tuple[Match, Match]] = {}
    for a, b in pairs:  # per pair of cases and record, the strongest pair of matches
        record = (min(a.case_id, b.case_id), max(a.case_id, b.case_id), a.target_kind, a.target_id)
        held = best.get(record)
        if held is None or (_status(a, b) == "confirmed", min(_strength(a), _strength(b))) > (
                _status(*held) == "confirmed", min(_strength(held[0]), _strength(held[1]))):
            best[record] = (a, b)
    vehicle_ids = sorted({key[3] for key in best if key[2] == "vehicle"})
    person_ids = sorted({key[3] for key in best if key[2] == "person"})
    vehicles = {v.id: v for v in session.scalars(select(Vehicle).where(Vehicle.id.in_(vehicle_ids)))} \
        if vehicle_ids else {}
    persons = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(person_ids)))} \
        if person_ids else {}
    for (low, high, _, _), (a, b) in sorted(best.items()):
        link = _register(a, b, vehicles, persons)
        plates = {key for shared in by_pair.get((low, high), []) if shared.kind == "shared" for key in shared.keys}
        if link.record_kind == "vehicle" and plates & set(link.keys):
            continue  # the plate both cases read says it already
        by_pair.setdefault((low, high), []).append(link)
    cases = sorted({case for pair in by_pair for case in pair})
    references = dict(session.execute(select(Case.id, Case.reference).where(Case.id.in_(cases))).tuples().all()) \
        if cases else {}
    leads = []
    for (low, high), links in by_pair.items():
        ordered = sorted(links, key=lambda link: (link.status != "confirmed", link.kind != "shared", -link.strength,
                                                  link.modality, link.match_ids))
        leads.append(Lead(lead_id(low, high), (low, high), (references.get(low, ""), references.get(high, "")),
                          tuple(ordered)))
    return rank(leads)


def rank(leads: Sequence[Lead]) -> list[Lead]:
    """Confirmed links first, then the number of links, then their strength (the id breaks ties)."""
    return sorted(leads, key=lambda lead: (-lead.confirmed, -len(lead.links), -lead.strength, lead.id))


def leads_of_case(session: Session, *, case_id: str) -> list[Lead]:
    """Every lead of the case, ranked."""
    shared = _shared_matches(session, or_(Match.case_id == case_id, Match.target_case_id == case_id))
    return _leads(session, shared, _register_pairs(session, case_id=case_id))


def lead_between(session: Session, *, case_a: str, case_b: str) -> Lead | None:
    """The lead between two cases, or None when no live match links them."""
    if case_a == case_b:
        return None
    shared = _shared_matches(session, or_((Match.case_id == case_a) & (Match.target_case_id == case_b),
                                          (Match.case_id == case_b) & (Match.target_case_id == case_a)))
    found = _leads(session, shared, _register_pairs(session, case_id=case_a, other_id=case_b))
    return found[0] if found else None


def linked_cases(session: Session, *, case_ids: Collection[str] | None) -> set[tuple[str, str]]:
    """The pairs of linked cases (sorted ids) of which one is in `case_ids` (None: every case)."""
    shared = select(Match.case_id, Match.target_case_id).distinct().where(
        LIVE, Match.target_kind == "finding", Match.target_case_id.is_not(None), Match.target_case_id != Match.case_id)
    first, second = aliased(Match), aliased(Match)
    register = (select(first.case_id, second.case_id).distinct()
                .join(second, and_(second.target_kind == first.target_kind, second.target_id == first.target_id,
                                   second.case_id != first.case_id, second.superseded_at.is_(None),
                                   second.status != "rejected"))
                .where(first.target_kind.in_(("vehicle", "person")), first.superseded_at.is_(None),
                       first.status != "rejected"))
    if case_ids is not None:
        wanted = sorted(set(case_ids))
        if not wanted:
            return set()
        shared = shared.where(or_(Match.case_id.in_(wanted), Match.target_case_id.in_(wanted)))
        register = register.where(first.case_id.in_(wanted))
    pairs = set()
    for a, b in [*session.execute(shared).tuples(), *session.execute(register).tuples()]:
        if a is not None and b is not None:
            pairs.add((min(a, b), max(a, b)))
    return pairs


def find_lead(session: Session, *, lead: str, case_ids: Collection[str] | None) -> Lead | None:
    """The lead of this id among the pairs of `case_ids` (None: every case); None when there is none."""
    for case_a, case_b in sorted(linked_cases(session, case_ids=case_ids)):
        if lead_id(case_a, case_b) == lead:
            return lead_between(session, case_a=case_a, case_b=case_b)
    return None


def contacts(session: Session, *, case_ids: Collection[str]) -> dict[str, list[str]]:
    """Whom to ask about each case: its assigned supervisors, else the supervisors who assigned people to it
    (active accounts only; an empty list: no supervisor is named, ask any)."""
    wanted = sorted(set(case_ids))
    if not wanted:
        return {}
    rows = session.execute(select(CaseAssignment.case_id, CaseAssignment.username, CaseAssignment.assigned_by)
                           .where(CaseAssignment.case_id.in_(wanted))).tuples().all()
    names = sorted({name.lower() for _, assigned, by in rows for name in (assigned, by)})
    supervisors = {user.username for user in session.scalars(select(User).where(User.username.in_(names),
                                                                                User.active.is_(True)))
                   if SUPERVISOR in (user.roles or [])}
    answer: dict[str, list[str]] = {}
    for case_id in wanted:
        assigned = sorted({name for case, name, _ in rows if case == case_id and name in supervisors})
        assigners = sorted({by.lower() for case, _, by in rows if case == case_id and by.lower() in supervisors})
        answer[case_id] = assigned or assigners
    return answer


def reason(link: Link, *, named: bool) -> str:
    """The link in plain words: its values when `named` ("plate 1-ABC-234"), else what kind of link it is."""
    if link.kind == "register":
        if link.record_kind == "vehicle":
            return f"registered vehicle {link.value}" if named and link.value else "a registered vehicle"
        return f"registered person {link.person_name}" if named and link.person_name else "a registered person"
    if link.modality == "plate":
        if not named or not link.value:
            return "a plate"
        return f"plate {link.value}" if not link.other_value else f"plate {link.value} (read {link.other_value})"
    if link.modality == "entity":
        word, article = ENTITY_WORDS.get(link.entity_kind or "", ("identifier", "an"))
        return f"{word} {link.value}" if named and link.value else f"{article} {word}"
    return MODALITY_WORDS.get(link.modality, f"a {link.modality}")


def reasons(links: Sequence[Link], *, named: bool) -> str:
    """The links in plain words, the same reason and status said once ("a face (2, candidate)"), joined."""
    counted: dict[tuple[str, str], int] = {}
    for link in links:
        key = (reason(link, named=named), link.status)
        counted[key] = counted.get(key, 0) + 1
    said = [f"{words} ({status})" if count == 1 else f"{words} ({count}, {status})"
            for (words, status), count in counted.items()]
    return said[0] if len(said) == 1 else f"{', '.join(said[:-1])} and {said[-1]}"
