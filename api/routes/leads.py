"""Leads between cases and the identity graph around a node (issue 13).

Who: investigators, forensic examiners and supervisors (`MATCHING_ROLES`), checked first; auditors,
administrators and case systems never read leads.

What a reader sees of a lead (`storage.leads`), read from one of its cases (the *anchor*: the case asked for, or
for one lead the case of the pair the reader may see, the purpose's case first). `GET /cases/{id}/leads` ranks a
case's leads (`other_case_id`: the one with a given other case the reader may see), `GET /leads/{id}` reads one:

* the anchor is always named; the other case is named, with every link's values (the plate, the IBAN, the
  registered vehicle or person), items and matches, only when the reader may see it **and** has stated a purpose
  (the purpose headers), as for a match's other side (`api.routes.matches`);
* a case the reader may not see is never named: the lead says that another case exists, what kind of links join
  them (a plate, a near-duplicate photo: no values) and whom to ask (`LeadCaseRead.ask`: its supervisors,
  `storage.leads.contacts`); the lead's id is the reference to give them. Without a purpose a visible other case
  is withheld the same way ("purpose"), without anyone to ask;
* persons (a registered person's name and national number, a national number read in text) are shown only with
  the purpose, and each is noted for the audit log (`api.access.note_persons`); the other cases shown are noted
  as `cases_shown`.

`GET /graph` (purpose required: the graph crosses cases) answers `storage.graph.neighbourhood` around an item, a
trace (a face or a print: a finding id; a plate; a national number, IBAN, phone number or e-mail address) or a
register record; the root must be one the reader may see (an item or trace in a hidden case is answered 404,
like a missing one). Nodes in cases the reader may not see are placeholders with whom to ask, never their ids.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session

from api.access import note_of, note_persons
from api.deps import (
    MATCHING_ROLES,
    CurrentCase,
    Purpose,
    PurposeDep,
    SessionDep,
    case_visible,
    require_roles,
    visible_case_ids,
    visible_case_or_404,
)
from api.principal import Principal
from api.problems import Problem
from api.routes.registers import OptionalPurpose
from api.schemas.leads import GraphEdgeRead, GraphNodeRead, GraphRead, LeadCaseRead, LeadLinkRead, LeadRead
from storage import graph, leads, match_queries, persons, records, vehicles
from storage.graph import Node
from storage.identifiers import national_number_digits, parse_national_number, plate_key
from storage.leads import Lead

router = APIRouter(tags=["leads"])
LeadReader = Annotated[Principal, require_roles(*MATCHING_ROLES)]
Offset = Annotated[int, Query(ge=0, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
NodeKind = Literal["evidence", "face", "print", "plate", "national_number", "iban", "phone", "email", "person",
                   "vehicle"]  # storage.graph.NODE_KINDS


class _Shown:
    """What a request showed, for its audit entry: persons (national numbers) and the other cases named."""

    def __init__(self) -> None:
        self.persons: list[str] = []
        self.cases: set[str] = set()

    def note(self, request: Request, *, anchor: str | None = None) -> None:
        note_persons(request, self.persons)
        note = note_of(request)
        if note is None:
            return
        shown = sorted(self.cases - {anchor})
        if shown:
            note.detail["cases_shown"] = shown


def _link_read(link: leads.Link, *, named: bool, shown: _Shown) -> LeadLinkRead:
    read = LeadLinkRead(kind=link.kind, modality=link.modality,  # type: ignore[arg-type]
                        status=link.status, score=link.score, strength=link.strength,
                        reason=leads.reason(link, named=named))
    if not named:
        return read
    if link.national_number:
        shown.persons.append(link.national_number)
    value = link.value if link.record_kind != "person" else link.person_name
    return read.model_copy(update={
        "match_ids": list(link.match_ids), "value": value, "record_kind": link.record_kind,
        "record_id": link.record_id,
        "evidence": [{"case_id": case_id, "evidence_id": evidence_id} for case_id, evidence_id in link.evidence]})


def _lead_read(session: Session, principal: Principal, lead: Lead, *, anchor: str, purpose: Purpose | None,
               shown: _Shown) -> LeadRead:
    other = lead.other(anchor)
    references = dict(zip(lead.cases, lead.references, strict=True))
    visible = case_visible(session, principal, other)
    named = visible and purpose is not None
    links = [_link_read(link, named=named, shown=shown) for link in lead.links]
    said = leads.reasons(lead.links, named=named)
    if named:
        shown.cases.add(other)
        other_read = LeadCaseRead(case_id=other, reference=references[other])
        summary = f"cases {references[anchor]} and {references[other]} share {said}"
    elif visible:
        other_read = LeadCaseRead(withheld="purpose")
        summary = f"case {references[anchor]} and another case share {said}; state a purpose to see which"
    else:
        ask = leads.contacts(session, case_ids=[other]).get(other, [])
        other_read = LeadCaseRead(withheld="not_assigned", ask=ask)
        summary = (f"case {references[anchor]} and another case share {said}; "
                   f"ask {', '.join(ask) if ask else 'a supervisor'} about lead {lead.id}")
    return LeadRead(id=lead.id, case=LeadCaseRead(case_id=anchor, reference=references[anchor]), other=other_read,
                    summary=summary, confirmed=lead.confirmed, links_count=len(lead.links), strength=lead.strength,
                    links=links)


@router.get("/cases/{case_id}/leads", response_model=list[LeadRead])
def case_leads(request: Request, principal: LeadReader, case: CurrentCase, session: SessionDep,
               purpose: OptionalPurpose, other_case_id: Annotated[str | None, Query(max_length=64)] = None,
               offset: Offset = 0, limit: Limit = 50) -> list[LeadRead]:
    """The case's leads, ranked (confirmed links first, then more and stronger links); another case is named only
    when the caller may see it and states a purpose, else whom to ask is said (see the module). `other_case_id`
    asks for the lead with one other case the caller may see (404 for one it may not see, like a missing one;
    an empty list when nothing links them)."""
    shown = _Shown()
    if other_case_id is not None:
        other = visible_case_or_404(request, session, principal, other_case_id)
        note = note_of(request)
        if note is not None:
            note.case_id = case.id  # the case asked for, not the other (`visible_case_or_404` noted it)
        lead = leads.lead_between(session, case_a=case.id, case_b=other.id) if other.id != case.id else None
        found = [lead] if lead is not None else []
    else:
        found = leads.leads_of_case(session, case_id=case.id)[offset:offset + limit]
    answered = [_lead_read(session, principal, lead, anchor=case.id, purpose=purpose, shown=shown) for lead in found]
    shown.note(request, anchor=case.id)
    return answered


@router.get("/leads/{lead_id}", response_model=LeadRead)
def get_lead(request: Request, principal: LeadReader, lead_id: Annotated[str, Path(max_length=64)],
             session: SessionDep, purpose: OptionalPurpose) -> LeadRead:
    """One lead, for a caller who may see one of its cases (else 404), read from that case (the purpose's case
    when it is one of the two)."""
    lead = leads.find_lead(session, lead=lead_id, case_ids=visible_case_ids(session, principal))
    seen = [] if lead is None else [case for case in lead.cases if case_visible(session, principal, case)]
    if lead is None or not seen:
        raise Problem(404, "Lead not found", f"There is no lead {lead_id}.")
    anchor = purpose.case_id if purpose is not None and purpose.case_id in seen else seen[0]
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = anchor, lead.id
    shown = _Shown()
    answered = _lead_read(session, principal, lead, anchor=anchor, purpose=purpose, shown=shown)
    shown.note(request, anchor=anchor)
    return answered


def _root(request: Request, session: Session, principal: Principal, kind: str, key: str) -> Node:
    """The node asked for, checked: 404 for an item, trace or record the caller may not see or that does not
    exist; 422 for a value that is not one."""
    if kind == "evidence":
        evidence = records.get_evidence(session, evidence_id=key)
        if evidence is None or not case_visible(session, principal, evidence.case_id):
            raise Problem(404, "Node not found", f"There is no evidence item {key}.")
        visible_case_or_404(request, session, principal, evidence.case_id)
        return Node(kind, evidence.id)
    if kind in graph.FINDING_NODE_KINDS:
        finding = records.get_finding(session, finding_id=key)
        if finding is None or finding.kind != graph.FINDING_NODE_KINDS[kind] \
                or not case_visible(session, principal, finding.case_id):
            raise Problem(404, "Node not found", f"There is no {kind} {key}.")
        visible_case_or_404(request, session, principal, finding.case_id)
        return Node(kind, finding.id)
    if kind == "person":
        if persons.get_person_by_id(session, person_id=key) is None:
            raise Problem(404, "Node not found", f"There is no registered person {key}.")
        return Node(kind, key)
    if kind == "vehicle":
        if vehicles.get_vehicle(session, vehicle_id=key) is None:
            raise Problem(404, "Node not found", f"There is no registered vehicle {key}.")
        return Node(kind, key)
    if kind == "plate":
        plate = plate_key(key)
        if not plate:
            raise Problem(422, "Invalid plate", "The plate has no letters or digits.")
        return Node(kind, plate)
    if kind == "national_number":
        digits = national_number_digits(key)
        if not (digits.isascii() and digits.isdigit() and len(digits) == 11) or parse_national_number(digits) is None:
            raise Problem(422, "Invalid national number", f"{key!r} is not a valid national register number.")
        return Node(kind, digits)
    value = key.strip()
    if not value or not value.isprintable():
        raise Problem(422, "Invalid value", f"{key!r} is not a {kind}.")
    return Node(kind, value)


def _graph_read(session: Session, principal: Principal, found: graph.Graph, depth: int, shown: _Shown) -> GraphRead:
    cases = sorted({facts.case_id for facts in found.facts.values() if facts.case_id})
    visible = {case: case_visible(session, principal, case) for case in cases}
    references = match_queries.case_references(session, case_ids=[case for case in cases if visible[case]])
    hidden = [case for case in cases if not visible[case]]
    ask = leads.contacts(session, case_ids=hidden)
    def withheld(node: Node) -> bool:
        case_id = found.facts.get(node, graph.NodeFacts()).case_id
        return case_id is not None and not visible.get(case_id, False)

    ids: dict[Node, str] = {}
    nodes = []
    for node in sorted(found.depth, key=lambda n: (found.depth[n], withheld(n), n)):  # placeholders after the rest
        facts = found.facts.get(node, graph.NodeFacts())
        if withheld(node):
            ids[node] = f"withheld:{sum(1 for name in ids.values() if name.startswith('withheld:')) + 1}"
            nodes.append(GraphNodeRead(id=ids[node], kind=node.kind, distance=found.depth[node],
                                       withheld="not_assigned", ask=ask.get(facts.case_id or "", [])))
            continue
        ids[node] = f"{node.kind}:{node.id}"
        if facts.case_id is not None:
            shown.cases.add(facts.case_id)
        if node.kind == "national_number":
            shown.persons.append(node.id)
        if node.kind == "person" and facts.exists:
            shown.persons.append(str(facts.fields["national_number"]))
        nodes.append(GraphNodeRead(id=ids[node], kind=node.kind, key=node.id, distance=found.depth[node],
                                   case_id=facts.case_id, case_reference=references.get(facts.case_id or ""),
                                   evidence_id=facts.evidence_id, label=facts.label, fields=facts.fields,
                                   exists=facts.exists))
    edges = [GraphEdgeRead(kind=edge.kind, source=ids[edge.source],  # type: ignore[arg-type]
                           target=ids[edge.target], via=ids[edge.via] if edge.via is not None else None,
                           match_id=edge.match_id, modality=edge.modality, score=edge.score,
                           threshold=edge.threshold, status=edge.status) for edge in found.edges]
    return GraphRead(root=ids[found.root], depth=depth, truncated=found.truncated, nodes=nodes,
                     edges=edges)


@router.get("/graph", response_model=GraphRead)
def get_graph(request: Request, principal: LeadReader, session: SessionDep, purpose: PurposeDep,
              node_kind: NodeKind, node_id: Annotated[str, Query(min_length=1, max_length=200)],
              depth: Annotated[int, Query(ge=1, le=graph.MAX_DEPTH)] = 1,
              limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> GraphRead:
    """The identity graph up to `depth` hops around a node, at most `limit` nodes; needs a purpose (see the
    module)."""
    root = _root(request, session, principal, node_kind, node_id)
    found = graph.neighbourhood(session, node=root, depth=depth, limit=limit)
    shown = _Shown()
    answered = _graph_read(session, principal, found, depth, shown)
    note = note_of(request)
    shown.note(request, anchor=note.case_id if note is not None else None)
    return answered
