"""Leads and the identity graph on both record stores: cases linked by a plate (confirmed) and a near-duplicate photo
(candidate) make one lead naming both; ranking, register links, whom to ask about a case, rejected and superseded
matches left out; the graph around a plate, an item and a register record, and its limits. Plate and entity matches
are made by the cross-matcher on recorded findings; an image match is recorded as the image matcher records one."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from storage import accounts, graph, leads, persons, vehicles
from storage.db import reading, transaction
from storage.graph import Node
from storage.matches import MATCH_STATUSES, Match, NewMatch, add_match
from storage.records import create_case
from storage.roles import INVESTIGATOR, SUPERVISOR
from storage.tables import Case, Evidence, utcnow
from tests import match_samples as samples
from tests.register_samples import national_number, person
from workers import crossmatch as crossmatching
from workers.matchers import registry

HOME, OTHER, HIDDEN, PEER = "2026-0014", "2026-0031", "2026-0099", "2026-0040"
PLATE, PLATE_KEY = "1-ABC-234", "1ABC234"
OWNER = national_number(7)
EMBEDDING = "similarity.embedding"


@dataclass(frozen=True)
class World:
    """HOME's item `a` and OTHER's `b` read PLATE (their plate match confirmed) and are near-duplicate photos
    (candidate); HIDDEN's `c` read PLATE too; the car PLATE is registered; HOME's `d` and PEER's `e` name the
    registered person OWNER. `sara` (supervisor) assigned `hank` to HIDDEN."""

    cases: dict[str, str]  # reference -> id
    a: str
    b: str
    c: str
    d: str
    e: str
    vehicle_id: str
    person_id: str
    plate_match: str  # a-b
    image_match: str  # a-b


def crossmatch(session: Session, evidence_id: str) -> None:
    chosen = {name: cls for name, cls in registry.load_all().items() if name in ("plates", "entities")}
    crossmatching.crossmatch(session, evidence_id=evidence_id, matchers=chosen)


def image_match(session: Session, a: Evidence, b: Evidence) -> str:
    """A near-duplicate picture match between the two items' embedding findings, as the image matcher records it."""
    [fa] = samples.record(session, a, "similarity", "1.0.0", [(EMBEDDING, None, {})])
    [fb] = samples.record(session, b, "similarity", "1.0.0", [(EMBEDDING, None, {})])
    row, _ = add_match(session, match=NewMatch(
        modality="image", finding_id=fa, finding_kind=EMBEDDING, evidence_id=a.id, case_id=a.case_id,
        analyzer="similarity", analyzer_version="1.0.0", target_kind="finding", target_id=fb, score=0.83,
        threshold=0.6, method="similarity", matcher="images", matcher_version="1.0.0", target_analyzer="similarity",
        target_version="1.0.0", target_evidence_id=b.id, target_case_id=b.case_id, detail={"inliers": 140}))
    return row.id


def build_world(factory: sessionmaker[Session]) -> World:
    with transaction(factory) as session:
        owner, _ = persons.put_person(session, row=persons.parse_person(person(7)))
        car, _ = vehicles.put_vehicle(session, row=vehicles.parse_vehicle({
            "plate": PLATE, "country": "BE", "make": "Volvo", "model": "V70", "colour": "grey", "status": "stolen",
            "status_authority": "PZ Antwerpen", "status_date": "2026-03-01"}), recorded_by="t")
        a, b, c, d, e = (samples.item(session, ref) for ref in (HOME, OTHER, HIDDEN, HOME, PEER))
        for item in (a, b, c):
            samples.record(session, item, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        for item in (d, e):
            samples.record(session, item, "entities", "1.0.0", [samples.entity("national_number", OWNER)])
        for item in (a, b, c, d, e):
            crossmatch(session, item.id)
        plate_match = session.scalars(select(Match.id).where(
            Match.modality == "plate", Match.target_kind == "finding",
            ((Match.evidence_id == a.id) & (Match.target_evidence_id == b.id))
            | ((Match.evidence_id == b.id) & (Match.target_evidence_id == a.id)))).one()
        session.execute(update(Match).where(Match.id == plate_match).values(
            status="confirmed", reviewed_by="erin", reviewed_at=utcnow()))
        image = image_match(session, a, b)
        cases = dict(session.execute(select(Case.reference, Case.id)).tuples().all())
        for name, roles in (("sara", (SUPERVISOR,)), ("hank", (INVESTIGATOR,))):
            accounts.create_user(session, username=name, password=None, roles=list(roles), created_by="t")
        accounts.assign(session, case_id=cases[HIDDEN], username="hank", assigned_by="sara")
        return World(cases, a.id, b.id, c.id, d.id, e.id, car.id, owner.id, plate_match, image)


@pytest.fixture
def world(factory: sessionmaker[Session]) -> World:
    return build_world(factory)


def test_a_plate_and_a_photo_make_one_lead_naming_both(factory: sessionmaker[Session], world: World) -> None:
    home, other = world.cases[HOME], world.cases[OTHER]
    with reading(factory) as session:
        lead = leads.lead_between(session, case_a=other, case_b=home)
        assert lead is not None and lead == leads.lead_between(session, case_a=home, case_b=other)
        assert lead.id == leads.lead_id(home, other) == leads.lead_id(other, home)
        assert lead.cases == tuple(sorted((home, other)))
        assert [(link.kind, link.modality, link.status) for link in lead.links] == [
            ("shared", "plate", "confirmed"), ("shared", "image", "candidate")]  # the car is the shared plate
        assert set(lead.links[0].match_ids) == {world.plate_match} and lead.links[1].match_ids == (world.image_match,)
        assert lead.confirmed == 1 and lead.links[0].keys == (PLATE_KEY,)
        said = leads.reasons(lead.links, named=True)
        assert said == f"plate {PLATE} (confirmed) and a near-duplicate photo (candidate)"
        assert leads.reasons(lead.links, named=False) == "a plate (confirmed) and a near-duplicate photo (candidate)"
        assert leads.find_lead(session, lead=lead.id, case_ids=[other]) == lead
        assert leads.find_lead(session, lead=lead.id, case_ids=[world.cases[PEER]]) is None
        assert leads.lead_between(session, case_a=home, case_b=home) is None


def test_a_cases_leads_are_ranked_confirmed_first_then_by_links(factory: sessionmaker[Session],
                                                               world: World) -> None:
    home = world.cases[HOME]
    with reading(factory) as session:
        found = leads.leads_of_case(session, case_id=home)
        assert [lead.other(home) for lead in found] == [world.cases[ref] for ref in (OTHER, PEER, HIDDEN)]
        peer = found[1]
        assert [(link.kind, link.modality) for link in peer.links] == [("shared", "entity"), ("register", "entity")]
        assert {link.national_number for link in peer.links} == {OWNER}
        named = leads.reasons(peer.links, named=True)
        assert named == f"national number {OWNER} (candidate) and registered person {peer.links[1].person_name} " \
                        "(candidate)"
        assert OWNER not in leads.reasons(peer.links, named=False)
        assert leads.reasons(found[2].links, named=False) == "a plate (candidate)"
        assert leads.linked_cases(session, case_ids=None) == {
            tuple(sorted((home, world.cases[ref]))) for ref in (OTHER, PEER, HIDDEN)} | {
            tuple(sorted((world.cases[OTHER], world.cases[HIDDEN])))}
        assert leads.contacts(session, case_ids=[world.cases[HIDDEN], home]) == {world.cases[HIDDEN]: ["sara"],
                                                                                 home: []}


def test_rejected_and_superseded_matches_make_no_lead(factory: sessionmaker[Session], world: World) -> None:
    home, other = world.cases[HOME], world.cases[OTHER]
    with transaction(factory) as session:
        session.execute(update(Match).where(Match.id == world.image_match).values(status="rejected"))
    with reading(factory) as session:
        lead = leads.lead_between(session, case_a=home, case_b=other)
        assert lead is not None and [link.modality for link in lead.links] == ["plate"]
    with transaction(factory) as session:
        session.execute(update(Match).where(Match.id == world.plate_match).values(superseded_at=utcnow()))
    with reading(factory) as session:  # the car both matched remains (its matches are live)
        lead = leads.lead_between(session, case_a=home, case_b=other)
        assert lead is not None and [(link.kind, link.value) for link in lead.links] == [("register", PLATE)]
        assert leads.reasons(lead.links, named=True) == f"registered vehicle {PLATE} (candidate)"
    with transaction(factory) as session:
        session.execute(update(Match).where(Match.target_kind == "vehicle").values(status="rejected"))
    with reading(factory) as session:
        assert leads.lead_between(session, case_a=home, case_b=other) is None
        assert (min(home, other), max(home, other)) not in leads.linked_cases(session, case_ids=[home])


def test_the_graph_around_a_plate(factory: sessionmaker[Session], world: World) -> None:
    root = Node("plate", PLATE_KEY)
    with reading(factory) as session:
        around = graph.neighbourhood(session, node=root, depth=1)
    items = {Node("evidence", item) for item in (world.a, world.b, world.c)}
    assert set(around.depth) == {root, Node("vehicle", world.vehicle_id), *items}
    assert not around.truncated and around.depth[root] == 0
    contains = {edge.source for edge in around.edges if edge.kind == "contains"}
    assert contains == items and all(e.target == root for e in around.edges if e.kind == "contains")
    to_car = [edge for edge in around.edges if edge.target == Node("vehicle", world.vehicle_id)]
    assert len(to_car) == 3 and {edge.source for edge in to_car} == {root}
    shared = {edge.match_id: edge for edge in around.edges if edge.via == root}
    assert len(shared) == 3 and shared[world.plate_match].status == "confirmed"
    assert {shared[world.plate_match].source, shared[world.plate_match].target} == {
        Node("evidence", world.a), Node("evidence", world.b)}
    assert around.facts[Node("evidence", world.c)].case_id == world.cases[HIDDEN]
    assert around.facts[Node("vehicle", world.vehicle_id)].fields["status"] == "stolen"


def test_the_graph_around_an_item_two_hops_and_its_limit(factory: sessionmaker[Session], world: World) -> None:
    root = Node("evidence", world.a)
    with reading(factory) as session:
        one = graph.neighbourhood(session, node=root, depth=1)
        two = graph.neighbourhood(session, node=root, depth=2)
        small = graph.neighbourhood(session, node=root, depth=2, limit=3)
        person = graph.neighbourhood(session, node=Node("person", world.person_id), depth=1)
        nobody = graph.neighbourhood(session, node=Node("iban", "BE00"), depth=2)
    b, c = Node("evidence", world.b), Node("evidence", world.c)
    assert one.depth == {root: 0, Node("plate", PLATE_KEY): 1, b: 1, c: 1}  # the photo and the plate read in both
    assert {edge.modality for edge in one.edges if edge.source == root or edge.target == root} == {
        "image", "plate", None}
    assert two.depth[Node("vehicle", world.vehicle_id)] == 2 and len(two.depth) == 5
    assert len(small.depth) == 3 and small.truncated
    assert all(end in small.depth for edge in small.edges for end in (edge.source, edge.target))
    assert set(person.depth) == {Node("person", world.person_id), Node("national_number", OWNER)}
    assert person.facts[Node("person", world.person_id)].fields["national_number"] == OWNER
    assert nobody.depth == {Node("iban", "BE00"): 0} and nobody.edges == []
    with pytest.raises(ValueError):
        graph.neighbourhood(session, node=root, depth=3)
    with pytest.raises(ValueError):
        graph.neighbourhood(session, node=Node("case", "x"))


def test_an_entity_value_links_items_of_two_cases(factory: sessionmaker[Session], world: World) -> None:
    root = Node("national_number", OWNER)
    with reading(factory) as session:
        around = graph.neighbourhood(session, node=root, depth=1)
    assert set(around.depth) == {root, Node("evidence", world.d), Node("evidence", world.e),
                                 Node("person", world.person_id)}
    [shared] = [edge for edge in around.edges if edge.via == root]
    assert {shared.source, shared.target} == {Node("evidence", world.d), Node("evidence", world.e)}


def test_an_unassigned_supervisor_is_asked_about_a_case(factory: sessionmaker[Session], world: World) -> None:
    with transaction(factory) as session:
        case = create_case(session, reference="2026-0500", title="t", description="", created_by="t")
        accounts.create_user(session, username="vic", password=None, roles=[SUPERVISOR], created_by="t")
        accounts.assign(session, case_id=case.id, username="vic", assigned_by="root")
        accounts.assign(session, case_id=case.id, username="hank", assigned_by="sara")
        gone = accounts.create_user(session, username="old", password=None, roles=[SUPERVISOR], created_by="t")
        accounts.deactivate_user(session, user=gone)
        accounts.assign(session, case_id=world.cases[PEER], username="hank", assigned_by="old")
    with reading(factory) as session:
        assert leads.contacts(session, case_ids=[case.id, world.cases[PEER]]) == {case.id: ["vic"],
                                                                                  world.cases[PEER]: []}


def test_a_nodes_best_matches_come_first(factory: sessionmaker[Session], world: World) -> None:
    assert sorted(set(MATCH_STATUSES) - {"rejected"}, reverse=True) == ["confirmed", "candidate"]  # the index order
    with transaction(factory) as session:
        hidden_to_car = session.scalars(select(Match.id).where(Match.evidence_id == world.c,
                                                               Match.target_kind == "vehicle")).one()
        session.execute(update(Match).where(Match.id == hidden_to_car).values(status="confirmed"))
    with reading(factory) as session:
        best = graph.neighbourhood(session, node=Node("vehicle", world.vehicle_id), limit=2)
        every = graph.neighbourhood(session, node=Node("vehicle", world.vehicle_id), limit=10)
    assert best.edges[0].match_id == hidden_to_car and len(best.edges) == 2 and best.truncated
    assert len(every.edges) == 3 and not every.truncated
    assert [edge.status for edge in every.edges] == ["confirmed", "candidate", "candidate"]
