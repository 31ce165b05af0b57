"""The leads and graph API on both record stores: one lead naming a shared plate (confirmed) and a near-duplicate
photo (candidate); a case the reader may not see only as "another case" and whom to ask; the other case and
persons only with a purpose, audited per person; the graph around a plate with hidden items as placeholders;
401, 403, 404 and 422. The world is `tests.test_leads`'s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from api.routes.leads import NodeKind
from storage import audit
from storage.fakes import MemoryObjectStore
from storage.graph import NODE_KINDS
from storage.leads import lead_id
from storage.matches import Match
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Finding
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.test_leads import HIDDEN, HOME, OTHER, OWNER, PEER, PLATE, PLATE_KEY, World, build_world

WHY = purpose(HOME)


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient) -> World:
    built = build_world(client.app.state.session_factory)  # type: ignore[attr-defined]
    account(client, "ivy", (INVESTIGATOR,), cases=[built.cases[ref] for ref in (HOME, OTHER, PEER)])
    return built


@pytest.fixture
def ivy(client: TestClient, world: World) -> dict[str, str]:
    return account(client, "ivy", (INVESTIGATOR,))


@pytest.fixture
def sup(client: TestClient, world: World) -> dict[str, str]:
    return account(client, "sup", (SUPERVISOR,))


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    return body


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return list(audit.query(session, limit=10_000, **filters))


def _secrets(client: TestClient, world: World) -> list[str]:
    """What must never appear in an answer to ivy: HIDDEN's id, reference, item and finding ids."""
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        findings = list(session.scalars(select(Finding.id).where(Finding.evidence_id == world.c)))
    return [world.cases[HIDDEN], HIDDEN, world.c, *findings]


def test_two_cases_sharing_a_plate_and_a_photo_make_one_lead_naming_both(client: TestClient, world: World,
                                                                         ivy: dict[str, str]) -> None:
    response = client.get(f"{V1}/cases/{world.cases[HOME]}/leads", headers={**ivy, **WHY})
    listed = _ok(response)
    assert [lead["other"]["reference"] for lead in listed] == [OTHER, PEER, None]
    first = listed[0]
    assert first["summary"] == (f"cases {HOME} and {OTHER} share plate {PLATE} (confirmed) and a near-duplicate "
                                "photo (candidate)")
    assert first["id"] == lead_id(world.cases[HOME], world.cases[OTHER])
    assert first["case"] == {"case_id": world.cases[HOME], "reference": HOME, "withheld": None, "ask": None}
    assert first["confirmed"] == 1 and first["links_count"] == 2
    plate, photo = first["links"]
    assert plate["match_ids"] == [world.plate_match] and plate["value"] == PLATE and plate["status"] == "confirmed"
    assert {side["evidence_id"] for side in photo["evidence"]} == {world.a, world.b}
    hidden = listed[2]
    assert hidden["other"] == {"case_id": None, "reference": None, "withheld": "not_assigned", "ask": ["sara"]}
    assert hidden["summary"] == f"case {HOME} and another case share a plate (candidate); ask sara about lead " \
                                f"{hidden['id']}"
    assert hidden["links"] == [{"kind": "shared", "modality": "plate", "status": "candidate", "score": 1.0,
                                "strength": hidden["links"][0]["strength"], "reason": "a plate",
                                "match_ids": None, "evidence": None, "value": None, "record_kind": None,
                                "record_id": None}]
    for secret in _secrets(client, world):
        assert secret not in response.text
    by_id = _ok(client.get(f"{V1}/leads/{hidden['id']}", headers={**ivy, **WHY}))
    assert by_id == hidden
    entry = [entry for entry in _audit(client, actor="ivy") if entry.resource_id == hidden["id"]][-1]
    assert entry.case_id == world.cases[HOME] and world.cases[HIDDEN] not in str(entry.detail)


def test_the_other_case_and_persons_need_a_purpose_and_are_audited(client: TestClient, world: World,
                                                                   ivy: dict[str, str]) -> None:
    url = f"{V1}/cases/{world.cases[HOME]}/leads"
    plain = _ok(client.get(url, headers=ivy))
    assert [lead["other"]["withheld"] for lead in plain] == ["purpose", "purpose", "not_assigned"]
    assert plain[0]["summary"] == (f"case {HOME} and another case share a plate (confirmed) and a near-duplicate "
                                   "photo (candidate); state a purpose to see which")
    assert world.cases[OTHER] not in str(plain) and OWNER not in str(plain)
    assert _audit(client, person=OWNER, actor="ivy") == []
    shown = _ok(client.get(url, headers={**ivy, **WHY}))
    peer = shown[1]
    assert peer["summary"].startswith(f"cases {HOME} and {PEER} share national number {OWNER} (candidate) and "
                                      "registered person ")
    assert [link["record_kind"] for link in peer["links"]] == [None, "person"]
    assert peer["links"][1]["record_id"] == world.person_id
    [entry] = _audit(client, person=OWNER, actor="ivy")
    assert entry.purpose_case == HOME and entry.case_id == world.cases[HOME]
    assert entry.detail["cases_shown"] == sorted((world.cases[OTHER], world.cases[PEER]))
    pair_url = f"{V1}/cases/{world.cases[PEER]}/leads"
    [pair] = _ok(client.get(pair_url, params={"other_case_id": world.cases[HOME]}, headers={**ivy, **purpose(PEER)}))
    assert pair["id"] == peer["id"] and pair["case"]["reference"] == PEER and pair["other"]["reference"] == HOME
    latest = _audit(client, person=OWNER, actor="ivy")
    assert len(latest) == 2 and latest[-1].case_id == world.cases[PEER]
    assert latest[-1].detail["cases_shown"] == [world.cases[HOME]]
    [bare] = _ok(client.get(pair_url, params={"other_case_id": world.cases[HOME]}, headers=ivy))
    assert bare["other"] == {"case_id": None, "reference": None, "withheld": "purpose", "ask": None}
    assert len(_audit(client, person=OWNER, actor="ivy")) == 2
    anchored = _ok(client.get(f"{V1}/leads/{peer['id']}", headers={**ivy, **purpose(PEER)}))
    assert anchored["case"]["reference"] == PEER and anchored["other"]["reference"] == HOME


def test_a_supervisor_reads_every_lead_whole_with_a_purpose(client: TestClient, world: World,
                                                            sup: dict[str, str]) -> None:
    hidden_id = lead_id(world.cases[HOME], world.cases[HIDDEN])
    whole = _ok(client.get(f"{V1}/leads/{hidden_id}", headers={**sup, **purpose(HIDDEN)}))
    assert whole["case"]["reference"] == HIDDEN and whole["other"]["reference"] == HOME
    assert whole["links"][0]["evidence"] and whole["summary"] == f"cases {HIDDEN} and {HOME} share plate {PLATE} " \
                                                                 "(candidate)"
    hidden_leads = _ok(client.get(f"{V1}/cases/{world.cases[HIDDEN]}/leads", headers=sup))
    assert [lead["other"]["withheld"] for lead in hidden_leads] == ["purpose", "purpose"]


def test_refusals(client: TestClient, world: World, ivy: dict[str, str]) -> None:
    home, hidden = world.cases[HOME], world.cases[HIDDEN]
    urls = [f"{V1}/cases/{home}/leads", f"{V1}/leads/{lead_id(home, hidden)}",
            f"{V1}/cases/{home}/leads?other_case_id={world.cases[OTHER]}",
            f"{V1}/graph?node_kind=plate&node_id={PLATE}"]
    for url in urls:
        assert client.get(url).status_code == 401
    for name, roles in (("audrey", (AUDITOR,)), ("root", (ADMINISTRATOR,)), ("rms", (CASE_SYSTEM,))):
        headers = {**account(client, name, roles, cases=[] if name != "rms" else [home]), **WHY}
        for url in urls:
            assert "investigator" in _problem(client.get(url, headers=headers), 403)["detail"]
    headers = {**ivy, **WHY}
    _problem(client.get(f"{V1}/cases/{hidden}/leads", headers=headers), 404)
    pair = f"{V1}/cases/{home}/leads"
    hidden_pair = _problem(client.get(pair, params={"other_case_id": hidden}, headers=headers), 404)
    missing = _problem(client.get(pair, params={"other_case_id": "no-such-case"}, headers=headers), 404)
    assert hidden_pair["title"] == missing["title"]  # as a missing case
    assert _ok(client.get(pair, params={"other_case_id": home}, headers=headers)) == []
    _problem(client.get(pair, params={"other_case_id": "x" * 65}, headers=headers), 422)
    hank = {**account(client, "hank", (INVESTIGATOR,)), **purpose(HIDDEN)}  # on HIDDEN only
    _problem(client.get(f"{V1}/leads/{lead_id(home, world.cases[OTHER])}", headers=hank), 404)
    assert len(_ok(client.get(f"{V1}/cases/{hidden}/leads", headers=hank))) == 2
    _problem(client.get(f"{V1}/leads/no-such-lead", headers=headers), 404)
    _problem(client.get(f"{V1}/leads/{'x' * 65}", headers=headers), 422)
    for bad in ({"limit": 0}, {"limit": 201}, {"offset": -1}):
        _problem(client.get(f"{V1}/cases/{home}/leads", headers=headers, params=bad), 422)
    exam = account(client, "erin", (FORENSIC_EXAMINER,), cases=[home])
    assert len(_ok(client.get(f"{V1}/cases/{home}/leads", headers=exam))) == 3


def test_the_graph_around_a_plate_hides_a_case_the_reader_may_not_see(client: TestClient, world: World,
                                                                      ivy: dict[str, str]) -> None:
    params = {"node_kind": "plate", "node_id": PLATE}
    _problem(client.get(f"{V1}/graph", params=params, headers=ivy), 403)  # a purpose is required
    response = client.get(f"{V1}/graph", params=params, headers={**ivy, **WHY})
    answered = _ok(response)
    assert answered["root"] == f"plate:{PLATE_KEY}" and answered["depth"] == 1 and not answered["truncated"]
    nodes = {node["id"]: node for node in answered["nodes"]}
    assert set(nodes) == {f"plate:{PLATE_KEY}", f"evidence:{world.a}", f"evidence:{world.b}",
                          f"vehicle:{world.vehicle_id}", "withheld:1"}
    placeholder = nodes["withheld:1"]
    assert placeholder == {**placeholder, "kind": "evidence", "key": None, "withheld": "not_assigned",
                           "ask": ["sara"], "case_id": None, "evidence_id": None}
    assert nodes[f"evidence:{world.b}"]["case_reference"] == OTHER
    assert nodes[f"vehicle:{world.vehicle_id}"]["fields"]["status"] == "stolen"
    shared = {edge["match_id"]: edge for edge in answered["edges"] if edge["via"] == f"plate:{PLATE_KEY}"}
    assert shared[world.plate_match]["status"] == "confirmed" and len(shared) == 3
    assert {(e["source"], e["target"]) for e in answered["edges"] if e["kind"] == "contains"} == {
        (f"evidence:{item}", f"plate:{PLATE_KEY}") for item in (world.a, world.b)} | {
        ("withheld:1", f"plate:{PLATE_KEY}")}
    for secret in _secrets(client, world):
        assert secret not in response.text
    entry = [entry for entry in _audit(client, actor="ivy") if entry.resource == "GET /api/v1/graph"][-1]
    assert entry.purpose_case == HOME and entry.detail["cases_shown"] == [world.cases[OTHER]]
    assert entry.case_id == world.cases[HOME] and entry.person is None


def test_graph_persons_are_audited_and_roots_checked(client: TestClient, world: World, ivy: dict[str, str],
                                                     sup: dict[str, str]) -> None:
    headers = {**ivy, **WHY}
    around = _ok(client.get(f"{V1}/graph", params={"node_kind": "person", "node_id": world.person_id},
                            headers=headers))
    nodes = {node["id"]: node for node in around["nodes"]}
    assert nodes[f"person:{world.person_id}"]["fields"]["national_number"] == OWNER
    assert nodes[f"national_number:{OWNER}"]["distance"] == 1
    entries = _audit(client, person=OWNER, actor="ivy")
    assert len(entries) == 1 and entries[0].purpose_case == HOME
    two = _ok(client.get(f"{V1}/graph", params={"node_kind": "evidence", "node_id": world.a, "depth": 2},
                         headers=headers))
    assert f"vehicle:{world.vehicle_id}" in {node["id"] for node in two["nodes"]}
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        hidden_match = session.scalars(select(Match.id).where(Match.evidence_id == world.c)).first()
    assert hidden_match is not None
    for kind, key, status in (("evidence", world.c, 404), ("evidence", "nope", 404), ("person", "nope", 404),
                              ("vehicle", "nope", 404), ("face", "nope", 404), ("print", world.a, 404),
                              ("plate", "---", 422), ("national_number", "123", 422), ("case", "x", 422),
                              ("iban", "x" * 201, 422)):
        _problem(client.get(f"{V1}/graph", params={"node_kind": kind, "node_id": key}, headers=headers), status)
    for bad in ({"depth": 0}, {"depth": 3}, {"limit": 0}, {"limit": 1001}):
        _problem(client.get(f"{V1}/graph", params={"node_kind": "plate", "node_id": PLATE, **bad},
                            headers=headers), 422)
    whole = _ok(client.get(f"{V1}/graph", params={"node_kind": "evidence", "node_id": world.c},
                           headers={**sup, **WHY}))
    assert whole["nodes"][0]["case_reference"] == HIDDEN
    small = _ok(client.get(f"{V1}/graph", params={"node_kind": "plate", "node_id": PLATE, "limit": 2},
                           headers={**sup, **WHY}))
    assert len(small["nodes"]) == 2 and small["truncated"] is True


def test_the_api_speaks_the_graph_vocabulary() -> None:
    assert get_args(NodeKind) == NODE_KINDS
