"""The matches API and the searches across cases on both record stores: matches per item, per case and one by one
with both sides as the reader may see them (an unassigned case never named, other cases and register persons
only with a purpose, per-person audit), role refusals, paging, superseded matches, and the plate (OCR-tolerant)
and national number searches. Matches are made by the cross-matcher on recorded findings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.main import create_app
from api.routes.matches import Modality, Status
from storage import audit, persons, reviews, vehicles
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.matches import MATCH_STATUSES, MODALITIES, Match
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_SYSTEM, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Case, Evidence, Finding
from tests import match_samples as samples
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.register_samples import national_number, person
from workers import crossmatch as crossmatching
from workers.crossmatch import CrossmatchResult
from workers.matchers import registry

HOME, OTHER, HIDDEN = "2026-0801", "2026-0802", "2026-0803"  # ivy works on HOME and OTHER, not on HIDDEN
WHY = purpose(HOME)
OWNER = national_number(5)
MISREAD, REGISTERED = "1-A8C-234", "1-ABC-234"
TEXT_MATCHERS = ("plates", "entities")  # the matchers these tests exercise (no vector index needed)


def crossmatch(session: Session, *, evidence_id: str) -> CrossmatchResult:
    """Cross-match the item with the plate and entity matchers, as the dispatcher does when its analysis ends."""
    chosen = {name: cls for name, cls in registry.load_all().items() if name in TEXT_MATCHERS}
    assert sorted(chosen) == sorted(TEXT_MATCHERS)
    return crossmatching.crossmatch(session, evidence_id=evidence_id, matchers=chosen)


@dataclass(frozen=True)
class World:
    """Three items in three cases, a stolen car and its owner, cross-matched: `a` (HOME) misread the plate and
    names the owner; `b` (OTHER) read the plate; `c` (HIDDEN) read the plate and names the owner."""

    cases: dict[str, str]  # reference -> id
    a: str
    b: str
    c: str
    findings: dict[str, list[str]]  # item -> its finding ids
    vehicle_id: str
    person_id: str


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


def _with_crop(finding: tuple[str, str | None, dict[str, Any]]) -> tuple[str, str | None, dict[str, Any]]:
    """The finding with a plate crop among its artifacts, as the plates analyzer stores one."""
    kind, label, data = finding
    crop = {"name": "plate.jpg", "bucket": "locard-derived", "key": "k/plate.jpg", "version_id": None, "size": 3,
            "sha256": "0" * 64, "content_type": "image/jpeg"}
    return kind, label, {**data, "artifacts": [crop]}


@pytest.fixture
def world(client: TestClient) -> World:
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with transaction(factory) as session:
        owner, _ = persons.put_person(session, row=persons.parse_person(person(5)))
        car, _ = vehicles.put_vehicle(session, row=vehicles.parse_vehicle({
            "plate": REGISTERED, "country": "BE", "make": "Volvo", "model": "V70", "colour": "grey",
            "owner_national_number": OWNER, "status": "stolen", "status_authority": "PZ Antwerpen",
            "status_date": "2026-03-01"}), recorded_by="t")
        a, b, c = (samples.item(session, reference) for reference in (HOME, OTHER, HIDDEN))
        findings = {
            b.id: samples.record(session, b, "plates", "2.1.0",
                                 [_with_crop(samples.plate(REGISTERED, alternatives=False))]),
            c.id: samples.record(session, c, "plates", "2.1.0", [samples.plate("1ABC234", alternatives=False)])
            + samples.record(session, c, "entities", "1.0.0", [samples.entity("national_number", OWNER)]),
            a.id: samples.record(session, a, "plates", "2.1.0", [samples.plate(MISREAD, alternatives=False)])
            + samples.record(session, a, "entities", "1.0.0", [samples.entity("national_number", OWNER)])}
        for item in (b, c, a):  # each item finds those matched before it
            crossmatch(session, evidence_id=item.id)
        cases = dict(session.execute(select(Case.reference, Case.id)).tuples().all())
        world = World(cases, a.id, b.id, c.id, findings, car.id, owner.id)
    account(client, "ivy", (INVESTIGATOR,), cases=[cases[HOME], cases[OTHER]])
    return world


@pytest.fixture
def ivy(client: TestClient, world: World) -> dict[str, str]:
    return account(client, "ivy", (INVESTIGATOR,))


@pytest.fixture
def sup(client: TestClient, world: World) -> dict[str, str]:
    return account(client, "sup", (SUPERVISOR,))


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


def _by_target(listed: list[dict[str, Any]]) -> dict[tuple[str, str | None], dict[str, Any]]:
    """The matches of a listing by (target kind, the target's case or withheld reason)."""
    return {(m["target"]["kind"], m["target"]["case_id"] or m["target"]["withheld"]): m for m in listed}


def test_an_items_matches_show_both_sides_and_never_name_an_unassigned_case(client: TestClient, world: World,
                                                                           ivy: dict[str, str]) -> None:
    response = client.get(f"{V1}/evidence/{world.a}/matches", headers={**ivy, **WHY})
    listed = _ok(response)
    assert [m["score"] for m in listed] == sorted((m["score"] for m in listed), reverse=True)
    assert {m["finding"]["evidence_id"] for m in listed} == {world.a}  # `a` was matched last: side A everywhere
    other, hidden = world.cases[OTHER], world.cases[HIDDEN]
    by_target = _by_target(listed)
    assert set(by_target) == {("vehicle", None), ("person", "unconfirmed"), ("finding", other),
                              ("finding", "not_assigned")}
    car = by_target["vehicle", None]
    assert car["method"] == "tolerant" and car["modality"] == "plate" and car["status"] == "candidate"
    assert car["reviewed_by"] is None and car["reviewed_at"] is None and car["superseded_at"] is None
    # Register data behind a candidate is withheld from an investigator until an examiner confirms it (issue 13).
    assert car["target"]["vehicle"]["owner_withheld"] is True and car["target"]["record_id"] == world.vehicle_id
    assert car["target"]["vehicle"]["owner_national_number"] is None and OWNER not in response.text
    assert car["detail"]["confusions"] == ["8->B at 3"] and car["detail"]["vehicle_status"] == "stolen"
    assert car["finding"]["analyzer_version"] == "2.1.0" and car["finding"]["case_reference"] == HOME
    linked = by_target["finding", other]
    assert linked["target"]["evidence_id"] == world.b and linked["target"]["case_reference"] == OTHER
    assert linked["target"]["finding_kind"] == "plates.plate" and linked["other_case"] is True
    assert linked["detail"]["other_reading"] and linked["detail"]["reading"]
    unconfirmed = by_target["person", "unconfirmed"]
    assert unconfirmed["target"]["person"] is None and unconfirmed["target"]["record_id"] is None
    assert unconfirmed["detail"] is None and unconfirmed["detail_withheld"] is True
    unassigned = [m for m in listed if m["target"]["withheld"] == "not_assigned"]
    assert len(unassigned) == 2  # the plate and the national number read in the hidden case
    for match in unassigned:
        assert match["detail"] is None and match["detail_withheld"] is True
        assert match["target"].pop("artifacts") == []
        assert set(match["target"].values()) <= {"finding", "not_assigned", None}
    for secret in (hidden, world.c, *world.findings[world.c]):
        assert secret not in response.text
    assert _ok(client.get(f"{V1}/matches/{unassigned[0]['id']}", headers=ivy))["target"]["withheld"] == "not_assigned"


def test_other_cases_and_register_persons_need_a_purpose_and_are_audited_per_person(
        client: TestClient, world: World, ivy: dict[str, str]) -> None:
    plain = _by_target(_ok(client.get(f"{V1}/evidence/{world.a}/matches", headers=ivy)))
    assert set(plain) == {("vehicle", None), ("person", "purpose"), ("finding", "purpose"),
                          ("finding", "not_assigned")}
    assert plain["person", "purpose"]["target"]["record_id"] is None and plain["person", "purpose"]["detail"] is None
    assert plain["finding", "purpose"]["target"]["evidence_id"] is None
    car = plain["vehicle", None]["target"]["vehicle"]
    assert car["owner_national_number"] is None and car["owner_withheld"] is True and car["plate"] == REGISTERED
    assert _audit(client, person=OWNER, actor="ivy") == []
    person_match = plain["person", "purpose"]["id"]
    refused = _problem(client.get(f"{V1}/matches/{person_match}", headers=ivy), 403)
    assert "purpose" in refused["title"].lower()
    _problem(client.get(f"{V1}/matches/{person_match}", headers={**ivy, **purpose(HIDDEN)}), 403)
    candidate = _ok(client.get(f"{V1}/matches/{person_match}", headers={**ivy, **WHY}))
    assert candidate["target"]["withheld"] == "unconfirmed" and OWNER not in str(candidate)  # issue 13
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        reviews.decide(session, match=session.get_one(Match, person_match), verdict="confirmed",
                       reason="national number read twice, same person", examiner="eva")
    shown = _ok(client.get(f"{V1}/matches/{person_match}", headers={**ivy, **WHY}))
    assert shown["target"]["person"]["id"] == world.person_id and shown["detail"]["value"] == OWNER
    consulted = _audit(client, person=OWNER, actor="ivy")
    assert len(consulted) == 1 and consulted[0].purpose_case == HOME and consulted[0].resource_id == person_match
    assert consulted[0].action == "disclosure"  # the first release of a confirmed match to this investigator
    _ok(client.get(f"{V1}/cases/{world.cases[HOME]}/matches", headers={**ivy, **WHY}))
    latest = _audit(client, person=OWNER, actor="ivy")
    assert len(latest) == 2 and latest[-1].detail["cases_shown"] == [world.cases[OTHER]]
    assert latest[-1].action == "consultation"
    assert world.cases[HIDDEN] not in str(latest[-1].detail)


def test_one_match_is_found_from_either_side_the_reader_may_see(client: TestClient, world: World,
                                                                ivy: dict[str, str], sup: dict[str, str]) -> None:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        hidden_to_b = session.scalars(select(Match).where(Match.evidence_id == world.c,
                                                          Match.target_evidence_id == world.b)).one().id
        hidden_to_car = session.scalars(select(Match).where(Match.evidence_id == world.c,
                                                            Match.target_kind == "vehicle")).one().id
    seen = _ok(client.get(f"{V1}/matches/{hidden_to_b}", headers={**ivy, **WHY}))
    assert seen["finding"] == {**seen["finding"], "withheld": "not_assigned", "evidence_id": None, "case_id": None}
    assert seen["target"]["evidence_id"] == world.b and seen["target"]["case_reference"] == OTHER
    whole = _ok(client.get(f"{V1}/matches/{hidden_to_b}", headers={**sup, **WHY}))  # a supervisor sees all
    assert whole["finding"]["evidence_id"] == world.c and whole["finding"]["case_reference"] == HIDDEN
    assert whole["detail"]["same_case"] is False
    for unknown in (hidden_to_car, "no-such-match"):
        _problem(client.get(f"{V1}/matches/{unknown}", headers={**ivy, **WHY}), 404)
    _problem(client.get(f"{V1}/matches/{'x' * 65}", headers=ivy), 422)
    _problem(client.get(f"{V1}/evidence/{world.c}/matches", headers={**ivy, **WHY}), 404)
    _problem(client.get(f"{V1}/cases/{world.cases[HIDDEN]}/matches", headers={**ivy, **WHY}), 404)


def test_auditors_administrators_and_case_systems_are_refused(client: TestClient, world: World) -> None:
    urls = [f"{V1}/evidence/{world.a}/matches", f"{V1}/cases/{world.cases[HOME]}/matches",
            f"{V1}/matches/no-such-match", f"{V1}/search/plates?plate=1ABC234",
            f"{V1}/search/national-numbers?number={OWNER}"]
    for name, roles in (("audrey", (AUDITOR,)), ("root", (ADMINISTRATOR,)), ("rms", (CASE_SYSTEM,))):
        headers = {**account(client, name, roles, cases=[] if name != "rms" else [world.cases[HOME]]), **WHY}
        for url in urls:
            refused = _problem(client.get(url, headers=headers), 403)
            assert "investigator" in refused["detail"] and "supervisor" in refused["detail"]
        assert _audit(client, person=OWNER, actor=name) == []


def test_a_cases_matches_page_and_filter(client: TestClient, world: World, sup: dict[str, str]) -> None:
    url = f"{V1}/cases/{world.cases[HOME]}/matches"
    every = _ok(client.get(url, headers=sup, params={"limit": 200}))
    assert len(every) == 5  # `a` to the car, `b` and `c` by plate; to the person and `c` by national number
    pages = [_ok(client.get(url, headers=sup, params={"limit": 4, "offset": offset})) for offset in (0, 4, 8)]
    assert [len(page) for page in pages] == [4, 1, 0]
    assert [m["id"] for page in pages for m in page] == [m["id"] for m in every]
    entities = _ok(client.get(url, headers=sup, params={"modality": "entity"}))
    assert {m["target"]["kind"] for m in entities} == {"person", "finding"} and len(entities) == 2
    assert _ok(client.get(url, headers=sup, params={"status": "confirmed"})) == []
    assert len(_ok(client.get(url, headers=sup, params={"status": "candidate"}))) == len(every)
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"offset": 100_001}, {"modality": "plates"},
                {"status": "maybe"}):
        _problem(client.get(url, headers=sup, params=bad), 422)


def test_superseded_matches_are_hidden_unless_asked(client: TestClient, world: World, sup: dict[str, str]) -> None:
    factory = client.app.state.session_factory  # type: ignore[attr-defined]
    with transaction(factory) as session:  # `b` is analysed again: its plate finding is replaced
        session.delete(session.get_one(Finding, world.findings[world.b][0]))
        [new] = samples.record(session, session.get_one(Evidence, world.b), "plates", "2.2.0",
                               [samples.plate(REGISTERED, alternatives=False)])
        assert crossmatch(session, evidence_id=world.b).superseded == 3  # to the car, to `a`, to `c`
    url = f"{V1}/evidence/{world.b}/matches"
    live = _ok(client.get(url, headers=sup))
    assert {m["finding"]["finding_id"] for m in live if m["finding"]["evidence_id"] == world.b} == {new}
    assert all(m["superseded_at"] is None for m in live)
    every = _ok(client.get(url, headers=sup, params={"include_superseded": True}))
    old = [m for m in every if m["superseded_at"] is not None]
    assert len(old) == 3 and len(every) == len(live) + 3
    replaced = world.findings[world.b][0]
    assert all(replaced in (m["finding"]["finding_id"], m["target"]["finding_id"]) for m in old)
    assert {m["target"]["finding_kind"] for m in old if m["target"]["finding_id"] == replaced} == {None}


def test_plate_search_tolerates_a_confused_character_in_visible_cases(client: TestClient, world: World,
                                                                      ivy: dict[str, str],
                                                                      sup: dict[str, str]) -> None:
    url = f"{V1}/search/plates"
    _problem(client.get(url, params={"plate": MISREAD}, headers=ivy), 403)
    found = _ok(client.get(url, params={"plate": MISREAD.lower().replace("-", " ")}, headers={**ivy, **WHY}))
    assert found["key"] == "1A8C234" and found["keys_searched"] > 1
    [car] = found["vehicles"]
    assert car["method"] == "tolerant" and car["confusions"] == ["8->B at 3"]
    assert car["vehicle"]["id"] == world.vehicle_id and car["vehicle"]["owner_national_number"] == OWNER
    by_item = {f["evidence_id"]: f for f in found["findings"]}
    assert set(by_item) == {world.a, world.b}  # `c` is in a case ivy may not see
    assert by_item[world.a]["method"] == "exact" and by_item[world.b]["method"] == "tolerant"
    assert by_item[world.b]["confusions"] == ["8->B at 3"] and by_item[world.b]["case_reference"] == OTHER
    assert world.c not in str(found) and world.cases[HIDDEN] not in str(found)
    assert len(_audit(client, person=OWNER, actor="ivy")) == 1  # the owner shown
    exact = _ok(client.get(url, params={"plate": MISREAD, "tolerant": False}, headers={**ivy, **WHY}))
    assert exact["vehicles"] == [] and [f["evidence_id"] for f in exact["findings"]] == [world.a]
    every = _ok(client.get(url, params={"plate": REGISTERED}, headers={**sup, **WHY}))
    assert {f["evidence_id"] for f in every["findings"]} == {world.a, world.b, world.c}
    assert every["vehicles"][0]["method"] == "exact" and every["vehicles"][0]["confusions"] == []
    paged = _ok(client.get(url, params={"plate": REGISTERED, "limit": 1, "offset": 2}, headers={**sup, **WHY}))
    assert len(paged["findings"]) == 1 and paged["findings"][0]["finding_id"] == every["findings"][2]["finding_id"]
    _problem(client.get(url, params={"plate": "---"}, headers={**ivy, **WHY}), 422)
    _problem(client.get(url, params={"plate": "x" * 33}, headers={**ivy, **WHY}), 422)


def test_national_number_search_returns_the_person_and_the_findings_naming_it(client: TestClient, world: World,
                                                                              ivy: dict[str, str],
                                                                              sup: dict[str, str]) -> None:
    url = f"{V1}/search/national-numbers"
    written = f"{OWNER[:2]}.{OWNER[2:4]}.{OWNER[4:6]}-{OWNER[6:9]}.{OWNER[9:]}"
    _problem(client.get(url, params={"number": OWNER}, headers=ivy), 403)
    found = _ok(client.get(url, params={"number": written}, headers={**ivy, **WHY}))
    assert found["national_number"] == OWNER and found["person"]["id"] == world.person_id
    assert [(f["evidence_id"], f["method"], f["label"]) for f in found["findings"]] == [(world.a, "exact", OWNER)]
    assert world.c not in str(found)
    assert len(_audit(client, person=OWNER, actor="ivy")) == 1
    every = _ok(client.get(url, params={"number": OWNER}, headers={**sup, **WHY}))
    assert {f["evidence_id"] for f in every["findings"]} == {world.a, world.c}
    nobody = national_number(900)
    assert _ok(client.get(url, params={"number": nobody}, headers={**ivy, **WHY})) == {
        "national_number": nobody, "person": None, "findings": []}
    assert len(_audit(client, person=nobody, actor="ivy")) == 1  # a number looked up is noted even if unknown
    for bad in (OWNER[:-1], f"{OWNER[:9]}00" if OWNER[9:] != "00" else f"{OWNER[:9]}01", "abcdefghijk"):
        _problem(client.get(url, params={"number": bad}, headers={**ivy, **WHY}), 422)


def test_the_api_speaks_the_match_vocabulary() -> None:
    assert get_args(Modality) == MODALITIES and get_args(Status) == MATCH_STATUSES
