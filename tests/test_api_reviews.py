"""The review API on both record stores (issue 13): an investigator sees a candidate match to a person with no
personal data; an examiner who did not upload either side confirms it with a reason; the investigator then sees the
person and the audit log shows the disclosure; the uploader-examiner is refused; a decided match is decided again
only after a supervisor reopens it; a rejected match does not return after re-analysis; the queue's order, filters
and assignments; the calibration; credentials, roles, another case's match and malformed bodies."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from storage import audit, matches, persons, vehicles
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.matches import Match
from storage.roles import FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Case, Evidence, Finding
from tests import match_samples as samples
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.register_samples import national_number, person
from tests.test_api_matches import crossmatch
from tests.test_reviews import calibration_set

HOME, OTHER = "2026-0901", "2026-0902"
WHY = purpose(HOME)
OWNER = national_number(5)
PLATE, MISREAD = "1-ABC-234", "1-A8C-234"
REASON = "both readings and the crops agree"


@dataclass(frozen=True)
class World:
    """Case HOME: `a` (uploaded by the examiner uma) read the car's plate and its owner's national number, `b` read
    the plate; case OTHER: `c` misread it. Cross-matched b, c, a. ivy investigates HOME, eva and uma examine HOME,
    oz examines OTHER."""

    cases: dict[str, str]
    a: str
    b: str
    c: str
    person_id: str
    vehicle_id: str
    headers: dict[str, dict[str, str]]

    def match(self, client: TestClient, evidence_id: str, target: str, target_evidence: str | None = None) -> str:
        with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
            query = select(Match.id).where(Match.evidence_id == evidence_id, Match.target_kind == target,
                                           Match.superseded_at.is_(None))
            if target_evidence is not None:
                query = query.where(Match.target_evidence_id == target_evidence)
            return str(session.scalars(query).one())


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient) -> World:
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        owner, _ = persons.put_person(session, row=persons.parse_person(person(5)))
        car, _ = vehicles.put_vehicle(session, row=vehicles.parse_vehicle({
            "plate": PLATE, "country": "BE", "owner_national_number": OWNER, "status": "stolen",
            "status_authority": "PZ Antwerpen", "status_date": "2026-03-01"}), recorded_by="t")
        a, b, c = samples.item(session, HOME), samples.item(session, HOME), samples.item(session, OTHER)
        a.received_by = "uma"
        samples.record(session, b, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        samples.record(session, c, "plates", "2.1.0", [samples.plate(MISREAD, alternatives=False)])
        samples.record(session, a, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        samples.record(session, a, "entities", "1.0.0", [samples.entity("national_number", OWNER)])
        for item in (b, c, a):
            crossmatch(session, evidence_id=item.id)
        cases = dict(session.execute(select(Case.reference, Case.id)).tuples().all())
        ids = (a.id, b.id, c.id, owner.id, car.id)
    headers = {"ivy": account(client, "ivy", (INVESTIGATOR,), cases=[cases[HOME]]),
               "eva": account(client, "eva", (FORENSIC_EXAMINER,), cases=[cases[HOME]]),
               "uma": account(client, "uma", (FORENSIC_EXAMINER,), cases=[cases[HOME]]),
               "oz": account(client, "oz", (FORENSIC_EXAMINER,), cases=[cases[OTHER]]),
               "sup": account(client, "sup", (SUPERVISOR,))}
    return World(cases, *ids, headers)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return list(audit.query(session, limit=10_000, **filters))


def _decide(client: TestClient, match_id: str, headers: dict[str, str], verdict: str = "confirmed",
            reason: str = REASON) -> httpx.Response:
    return client.post(f"{V1}/matches/{match_id}/decisions", headers=headers,
                       json={"verdict": verdict, "reason": reason})


def test_an_investigator_sees_the_person_only_once_an_examiner_confirmed_and_it_is_a_disclosure(
        client: TestClient, world: World) -> None:
    ivy, eva, uma, sup = (world.headers[name] for name in ("ivy", "eva", "uma", "sup"))
    person_match = world.match(client, world.a, "person")
    listed = client.get(f"{V1}/evidence/{world.a}/matches", headers={**ivy, **WHY})
    [candidate] = [m for m in _ok(listed) if m["target"]["kind"] == "person"]
    assert candidate["status"] == "candidate" and candidate["target"]["withheld"] == "unconfirmed"
    assert candidate["detail"] is None and OWNER not in listed.text and world.person_id not in listed.text
    assert _audit(client, person=OWNER, actor="ivy") == []
    # An examiner sees it whole, to review it.
    whole = _ok(client.get(f"{V1}/matches/{person_match}", headers={**eva, **WHY}))
    assert whole["target"]["person"]["national_number"] == OWNER
    assert [e.action for e in _audit(client, person=OWNER, actor="eva")] == ["consultation"]

    refused = _problem(_decide(client, person_match, uma), 403)  # she uploaded `a`
    assert "uploaded" in refused["detail"]
    denied = _audit(client, actor="uma")[-1]
    assert (denied.outcome, denied.resource_id, denied.detail["reason"]) == ("denied", person_match, refused["detail"])
    decided = _ok(_decide(client, person_match, eva), 201)
    assert (decided["verdict"], decided["examiner"], decided["reason"], decided["match_id"]) == (
        "confirmed", "eva", REASON, person_match)

    shown = _ok(client.get(f"{V1}/matches/{person_match}", headers={**ivy, **WHY}))
    assert shown["status"] == "confirmed" and shown["reviewed_by"] == "eva"
    assert shown["target"]["person"]["id"] == world.person_id and shown["target"]["person"]["national_number"] == OWNER
    [disclosed] = _audit(client, person=OWNER, actor="ivy")
    assert (disclosed.action, disclosed.resource_id, disclosed.purpose_case, disclosed.recipients) == (
        "disclosure", person_match, HOME, ["ivy"])
    assert disclosed.detail["disclosed_matches"] == [person_match]
    _ok(client.get(f"{V1}/evidence/{world.a}/matches", headers={**ivy, **WHY}))
    assert [e.action for e in _audit(client, person=OWNER, actor="ivy")] == ["disclosure", "consultation"]
    # The car is still a candidate: its owner stays withheld from ivy.
    car_match = world.match(client, world.a, "vehicle")
    car = _ok(client.get(f"{V1}/matches/{car_match}", headers={**ivy, **WHY}))
    assert car["target"]["vehicle"]["owner_withheld"] is True and car["target"]["vehicle"]["plate"] == PLATE
    _ok(_decide(client, car_match, eva), 201)  # confirmed: the owner is released to ivy, a disclosure
    car = _ok(client.get(f"{V1}/matches/{car_match}", headers={**ivy, **WHY}))
    assert car["target"]["vehicle"]["owner_national_number"] == OWNER
    assert [(e.action, e.resource_id) for e in _audit(client, person=OWNER, actor="ivy")][-1] == (
        "disclosure", car_match)

    # Decided once: a second verdict waits for a supervisor's reopening, which is kept in the history.
    again = _problem(_decide(client, person_match, eva, "rejected", "a second look says otherwise"), 409)
    assert "reopen" in again["detail"]
    _problem(client.post(f"{V1}/matches/{person_match}/reopen", headers=eva, json={"reason": REASON}), 403)
    reopened = _ok(client.post(f"{V1}/matches/{person_match}/reopen", headers=sup,
                               json={"reason": "the examiner's note names another file"}), 201)
    assert (reopened["verdict"], reopened["examiner"]) == ("reopened", "sup")
    _problem(client.post(f"{V1}/matches/{person_match}/reopen", headers=sup, json={"reason": REASON}), 409)
    withheld = _ok(client.get(f"{V1}/matches/{person_match}", headers={**ivy, **WHY}))
    assert withheld["target"]["withheld"] == "unconfirmed" and withheld["status"] == "candidate"
    _ok(_decide(client, person_match, eva, "rejected", "the number belongs to a witness"), 201)
    history = _ok(client.get(f"{V1}/matches/{person_match}/decisions", headers=eva))
    assert [(d["verdict"], d["examiner"]) for d in history] == [("confirmed", "eva"), ("reopened", "sup"),
                                                               ("rejected", "eva")]
    _problem(client.get(f"{V1}/matches/{person_match}/decisions", headers=ivy), 403)


def test_a_rejected_match_does_not_return_after_re_analysis(client: TestClient, world: World) -> None:
    eva, sup = world.headers["eva"], world.headers["sup"]
    car_match = world.match(client, world.a, "vehicle")
    _ok(_decide(client, car_match, eva, "rejected", "the crop shows another make of car"), 201)
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        a = session.get_one(Evidence, world.a)
        for old in session.scalars(select(Finding).where(Finding.evidence_id == a.id, Finding.analyzer == "plates")):
            session.delete(old)
        session.flush()
        [new_finding] = samples.record(session, a, "plates", "2.2.0", [samples.plate(PLATE, alternatives=False)])
        assert crossmatch(session, evidence_id=a.id).superseded == 3  # to the car, to `b`, to `c`
    live = _ok(client.get(f"{V1}/evidence/{world.a}/matches", headers=sup, params={"modality": "plate"}))
    assert {(m["target"]["kind"], m["finding"]["finding_id"]) for m in live} == {
        ("finding", new_finding)} and len(live) == 2  # to `b` and `c` again: those were never rejected
    every = _ok(client.get(f"{V1}/evidence/{world.a}/matches", headers=sup,
                           params={"modality": "plate", "include_superseded": True}))
    assert [m["id"] for m in every if m["target"]["kind"] == "vehicle"] == [car_match]
    assert next(m for m in every if m["id"] == car_match)["status"] == "rejected"


def _queue(client: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    return list(_ok(client.get(f"{V1}/reviews/queue", headers=headers, params=params)))


def test_the_queue_is_ordered_by_score_then_age_filtered_and_follows_assignments(client: TestClient,
                                                                                  world: World) -> None:
    eva, uma, oz, sup, ivy = (world.headers[name] for name in ("eva", "uma", "oz", "sup", "ivy"))
    home, other = world.cases[HOME], world.cases[OTHER]
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        every = list(session.scalars(select(Match)))
    order = {m.id: (-m.score, m.created_at, m.id) for m in every}
    in_home = {m.id for m in every if home in (m.case_id, m.target_case_id)}
    of_a = {m.id for m in every if world.a in (m.evidence_id, m.target_evidence_id)}

    queue = _queue(client, eva)
    assert [q["match_id"] for q in queue] == sorted(in_home, key=order.__getitem__)
    assert queue[0]["score"] == 1.0 and queue[-1]["score"] == 0.75  # `c` misread the plate: tolerant
    assert len(queue) == 6 and all(q["case_id"] == home and q["case_reference"] == HOME for q in queue)
    assert OWNER not in str(queue) and world.person_id not in str(queue)  # a work list: no personal data
    assert {q["match_id"] for q in _queue(client, uma)} == in_home - of_a  # not what she uploaded
    assert {q["match_id"] for q in _queue(client, oz)} == {m.id for m in every if other in (m.case_id,
                                                                                          m.target_case_id)}
    assert [q["target_kind"] for q in _queue(client, eva, modality="entity")] == ["person"]
    assert [q["match_id"] for q in _queue(client, eva, limit=2, offset=1)] == [q["match_id"] for q in queue[1:3]]
    assert {q["match_id"] for q in _queue(client, sup, case_id=other)} == {
        m.id for m in every if other in (m.case_id, m.target_case_id)}
    _problem(client.get(f"{V1}/reviews/queue", headers=eva, params={"case_id": other}), 404)
    _problem(client.get(f"{V1}/reviews/queue", headers=ivy), 403)

    first = world.match(client, world.b, "vehicle")  # the oldest of the best: `b` was matched first
    assert queue[0]["match_id"] == first
    assigned = _ok(client.put(f"{V1}/matches/{first}/assignment", headers=sup, json={"examiner": "UMA"}))
    assert assigned["assigned_to"] == "uma" and assigned["assigned_at"]  # a supervisor gave it to uma
    assert _queue(client, uma)[0] == {**queue[0], "assigned_to": "uma"}
    assert first not in {q["match_id"] for q in _queue(client, eva)}
    of_uma = world.match(client, world.a, "vehicle")  # uma uploaded `a`: assigned to her, it stays out of her queue
    _ok(client.put(f"{V1}/matches/{of_uma}/assignment", headers=sup, json={"examiner": "uma"}))
    assert of_uma not in {q["match_id"] for q in _queue(client, uma) + _queue(client, eva)}
    _problem(client.put(f"{V1}/matches/{first}/assignment", headers=sup, json={"examiner": "ivy"}), 422)
    _problem(client.put(f"{V1}/matches/{first}/assignment", headers=eva, json={"examiner": "eva"}), 403)
    _ok(client.put(f"{V1}/matches/{first}/assignment", headers=sup, json={"examiner": None}))
    assert _queue(client, eva)[0]["match_id"] == first
    _ok(_decide(client, first, eva), 201)  # decided: out of every queue
    assert first not in {q["match_id"] for q in _queue(client, eva)}
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"modality": "plates"}, {"case_id": "x" * 65}):
        _problem(client.get(f"{V1}/reviews/queue", headers=eva, params=bad), 422)


def test_calibration_counts_the_verdicts_per_setting(client: TestClient, world: World) -> None:
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        calibration_set(session)
    found = _ok(client.get(f"{V1}/reviews/calibration", headers=world.headers["eva"]))
    assert found == [
        {"modality": "face", "threshold": 0.5, "reviewed": 3, "confirmed": 1, "rejected": 2,
         "false_match_rate": pytest.approx(2 / 3)},
        {"modality": "plate", "threshold": 0.6, "reviewed": 4, "confirmed": 3, "rejected": 1,
         "false_match_rate": 0.25},
        {"modality": "plate", "threshold": 0.8, "reviewed": 1, "confirmed": 1, "rejected": 0,
         "false_match_rate": 0.0}]
    assert len(_ok(client.get(f"{V1}/reviews/calibration", headers=world.headers["sup"],
                              params={"modality": "plate"}))) == 2
    _problem(client.get(f"{V1}/reviews/calibration", headers=world.headers["ivy"]), 403)
    _problem(client.get(f"{V1}/reviews/calibration", headers=world.headers["eva"], params={"modality": "x"}), 422)


def test_credentials_roles_other_cases_and_bodies(client: TestClient, world: World) -> None:
    eva, ivy, oz = world.headers["eva"], world.headers["ivy"], world.headers["oz"]
    home_only = world.match(client, world.a, "finding", world.b)  # both sides in HOME
    across = world.match(client, world.c, "finding", world.b)  # `c` in OTHER, `b` in HOME
    routes = (("POST", f"/matches/{home_only}/decisions", {"verdict": "confirmed", "reason": REASON}),
              ("GET", f"/matches/{home_only}/decisions", None),
              ("POST", f"/matches/{home_only}/reopen", {"reason": REASON}),
              ("PUT", f"/matches/{home_only}/assignment", {"examiner": "eva"}),
              ("GET", "/reviews/queue", None), ("GET", "/reviews/calibration", None))
    for method, path, body in routes:
        assert client.request(method, f"{V1}{path}", json=body).status_code == 401, path
        if path.startswith("/matches/"):  # another case's match is missing, whatever the role
            _problem(client.request(method, f"{V1}{path}", json=body, headers=oz), 404)
            _problem(client.request(method, f"{V1}{path.replace(home_only, 'no-such-match')}", json=body,
                                    headers=eva), 404)
    _problem(_decide(client, home_only, ivy), 403)  # an investigator
    one_side = _problem(_decide(client, across, eva), 403)  # eva may not see `c`
    assert "both sides" in one_side["detail"]
    for body in ({"verdict": "confirmed"}, {"verdict": "confirmed", "reason": "short"},
                 {"verdict": "maybe", "reason": REASON}, {"verdict": "confirmed", "reason": "x" * 4001},
                 {"verdict": "confirmed", "reason": REASON, "examiner": "someone-else"}):
        _problem(client.post(f"{V1}/matches/{home_only}/decisions", headers=eva, json=body), 422)
    _problem(_decide(client, "x" * 65, eva), 422)
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        assert session.get_one(Match, home_only).status == "candidate"
        assert matches.matches_of(session, evidence_id=world.a, modality="plate")
