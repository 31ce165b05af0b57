"""The identity graph: what the live matches say links evidence, traces and register records (keyword-only access).

Nodes (`Node`: a kind and an id):

* "evidence" (an item's id), and the traces read in it: "face" and "print" (the finding's id: each is its own
  trace), "plate" (the plate key, `storage.identifiers.plate_key`: every item that read the same plate holds the
  same node), "national_number", "iban", "phone" and "email" (the value as the entities analyzer normalised it);
* register records: "person" and "vehicle" (the record's id).

Edges (`Edge`): "contains", from an item to each trace read in it (found from the keys the cross-matcher indexed,
`storage.matches.MatchKey`, and the item's face and fingerprint findings), and "match", one per live match
(neither superseded nor rejected), with its modality, score, threshold and status, between the traces of its two
sides (a plate and a vehicle, two faces, a print and a person). A match whose two sides are one node (the same
plate read in two items, the same IBAN in two documents) links the two *items*, `via` that node; a near-duplicate
image links the two items themselves.

`neighbourhood` answers the graph up to two hops around a node from indexed lookups only, one batch of queries per
hop and node kind: matches by side A finding, by side B target, by item on either side, keys by (modality, key)
and by item. Each hop fetches at most `limit` edges of each kind, matches before "contains" edges, confirmed
before candidates, highest score first, and the graph holds at most `limit` nodes (`truncated` says when more
may have been left out; once it is full, no further hop is read). The best matches of a node are read from
partial covering indexes of the live matches in that order (`GRAPH_INDEXES`, migration 0014): a node with 10^4
matches reads its first `limit` entries, not all of them; a plate or identifier read in 10^4 items still probes
the index once per reading.
Nothing here decides who may see what: `api.routes.leads` does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Index, or_, select, true
from sqlalchemy.orm import Session

from storage.matches import Match, MatchKey
from storage.persons import Person
from storage.tables import Evidence, Finding
from storage.vehicles import Vehicle

ENTITY_NODE_KINDS = ("national_number", "iban", "phone", "email")  # workers.matchers.entities.KINDS
VALUE_NODE_KINDS = ("plate", *ENTITY_NODE_KINDS)  # one node per value, whatever item it was read in
FINDING_NODE_KINDS = {"face": "faces.face", "print": "fingerprint.template"}  # node kind -> finding kind
NODE_KINDS = ("evidence", "face", "print", *VALUE_NODE_KINDS, "person", "vehicle")
EDGE_KINDS = ("contains", "match")
MAX_DEPTH = 2
ITEM_MODALITIES = ("image", "plate", "entity")  # matches that may have an item as an end (see `match_edge`)
LIVE: ColumnElement[bool] = Match.superseded_at.is_(None) & (Match.status != "rejected")


# The graph's lookups (migration 0014): live matches only, in the order asked after the lookup columns, covering
# what step one of `_matches_of` reads; declared here, with the queries that need them, on the tables of
# `storage.matches`.
GRAPH_INDEXES = (
    *(Index(name, *columns, Match.status, Match.score, Match.id, Match.superseded_at,
            sqlite_where=Match.superseded_at.is_(None),
            postgresql_where=Match.superseded_at.is_(None)) for name, columns in (
        ("ix_matches_live_target", (Match.target_kind, Match.target_id)),
        ("ix_matches_live_finding", (Match.finding_id,)),
        ("ix_matches_live_evidence", (Match.evidence_id, Match.target_kind, Match.modality)),
        ("ix_matches_live_target_evidence", (Match.target_evidence_id, Match.target_kind, Match.modality)))),
    Index("ix_match_keys_items", MatchKey.modality, MatchKey.key, MatchKey.exact, MatchKey.evidence_id,
          MatchKey.finding_id),
)


@dataclass(frozen=True, order=True)
class Node:
    """A node of the identity graph (see the module)."""

    kind: str
    id: str


@dataclass(frozen=True)
class Edge:
    """A "contains" edge (item -> trace) or a "match" edge (one live match; `via`: the node both sides share)."""

    kind: str
    source: Node
    target: Node
    match_id: str | None = None
    modality: str | None = None
    score: float | None = None
    threshold: float | None = None
    status: str | None = None
    via: Node | None = None

    @property
    def key(self) -> tuple[str, Node, Node, str | None]:
        return self.kind, self.source, self.target, self.match_id


@dataclass(frozen=True)
class NodeFacts:
    """What the record store says of a node: its case (items and their traces), a label, register fields."""

    case_id: str | None = None
    evidence_id: str | None = None
    label: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    exists: bool = True


@dataclass(frozen=True)
class Graph:
    """The graph around `root`: each node with its distance from the root, the edges between them."""

    root: Node
    depth: dict[Node, int]
    edges: list[Edge]
    facts: dict[Node, NodeFacts]
    truncated: bool


def entity_node(key: str) -> Node | None:
    """The node of an entity key as the cross-matcher indexes it ("iban:BE68...")."""
    kind, _, value = key.partition(":")
    return Node(kind, value) if kind in ENTITY_NODE_KINDS and value else None


def entity_key(node: Node) -> str:
    return f"{node.kind}:{node.id}"


class MatchSides(Protocol):
    """What an edge needs of a match: a `Match`, or a row of `EDGE_COLUMNS`."""

    id: str
    modality: str
    finding_id: str
    evidence_id: str
    target_kind: str
    target_id: str
    target_evidence_id: str | None
    score: float
    threshold: float
    status: str
    detail: dict[str, Any]


EDGE_COLUMNS = (Match.id, Match.modality, Match.finding_id, Match.evidence_id, Match.target_kind, Match.target_id,
                Match.target_evidence_id, Match.score, Match.threshold, Match.status, Match.detail)


def _side_nodes(match: MatchSides) -> tuple[Node | None, Node | None]:
    """The trace nodes of a match's two sides (None where the match does not say)."""
    detail = match.detail if isinstance(match.detail, dict) else {}
    if match.modality == "plate":
        a: Node | None = Node("plate", str(detail["key"])) if detail.get("key") else None
    elif match.modality == "entity":
        kind, value = str(detail.get("entity_kind") or ""), str(detail.get("value") or "")
        a = Node(kind, value) if kind in ENTITY_NODE_KINDS and value else None
    elif match.modality == "face":
        a = Node("face", match.finding_id)
    elif match.modality == "fingerprint":
        a = Node("print", match.finding_id)
    else:  # an image: the picture is the item
        a = Node("evidence", match.evidence_id)
    if match.target_kind in ("vehicle", "person"):
        return a, Node(match.target_kind, match.target_id)
    if match.modality == "plate":
        b = Node("plate", str(detail["other_key"])) if detail.get("other_key") else None
    elif match.modality == "entity":
        b = a
    elif match.modality in ("face", "fingerprint"):
        b = Node("face" if match.modality == "face" else "print", match.target_id)
    else:
        b = Node("evidence", match.target_evidence_id) if match.target_evidence_id else None
    return a, b


def match_edge(match: MatchSides) -> Edge | None:
    """The edge of a match (see the module); None for a match whose detail names no trace."""
    a, b = _side_nodes(match)
    if a is None or b is None:
        return None
    via = None
    if a == b and match.target_evidence_id is not None:
        via, a, b = a, Node("evidence", match.evidence_id), Node("evidence", match.target_evidence_id)
    return Edge("match", a, b, match.id, match.modality, match.score, match.threshold, match.status, via)


def _conditions(nodes: Sequence[Node]) -> list[ColumnElement[bool]]:
    """One condition per indexed lookup of the matches touching these nodes (no OR across two indexes, so each
    is answered from one index)."""
    by_kind: dict[str, list[str]] = {}
    for node in nodes:
        by_kind.setdefault(node.kind, []).append(node.id)
    conditions: list[ColumnElement[bool]] = []
    for kind, ids in sorted(by_kind.items()):
        if kind == "evidence":  # an item is an end of image matches and of those that share a value only
            for modality in ITEM_MODALITIES:  # one index range each, read in the order asked
                items = (Match.target_kind == "finding") & (Match.modality == modality)
                conditions += [Match.evidence_id.in_(ids) & items, Match.target_evidence_id.in_(ids) & items]
        elif kind in FINDING_NODE_KINDS:
            conditions += [Match.finding_id.in_(ids), (Match.target_kind == "finding") & Match.target_id.in_(ids)]
        elif kind in ("person", "vehicle"):
            conditions.append((Match.target_kind == kind) & Match.target_id.in_(ids))
        elif kind in VALUE_NODE_KINDS:
            modality = "plate" if kind == "plate" else "entity"
            keys = ids if kind == "plate" else [f"{kind}:{value}" for value in ids]
            keyed = select(MatchKey.finding_id).where(MatchKey.modality == modality, MatchKey.key.in_(keys),
                                                      MatchKey.exact == true())
            # a finding read under a key of this modality is matched in this modality only
            conditions += [Match.finding_id.in_(keyed), (Match.target_kind == "finding") & Match.target_id.in_(keyed)]
    return conditions


def _matches_of(session: Session, nodes: Sequence[Node], limit: int) -> list[Edge]:
    """The match edges touching these nodes (an item, a trace, a record): the best `limit` (confirmed first, then
    by score; statuses sort "confirmed" > "candidate" and rejected ones are not live). Step one reads the best
    ids of each lookup from its covering index (`GRAPH_INDEXES`), step two the rows of the best `limit`."""
    ranked: dict[str, tuple[bool, float, str]] = {}
    for condition in _conditions(nodes):
        query = (select(Match.id, Match.status, Match.score).where(LIVE, condition)
                 .order_by(Match.status.desc(), Match.score.desc(), Match.id).limit(limit))
        for match_id, status, score in session.execute(query).tuples():
            ranked[match_id] = (status != "confirmed", -score, match_id)
    best = sorted(ranked, key=ranked.__getitem__)[:limit]
    if not best:
        return []
    rows = sorted(session.execute(select(*EDGE_COLUMNS).where(Match.id.in_(best))), key=lambda row: ranked[row.id])
    return [edge for edge in map(match_edge, rows) if edge is not None]


def _contains_of(session: Session, nodes: Sequence[Node], limit: int) -> list[Edge]:
    """The "contains" edges touching these nodes: an item's traces, the items a trace was read in."""
    items = [node.id for node in nodes if node.kind == "evidence"]
    edges = []
    if items:
        for evidence_id, modality, key in session.execute(
                select(MatchKey.evidence_id, MatchKey.modality, MatchKey.key)
                .where(MatchKey.evidence_id.in_(items), MatchKey.exact == true())
                .order_by(MatchKey.id).limit(limit)).tuples():
            trace = Node("plate", key) if modality == "plate" else entity_node(key)
            if trace is not None:
                edges.append(Edge("contains", Node("evidence", evidence_id), trace))
        for evidence_id, kind, finding_id in session.execute(
                select(Finding.evidence_id, Finding.kind, Finding.id)
                .where(Finding.evidence_id.in_(items), Finding.kind.in_(list(FINDING_NODE_KINDS.values())))
                .order_by(Finding.id).limit(limit)).tuples():
            node_kind = "face" if kind == FINDING_NODE_KINDS["face"] else "print"
            edges.append(Edge("contains", Node("evidence", evidence_id), Node(node_kind, finding_id)))
    values = [node for node in nodes if node.kind in VALUE_NODE_KINDS]
    plates = [node.id for node in values if node.kind == "plate"]
    entities = [entity_key(node) for node in values if node.kind != "plate"]
    for modality, keys in (("plate", plates), ("entity", entities)):
        if not keys:
            continue
        for evidence_id, key in session.execute(
                select(MatchKey.evidence_id, MatchKey.key)
                .where(MatchKey.modality == modality, MatchKey.key.in_(keys), MatchKey.exact == true())
                .order_by(MatchKey.evidence_id).limit(limit)).tuples():
            trace = Node("plate", key) if modality == "plate" else entity_node(key)
            if trace is not None:
                edges.append(Edge("contains", Node("evidence", evidence_id), trace))
    traces = [node.id for node in nodes if node.kind in FINDING_NODE_KINDS]
    if traces:
        for finding_id, kind, evidence_id in session.execute(
                select(Finding.id, Finding.kind, Finding.evidence_id).where(Finding.id.in_(traces))).tuples():
            node_kind = "face" if kind == FINDING_NODE_KINDS["face"] else "print"
            edges.append(Edge("contains", Node("evidence", evidence_id), Node(node_kind, finding_id)))
    return edges


def _ends(edge: Edge) -> tuple[Node, ...]:
    return (edge.source, edge.target) if edge.via is None else (edge.source, edge.target, edge.via)


def neighbourhood(session: Session, *, node: Node, depth: int = 1, limit: int = 200) -> Graph:
    """The graph up to `depth` (1-2) hops around `node`, at most `limit` nodes (see the module for the order)."""
    if node.kind not in NODE_KINDS:
        raise ValueError(f"{node.kind!r} is not one of {', '.join(NODE_KINDS)}")
    if not 1 <= depth <= MAX_DEPTH or limit < 1:
        raise ValueError(f"depth is 1-{MAX_DEPTH} and limit at least 1")
    seen: dict[Node, int] = {node: 0}
    edges: dict[tuple[str, Node, Node, str | None], Edge] = {}
    frontier, truncated = [node], False
    for hop in range(1, depth + 1):
        if len(seen) >= limit:  # full: a further hop could add no node
            truncated = True
            break
        following: list[Node] = []
        asked = set(frontier)
        matched, contained = _matches_of(session, frontier, limit), _contains_of(session, frontier, limit)
        truncated = truncated or len(matched) >= limit or len(contained) >= limit  # more may have been left
        for edge in matched + contained:
            if edge.key in edges or asked.isdisjoint(_ends(edge)):
                continue  # seen, or not touching the nodes asked about (a plate's match, asked from its item)
            for end in _ends(edge):
                if end not in seen and len(seen) < limit:
                    seen[end] = hop
                    following.append(end)
            if all(end in seen for end in _ends(edge)):
                edges[edge.key] = edge
            else:
                truncated = True
        frontier = following
    return Graph(node, seen, list(edges.values()), node_facts(session, nodes=list(seen)), truncated)


def node_facts(session: Session, *, nodes: Iterable[Node]) -> dict[Node, NodeFacts]:
    """What the record store holds of each node, in one query per kind (`exists` False: not held, or gone)."""
    wanted = list(nodes)
    facts = {node: NodeFacts(label=node.id) for node in wanted if node.kind in VALUE_NODE_KINDS}
    items = sorted({node.id for node in wanted if node.kind == "evidence"})
    if items:
        found = {evidence_id: (case_id, name, media_type) for evidence_id, case_id, name, media_type in session.execute(
            select(Evidence.id, Evidence.case_id, Evidence.original_filename, Evidence.media_type)
            .where(Evidence.id.in_(items))).tuples()}
        for evidence_id in items:
            case_id, name, media_type = found.get(evidence_id, (None, None, None))
            facts[Node("evidence", evidence_id)] = NodeFacts(
                case_id=case_id, evidence_id=evidence_id, label=name, fields={"media_type": media_type},
                exists=evidence_id in found)
    traces = sorted({node.id for node in wanted if node.kind in FINDING_NODE_KINDS})
    known = {node.id: node.kind for node in wanted if node.kind in FINDING_NODE_KINDS}
    if traces:
        held: dict[str, tuple[str | None, str | None, str | None]] = {
            finding_id: (evidence_id, case_id, label) for finding_id, evidence_id, case_id, label in
                session.execute(select(Finding.id, Finding.evidence_id, Finding.case_id, Finding.label)
                                .where(Finding.id.in_(traces))).tuples()}
        gone = [finding_id for finding_id in traces if finding_id not in held]
        if gone:  # a trace replaced since: its item and case as its matches recorded them
            for match in session.scalars(select(Match).where(
                    or_(Match.finding_id.in_(gone), (Match.target_kind == "finding") & Match.target_id.in_(gone)))):
                if match.finding_id in gone:
                    held.setdefault(match.finding_id, (match.evidence_id, match.case_id, None))
                if match.target_id in gone and match.target_evidence_id is not None:
                    held.setdefault(match.target_id, (match.target_evidence_id, match.target_case_id, None))
        for finding_id in traces:
            item, case_id, label = held.get(finding_id, (None, None, None))
            facts[Node(known[finding_id], finding_id)] = NodeFacts(case_id=case_id, evidence_id=item, label=label,
                                                                   exists=finding_id not in gone)
    people = sorted({node.id for node in wanted if node.kind == "person"})
    found_people = {p.id: p for p in session.scalars(select(Person).where(Person.id.in_(people)))} if people else {}
    for person_id in people:
        person = found_people.get(person_id)
        facts[Node("person", person_id)] = NodeFacts(exists=False) if person is None else NodeFacts(
            label=f"{person.given_names} {person.family_name}".strip(),
            fields={"national_number": person.national_number, "family_name": person.family_name,
                    "given_names": person.given_names})
    cars = sorted({node.id for node in wanted if node.kind == "vehicle"})
    found_cars = {v.id: v for v in session.scalars(select(Vehicle).where(Vehicle.id.in_(cars)))} if cars else {}
    for vehicle_id in cars:
        vehicle = found_cars.get(vehicle_id)
        facts[Node("vehicle", vehicle_id)] = NodeFacts(exists=False) if vehicle is None else NodeFacts(
            label=vehicle.plate, fields={"plate": vehicle.plate, "country": vehicle.country, "make": vehicle.make,
                                         "model": vehicle.model, "colour": vehicle.colour,
                                         "status": vehicle.status})
    return facts
