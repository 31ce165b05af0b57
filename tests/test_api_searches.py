"""The search API by face image and by similar image, on both record stores: a request is accepted (202), answered
as the cross-matching actor answers it, and read back as each reader may see it: candidates only in the reader's
cases, a registered person named only where the reader sees the reference photo, the consultation audited.
Refusals: no credentials (401), a probe or case the caller may not see (404, as a missing one), no purpose or a
role that does not search (403), nothing to search with (409), malformed bodies (422).

Faces are the real faces analyzer's (tests.test_searches.real_faces); the pictures of the image search carry
made-up scene embeddings (the real ones are searched in tests/test_searches.py)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage import audit, matching, persons
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.roles import AUDITOR, CASE_SYSTEM, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Case, MatchRequest
from tests import match_samples as samples
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.register_samples import person
from tests.test_searches import Findings, answer, face_item, real_faces
from workers.crossmatch import MatchContext

HOME, OTHER, HIDDEN, REGISTER = "2026-0701", "2026-0702", "2026-0703", "REG-PHOTOS"  # ivy: HOME and OTHER
WHY = purpose(HOME)
REFERENCE = person(7)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Findings]:
    return real_faces(tmp_path_factory.mktemp("faces"))


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@dataclass(frozen=True)
class World:
    """The probe (HOME: her other capture), her face in OTHER, in HIDDEN and on a reference photo of a registered
    person (REGISTER), zidane.jpg in HOME, and an item never analysed (HOME)."""

    cases: dict[str, str]
    probe: str
    other: str
    hidden: str
    photo: str
    zidane: str
    bare: str
    person_id: str


@pytest.fixture
def world(client: TestClient, photos: dict[str, Findings]) -> World:
    with transaction(_factory(client)) as session:
        probe, _ = face_item(session, HOME, photos["variant"])
        other, _ = face_item(session, OTHER, photos["astronaut"])
        hidden, _ = face_item(session, HIDDEN, photos["astronaut"])
        photo, _ = face_item(session, REGISTER, photos["astronaut"])
        zidane, _ = face_item(session, HOME, photos["zidane"])
        bare = samples.item(session, HOME)
        someone, _ = persons.put_person(session, row=persons.parse_person(REFERENCE))
        persons.link_photo(session, person_id=someone.id, evidence_id=photo.id, added_by="t")
        cases = dict(session.execute(select(Case.reference, Case.id)).tuples().all())
        world = World(cases, probe.id, other.id, hidden.id, photo.id, zidane.id, bare.id, someone.id)
    account(client, "ivy", (INVESTIGATOR,), cases=[cases[HOME], cases[OTHER]])
    return world


def _factory(client: TestClient) -> sessionmaker[Session]:
    factory: sessionmaker[Session] = client.app.state.session_factory  # type: ignore[attr-defined]
    return factory


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def _answered(client: TestClient, request_id: str) -> None:
    """The request answered by the actor and its answer recorded, as the dispatcher will have it done."""
    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    store = client.app.state.store  # type: ignore[attr-defined]
    found = answer(_factory(client), request_id, MatchContext(settings=settings, store=store))
    assert found.error is None, found.error


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with _factory(client)() as session:
        return list(audit.query(session, limit=10_000, **filters))


def test_a_face_search_is_accepted_answered_and_shown_to_each_reader_as_they_may_see_it(
        client: TestClient, world: World) -> None:
    sup, ivy = account(client, "sup", (SUPERVISOR,)), account(client, "ivy", (INVESTIGATOR,))
    asked = _ok(client.post(f"{V1}/search/faces", json={"evidence_id": world.probe}, headers={**sup, **WHY}), 202)
    assert (asked["kind"], asked["status"], asked["probe_evidence_id"]) == ("face_search", "queued", world.probe)
    assert "case_ids" not in asked["parameters"] and asked["parameters"]["limit"] == 20  # a supervisor: every case
    url = f"{V1}/search/requests/{asked['id']}"
    assert _ok(client.get(url, headers={**sup, **WHY}))["status"] == "queued"
    _answered(client, asked["id"])
    full = _ok(client.get(url, headers={**sup, **WHY}))
    assert full["status"] == "succeeded" and full["result"]["index_size"] == 5
    listed = full["result"]["candidates"]
    her = [c["evidence_id"] for c in listed if c["probable_match"]]
    assert sorted(her) == sorted([world.other, world.hidden, world.photo]) and listed[-1]["evidence_id"] == world.zidane
    assert all(c["distance"] < 0.6 for c in listed[:3]) and listed[-1]["distance"] >= 0.6
    [on_photo] = [c for c in listed if c["evidence_id"] == world.photo]
    [shown] = on_photo["persons"]
    assert on_photo["person_ids"] == [world.person_id] and shown["family_name"] == REFERENCE["family_name"]
    assert [entry.action for entry in _audit(client, person=REFERENCE["national_number"], actor="sup")] == [
        "consultation"]
    # ivy reads the supervisor's search: only her cases, ranked again; the hidden case and the register never named.
    seen = client.get(url, headers={**ivy, **WHY})
    mine = _ok(seen)["result"]["candidates"]
    assert [c["evidence_id"] for c in mine] == [world.other, world.zidane] and [c["rank"] for c in mine] == [1, 2]
    for secret in (world.hidden, world.photo, world.cases[HIDDEN], world.cases[REGISTER], REFERENCE["family_name"]):
        assert secret not in seen.text
    assert _audit(client, person=REFERENCE["national_number"], actor="ivy") == []
    # Her own search covers her cases only, and so does its answer.
    own = _ok(client.post(f"{V1}/search/faces", json={"evidence_id": world.probe, "limit": 5},
                          headers={**ivy, **WHY}), 202)
    assert own["parameters"]["case_ids"] == sorted([world.cases[HOME], world.cases[OTHER]])
    _answered(client, own["id"])
    with _factory(client)() as session:  # the stored result itself holds nothing of the other cases
        stored = session.get_one(MatchRequest, own["id"]).result
    assert [c["evidence_id"] for c in stored["candidates"]] == [world.other, world.zidane]


def test_searches_are_audited_as_combinations_and_consultations(client: TestClient, world: World) -> None:
    ivy = account(client, "ivy", (INVESTIGATOR,))
    asked = _ok(client.post(f"{V1}/search/faces", json={"evidence_id": world.probe,
                                                        "case_ids": [world.cases[OTHER]]},
                            headers={**ivy, **WHY}), 202)
    assert asked["parameters"]["case_ids"] == [world.cases[OTHER]]
    _answered(client, asked["id"])
    _ok(client.get(f"{V1}/search/requests/{asked['id']}", headers={**ivy, **WHY}))
    combination, consultation = [entry for entry in _audit(client, actor="ivy") if "search" in entry.resource]
    assert (combination.action, combination.resource, combination.resource_id) == (
        "combination", "POST /api/v1/search/faces", world.probe)
    assert combination.purpose_case == HOME and combination.justification
    assert combination.detail["requested"] == {"evidence_id": world.probe, "case_ids": [world.cases[OTHER]]}
    assert (consultation.action, consultation.resource_id, consultation.case_id) == (
        "consultation", asked["id"], world.cases[HOME])
    assert consultation.detail["cases_shown"] == [world.cases[OTHER]] and consultation.purpose_case == HOME


def test_who_may_search_what(client: TestClient, world: World) -> None:
    ivy = {**account(client, "ivy", (INVESTIGATOR,)), **WHY}
    body = {"evidence_id": world.probe}
    _problem(client.post(f"{V1}/search/faces", json=body), 401)
    _problem(client.get(f"{V1}/search/requests/anything"), 401)
    for role in (AUDITOR, CASE_SYSTEM):
        other = account(client, f"someone-{role}", (role,), cases=[world.cases[HOME]] if role == CASE_SYSTEM else ())
        _problem(client.post(f"{V1}/search/faces", json=body, headers={**other, **WHY}), 403)
    _problem(client.post(f"{V1}/search/faces", json=body, headers=account(client, "ivy", (INVESTIGATOR,))), 403)
    hidden = _problem(client.post(f"{V1}/search/faces", json={"evidence_id": world.hidden}, headers=ivy), 404)
    missing = _problem(client.post(f"{V1}/search/faces", json={"evidence_id": "nope"}, headers=ivy), 404)
    assert hidden["title"] == missing["title"] and world.cases[HIDDEN] not in str(hidden)
    _problem(client.post(f"{V1}/search/faces", json={**body, "case_ids": [world.cases[HIDDEN]]}, headers=ivy), 404)
    for bad in ({**body, "limit": 0}, {**body, "limit": 101}, {**body, "limit": "many"}, {**body, "case_ids": []},
                {**body, "case_ids": ["x" * 65]}, {**body, "finding_id": ""}, {"limit": 5}, {**body, "colour": 1}):
        _problem(client.post(f"{V1}/search/faces", json=bad, headers=ivy), 422)
    _problem(client.post(f"{V1}/search/images", json={**body, "finding_id": "f"}, headers=ivy), 422)
    nothing = _problem(client.post(f"{V1}/search/faces", json={"evidence_id": world.bare}, headers=ivy), 409)
    assert nothing["title"] == "No face to search with" and "not analysed" in nothing["detail"]
    foreign = _problem(client.post(f"{V1}/search/faces", json={**body, "finding_id": "no-such-face"}, headers=ivy),
                       409)
    assert "no-such-face is not a face" in foreign["detail"]
    _problem(client.post(f"{V1}/search/images", json=body, headers=ivy), 409)  # not analysed as a picture
    with _factory(client)() as session:
        assert session.scalars(select(MatchRequest)).all() == []  # nothing refused was recorded
    # A request of the supervisor's on a hidden probe, and a fingerprint request, are not ivy's to read here.
    sup = {**account(client, "sup", (SUPERVISOR,)), **WHY}
    theirs = _ok(client.post(f"{V1}/search/faces", json={"evidence_id": world.hidden}, headers=sup), 202)
    with transaction(_factory(client)) as session:
        fingerprint = MatchRequest(kind=matching.SEARCH, probe_evidence_id=world.probe, parameters={},
                                   requested_by="sup")
        session.add(fingerprint)
        session.flush()
        fingerprint_id = fingerprint.id
    for request_id in (theirs["id"], fingerprint_id, "unknown"):
        gone = _problem(client.get(f"{V1}/search/requests/{request_id}", headers=ivy), 404)
        assert gone["title"] == "Search request not found"
    assert _ok(client.get(f"{V1}/search/requests/{theirs['id']}", headers=sup))["status"] == "queued"
    assert _problem(client.get(f"{V1}/fingerprints/requests/{theirs['id']}", headers=sup), 404)[
        "title"] == "Match request not found"  # a face search is read where it was asked, not as a print's
    _problem(client.get(f"{V1}/search/requests/{theirs['id']}", headers=account(client, "sup", (SUPERVISOR,))), 403)
    _problem(client.get(f"{V1}/search/requests/{'x' * 65}", headers=sup), 422)


def _pictures(session: Session, case: str, vector: np.ndarray) -> str:
    item = samples.item(session, case)
    samples.record(session, item, "similarity", "1.0.0", [("similarity.embedding", None, {
        "model": {"name": "made-up"}, "dimension": 768, "vector": [round(float(v), 6) for v in vector]})])
    return item.id


def test_an_image_search_without_verification_is_shown_per_reader(client: TestClient, world: World) -> None:
    rng = np.random.default_rng(12)
    base = rng.standard_normal(768)
    near, far = base + 0.1 * rng.standard_normal(768), rng.standard_normal(768)
    with transaction(_factory(client)) as session:
        probe = _pictures(session, HOME, base)
        hidden = _pictures(session, HIDDEN, near)
        mine = _pictures(session, OTHER, far)
    ivy, sup = {**account(client, "ivy", (INVESTIGATOR,)), **WHY}, {**account(client, "sup", (SUPERVISOR,)), **WHY}
    asked = _ok(client.post(f"{V1}/search/images", json={"evidence_id": probe, "verify": False}, headers=sup), 202)
    assert asked["kind"] == "image_search" and asked["parameters"]["verify"] is False
    _answered(client, asked["id"])
    url = f"{V1}/search/requests/{asked['id']}"
    everything = _ok(client.get(url, headers=sup))["result"]
    assert [c["evidence_id"] for c in everything["candidates"]] == [hidden, mine]
    assert everything["candidates"][0]["cosine"] > 0.99 and everything["candidates"][0]["near_duplicate"] is True
    assert everything["verified"] == 0 and all(c["same_image"] is None for c in everything["candidates"])
    assert [c["evidence_id"] for c in _ok(client.get(url, headers=ivy))["result"]["candidates"]] == [mine]
