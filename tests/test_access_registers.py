"""Access to every route, role by role, and the registers' and matching routes' audit and input rules, on both
record stores.

`ROUTE_ROLES` says, for every route of the app, which roles may use it: a route missing from it (a new one) or
one it names that the app no longer has fails the first test. Each route is then called by one account of each
role, with real ids (case HOME's item, finding, matches, fingerprint and face search requests; a registered
person with a car, a watchlist, a reference photo and a tenprint record): a role not listed gets 403 (or, when it
sees no case at all, the 404 of a case-scoped id), a role listed is let through (whatever the answer then is).
Then: every consultation of the registers and of matches notes each person shown once, with the purpose; a read
without a purpose shows and notes nobody; a register write answers a vehicle's owner only to a writer who
supplied it or stated a purpose; every body is capped (413) and a malformed one is a 422; an overlong id is a
422, never a server error; a NUL or control character in a register body or lookup is refused, never sent to
PostgreSQL (a NUL anywhere in a request is refused before routing, `api.limits`, and logged without it).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from storage import audit, matches, matching, persons, searches, tenprints, vehicles, watchlists
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Evidence, MatchRequest
from tests import match_samples as samples
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.fingerprint_samples import extracted_iso
from tests.media_samples import bus_jpg_path
from tests.register_samples import person
from tests.test_access import CASE_SCOPED, operations
from tests.test_api_matches import crossmatch
from tests.test_tenprints import print_item

HOME, OTHER = "2026-0810", "2026-0811"
WHY = purpose(HOME)
PLATE = "1-ABC-234"
JSON_CAP, UPLOAD_CAP = 4096, 64 * 1024
WEBHOOK_TOKEN = "test-webhook-token-0123456789"

PUBLIC = "public"  # no credentials needed
WEBHOOK = "webhook"  # its own bearer token: every account is refused (401)
EVERYONE = frozenset({INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR, CASE_SYSTEM, AUDITOR, ADMINISTRATOR})
CASES = frozenset({INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR, CASE_SYSTEM})  # on the cases they see
MATCHING = frozenset({INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR})
BIOMETRIC = frozenset({FORENSIC_EXAMINER, SUPERVISOR})
REGISTER_READ = MATCHING
REGISTER_WRITE = frozenset({SUPERVISOR, CASE_SYSTEM})
WATCHLIST_KEEPER = frozenset({SUPERVISOR})
ACCOUNTS = frozenset({ADMINISTRATOR})
ASSIGNMENTS = frozenset({ADMINISTRATOR, SUPERVISOR})
AUDIT = frozenset({AUDITOR})
ROUTE_ROLES: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/health"): PUBLIC, ("POST", "/auth/token"): PUBLIC, ("POST", "/auth/revoke"): PUBLIC,
    ("GET", "/openapi.json"): EVERYONE,
    ("POST", "/cases"): frozenset({INVESTIGATOR, SUPERVISOR, CASE_SYSTEM}), ("GET", "/cases"): CASES,
    ("GET", "/cases/{case_id}"): CASES, ("GET", "/cases/{case_id}/evidence"): CASES,
    ("GET", "/cases/{case_id}/findings"): CASES, ("POST", "/cases/{case_id}/evidence"): CASES,
    ("POST", "/cases/{case_id}/evidence/presigned-upload"): CASES, ("GET", "/cases/{case_id}/search"): CASES,
    ("GET", "/evidence/{evidence_id}"): CASES, ("GET", "/evidence/{evidence_id}/content"): CASES,
    ("GET", "/evidence/{evidence_id}/analysis"): CASES, ("GET", "/evidence/{evidence_id}/findings"): CASES,
    ("GET", "/findings/{finding_id}/artifacts/{index}"): CASES, ("GET", "/search"): CASES,
    ("POST", "/intake/minio-events"): WEBHOOK, ("GET", "/intake/failures"): frozenset({SUPERVISOR, ADMINISTRATOR}),
    ("POST", "/fingerprints/verifications"): MATCHING, ("POST", "/fingerprints/searches"): MATCHING,
    ("GET", "/fingerprints/requests/{request_id}"): MATCHING,
    ("GET", "/evidence/{evidence_id}/fingerprint-template"): BIOMETRIC,
    ("POST", "/admin/users"): ACCOUNTS, ("GET", "/admin/users"): ACCOUNTS, ("GET", "/admin/users/{username}"): ACCOUNTS,
    ("POST", "/admin/users/{username}/deactivate"): ACCOUNTS, ("PUT", "/admin/users/{username}/password"): ACCOUNTS,
    ("PUT", "/admin/users/{username}/roles"): ACCOUNTS, ("POST", "/admin/users/{username}/api-keys"): ACCOUNTS,
    ("GET", "/admin/users/{username}/api-keys"): ACCOUNTS, ("POST", "/admin/api-keys/{key_id}/revoke"): ACCOUNTS,
    ("GET", "/admin/cases/{case_id}/assignments"): ASSIGNMENTS,
    ("PUT", "/admin/cases/{case_id}/assignments/{username}"): ASSIGNMENTS,
    ("DELETE", "/admin/cases/{case_id}/assignments/{username}"): ASSIGNMENTS,
    ("GET", "/audit"): AUDIT, ("GET", "/audit/verify"): AUDIT,
    ("POST", "/persons"): REGISTER_WRITE, ("GET", "/persons"): REGISTER_READ,
    ("GET", "/persons/{person_id}"): REGISTER_READ, ("PATCH", "/persons/{person_id}"): REGISTER_WRITE,
    ("DELETE", "/persons/{person_id}"): REGISTER_WRITE, ("GET", "/persons/{person_id}/vehicles"): REGISTER_READ,
    ("PUT", "/persons/{person_id}/photos/{evidence_id}"): REGISTER_WRITE,
    ("DELETE", "/persons/{person_id}/photos/{evidence_id}"): REGISTER_WRITE,
    ("PUT", "/persons/{person_id}/tenprints/{evidence_id}"): REGISTER_WRITE,
    ("GET", "/persons/{person_id}/tenprints"): REGISTER_READ,
    ("DELETE", "/persons/{person_id}/tenprints/{record_id}"): REGISTER_WRITE,
    ("GET", "/galleries/fingerprints"): REGISTER_READ,
    ("POST", "/vehicles"): REGISTER_WRITE, ("GET", "/vehicles"): REGISTER_READ,
    ("GET", "/vehicles/{vehicle_id}"): REGISTER_READ, ("PATCH", "/vehicles/{vehicle_id}"): REGISTER_WRITE,
    ("PUT", "/vehicles/{vehicle_id}/status"): REGISTER_WRITE,
    ("GET", "/vehicles/{vehicle_id}/status-history"): REGISTER_READ,
    ("POST", "/watchlists"): WATCHLIST_KEEPER, ("GET", "/watchlists"): REGISTER_READ,
    ("GET", "/watchlists/{watchlist_id}"): REGISTER_READ, ("GET", "/watchlists/{watchlist_id}/members"): REGISTER_READ,
    ("POST", "/watchlists/{watchlist_id}/members"): WATCHLIST_KEEPER,
    ("DELETE", "/watchlists/{watchlist_id}/members/{person_id}"): WATCHLIST_KEEPER,
    ("POST", "/registers/{register}/import"): REGISTER_WRITE,
    ("GET", "/evidence/{evidence_id}/matches"): MATCHING, ("GET", "/cases/{case_id}/matches"): MATCHING,
    ("GET", "/matches/{match_id}"): MATCHING, ("GET", "/search/plates"): MATCHING,
    ("GET", "/search/national-numbers"): MATCHING,
    ("POST", "/search/faces"): MATCHING, ("POST", "/search/images"): MATCHING,
    ("GET", "/search/requests/{request_id}"): MATCHING,
    # Leads and the identity graph (issue 13): who searches across cases.
    ("GET", "/cases/{case_id}/leads"): MATCHING, ("GET", "/leads/{lead_id}"): MATCHING, ("GET", "/graph"): MATCHING,
    # The review of matches (issue 13): examiners decide, supervisors reopen and assign, both read the rest.
    ("POST", "/matches/{match_id}/decisions"): frozenset({FORENSIC_EXAMINER}),
    ("GET", "/matches/{match_id}/decisions"): frozenset({FORENSIC_EXAMINER, SUPERVISOR}),
    ("POST", "/matches/{match_id}/reopen"): frozenset({SUPERVISOR}),
    ("PUT", "/matches/{match_id}/assignment"): frozenset({SUPERVISOR}),
    ("GET", "/reviews/queue"): frozenset({FORENSIC_EXAMINER, SUPERVISOR}),
    ("GET", "/reviews/calibration"): frozenset({FORENSIC_EXAMINER, SUPERVISOR}),
    # Real-time delivery (issue 13): each role with case data, on its own subscriptions and the events it sees.
    ("POST", "/subscriptions"): CASES, ("GET", "/subscriptions"): CASES,
    ("GET", "/subscriptions/{subscription_id}"): CASES, ("DELETE", "/subscriptions/{subscription_id}"): CASES,
    ("GET", "/subscriptions/{subscription_id}/deliveries"): CASES,
    ("GET", "/subscriptions/{subscription_id}/deliveries/{delivery_id}"): CASES,
    ("POST", "/subscriptions/{subscription_id}/deliveries/{delivery_id}/replay"): CASES,
    ("POST", "/subscriptions/{subscription_id}/replay"): CASES, ("GET", "/events/stream"): CASES,
}
STREAMED = {("POST", "/cases/{case_id}/evidence"), ("POST", "/registers/{register}/import")}  # not JSON, own caps
FORM = {("POST", "/auth/token"), ("POST", "/auth/revoke")}  # form bodies


@dataclass(frozen=True)
class World:
    """Case HOME: an uploaded item `a` that read the car's plate and its owner's national number (cross-matched
    with `b` of case OTHER, the car and the owner), a fingerprint item enrolled as the owner's right index, a
    fingerprint and a face search request. The owner and a second person are on a watchlist; `a` is the owner's
    reference photo."""

    ids: dict[str, str]  # path parameter -> a real value
    owner: str  # national numbers
    second: str
    person_match: str
    cases: dict[str, str]


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY,
                        max_json_bytes=JSON_CAP, max_upload_bytes=UPLOAD_CAP, webhook_token=WEBHOOK_TOKEN)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def world(client: TestClient) -> World:
    sup = account(client, "sup", (SUPERVISOR,))
    cases = {reference: client.post(f"{V1}/cases", headers=sup, json={"reference": reference, "title": "t"}).json()
             ["id"] for reference in (HOME, OTHER)}
    upload = client.post(f"{V1}/cases/{cases[HOME]}/evidence", headers=sup,
                         files={"file": ("scene.jpg", bus_jpg_path().read_bytes()[:UPLOAD_CAP // 2], "image/jpeg")})
    assert upload.status_code == 201, upload.text
    a_id = upload.json()["evidence"]["id"]
    owner, second = person(81), person(82)
    with transaction(client.app.state.session_factory) as session:  # type: ignore[attr-defined]
        owner_id = persons.put_person(session, row=persons.parse_person(owner))[0].id
        second_id = persons.put_person(session, row=persons.parse_person(second))[0].id
        car, _ = vehicles.put_vehicle(session, row=vehicles.parse_vehicle({
            "plate": PLATE, "country": "BE", "owner_national_number": owner["national_number"], "status": "stolen",
            "status_authority": "PZ Antwerpen", "status_date": "2026-03-01"}), recorded_by="t")
        a = session.get(Evidence, a_id)
        assert a is not None
        b = samples.item(session, OTHER)
        samples.record(session, b, "plates", "2.1.0", [samples.plate("1ABC234", alternatives=False)])
        [finding_id, _] = samples.record(session, a, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)]) \
            + samples.record(session, a, "entities", "1.0.0", [samples.entity("national_number",
                                                                               owner["national_number"])])
        for item in (b, a):
            crossmatch(session, evidence_id=item.id)
        person_match = next(m.id for m in matches.matches_of(session, evidence_id=a.id) if m.target_kind == "person")
        watch = watchlists.create_watchlist(session, name="robbers", purpose="armed robberies", owner="sup",
                                            expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=30),
                                            created_by="t")
        watchlists.add_members(session, watchlist=watch, person_ids=[owner_id, second_id], added_by="t")
        persons.link_photo(session, person_id=owner_id, evidence_id=a.id, added_by="t")
        card = print_item(session, HOME, extracted_iso(21, 0))
        record, _ = tenprints.enrol(session, person_id=owner_id, evidence_id=card.id, finger=2, impression="rolled",
                                    enrolled_by="t")
        request = matching.request_match(session, kind=matching.SEARCH, probe=card, candidate=None, parameters={},
                                         requested_by="sup")
        face_search = MatchRequest(kind=searches.FACE_SEARCH, probe_evidence_id=a.id, parameters={},
                                   requested_by="sup")
        session.add(face_search)
        session.flush()
        ids = {"case_id": cases[HOME], "evidence_id": a.id, "finding_id": finding_id, "match_id": person_match,
               "request_id": request.id, "search_request_id": face_search.id, "person_id": owner_id,
               "vehicle_id": car.id, "watchlist_id": watch.id, "record_id": record.id, "register": "persons",
               "username": "victim", "key_id": "no-such-key", "index": "0",
               "subscription_id": "no-such-subscription", "delivery_id": "1", "lead_id": "no-such-lead"}
    return World(ids, owner["national_number"], second["national_number"], person_match, cases)


@pytest.fixture
def personas(client: TestClient, world: World) -> dict[str, dict[str, str]]:
    """One account of each role, those with case data assigned to HOME, each with a purpose naming HOME."""
    home = [world.cases[HOME]]
    account(client, "victim", (INVESTIGATOR,))  # the account the administration routes act on
    return {role: {**account(client, f"the-{role}", (role,), cases=home if role in CASES else ()), **WHY}
            for role in EVERYONE}


def _url(template: str, ids: dict[str, str]) -> str:
    def value(found: re.Match[str]) -> str:
        name = found.group(1)
        return ids["search_request_id" if name == "request_id" and template.startswith("/search/") else name]

    return V1 + re.sub(r"\{(\w+)\}", value, template)


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return list(audit.query(session, limit=10_000, **filters))


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def test_every_route_declares_who_may_use_it_and_refuses_every_other_role(
        client: TestClient, world: World, personas: dict[str, dict[str, str]]) -> None:
    served = {(method, path.removeprefix(V1)) for method, path in operations(client.app)}
    unruled, gone = served - set(ROUTE_ROLES), set(ROUTE_ROLES) - served
    assert not unruled, f"routes with no rule in ROUTE_ROLES (say who may use them): {sorted(unruled)}"
    assert not gone, f"rules of routes the app no longer has: {sorted(gone)}"
    order = {"GET": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}  # reads first; the person is deleted last
    routes = sorted(ROUTE_ROLES, key=lambda route: (order[route[0]], route[1] == "/persons/{person_id}", route))
    let_through = 0
    for method, template in routes:
        rule = ROUTE_ROLES[method, template]
        url = _url(template, world.ids)
        for role, headers in sorted(personas.items()):
            response = client.request(method, url, headers=headers)
            status, where = response.status_code, (method, template, role, response.text[:200])
            assert status < 500, where
            if rule == PUBLIC:
                assert status not in (401, 403), where
            elif rule == WEBHOOK:
                assert status == 401, where
            elif role in rule:
                assert status not in (401, 403), where
                let_through += 1
            elif role in CASES or not CASE_SCOPED.search(template):
                assert status == 403, where
            else:  # an auditor or administrator sees no case: what belongs to one does not exist for them
                assert status in (403, 404), where
    assert let_through > 150
    assert client.get(_url("/persons/{person_id}", world.ids), headers=personas[SUPERVISOR]).status_code == 404


# (route, query): each shows the owner (the watchlist's members also the second person)
CONSULTATIONS: tuple[tuple[str, dict[str, str]], ...] = (
    ("/persons", {"national_number": "{owner}"}), ("/persons", {"name": "jans"}), ("/persons/{person_id}", {}),
    ("/persons/{person_id}/vehicles", {}), ("/persons/{person_id}/tenprints", {}),
    ("/vehicles", {"plate": PLATE.lower()}), ("/vehicles/{vehicle_id}", {}), ("/watchlists/{watchlist_id}/members", {}),
    ("/evidence/{evidence_id}/matches", {}), ("/cases/{case_id}/matches", {}), ("/matches/{match_id}", {}),
    ("/search/plates", {"plate": PLATE}), ("/search/national-numbers", {"number": "{owner}"}),
)


def test_each_consultation_notes_every_person_shown_once_with_the_purpose(
        client: TestClient, world: World, personas: dict[str, dict[str, str]]) -> None:
    examiner = personas[FORENSIC_EXAMINER]
    for template, query in CONSULTATIONS:
        params = {name: value.format(owner=world.owner) for name, value in query.items()}
        before = len(_audit(client, actor=f"the-{FORENSIC_EXAMINER}"))
        answer = _ok(client.get(_url(template, world.ids), params=params, headers=examiner))
        assert world.owner in str(answer) or template.endswith("tenprints"), template
        entries = _audit(client, actor=f"the-{FORENSIC_EXAMINER}")[before:]
        expected = {world.owner, world.second} if template.endswith("/members") else {world.owner}
        assert sorted(e.person or "" for e in entries) == sorted(expected), template  # one entry per person
        assert all((e.purpose_case, e.justification, e.action, e.outcome) == (HOME, WHY[
            "X-Locard-Purpose-Justification"], "consultation", "ok") for e in entries), template
        assert {e.resource for e in entries} == {f"GET {V1}{template}"}, template


def test_without_a_purpose_no_person_is_shown_or_noted(client: TestClient, world: World,
                                                       personas: dict[str, dict[str, str]]) -> None:
    bare = {k: v for k, v in personas[INVESTIGATOR].items() if not k.startswith("X-Locard")}
    for template, query in CONSULTATIONS:
        params = {name: value.format(owner=world.owner) for name, value in query.items()}
        response = client.get(_url(template, world.ids), params=params, headers=bare)
        if response.status_code == 200:  # the routes whose purpose is optional: the owner is withheld
            assert world.owner not in response.text, template
        else:
            assert response.status_code == 403 and "purpose" in response.json()["title"].lower(), template
    assert [e.person for e in _audit(client, actor=f"the-{INVESTIGATOR}") if e.person] == []


def test_a_register_write_answers_an_owner_only_to_who_supplied_it_or_states_a_purpose(
        client: TestClient, world: World, personas: dict[str, dict[str, str]]) -> None:
    rms = {k: v for k, v in personas[CASE_SYSTEM].items() if not k.startswith("X-Locard")}
    car = _url("/vehicles/{vehicle_id}", world.ids)
    changes: tuple[tuple[Any, str, dict[str, str]], ...] = (
        (client.patch, car, {}), (client.patch, car, {"colour": "blue"}),
        (client.put, f"{car}/status", {"status": "wanted", "authority": "Parquet", "status_date": "2026-03-02"}))
    for send, url, body in changes:
        answer = _ok(send(url, headers=rms, json=body))
        assert answer["owner_national_number"] is None and answer["owner_withheld"] is True, (url, body)
    assert [e for e in _audit(client, actor=f"the-{CASE_SYSTEM}") if e.person] == []
    shown = _ok(client.patch(car, headers=personas[CASE_SYSTEM], json={}))  # with a purpose: shown and noted
    assert shown["owner_national_number"] == world.owner
    supplied = _ok(client.patch(car, headers=rms, json={"owner_national_number": world.second}))
    assert supplied["owner_national_number"] == world.second  # what the writer wrote
    assert [e.person for e in _audit(client, actor=f"the-{CASE_SYSTEM}") if e.person] == [world.owner, world.second]


def _caller(personas: dict[str, dict[str, str]], method: str, template: str) -> dict[str, str]:
    """The headers of an account the route lets through (a supervisor where it may): the webhook's own token."""
    rule = ROUTE_ROLES[method, template.removeprefix(V1)]
    if rule == WEBHOOK:
        return {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
    allowed = rule if isinstance(rule, frozenset) else EVERYONE
    return personas[SUPERVISOR if SUPERVISOR in allowed else min(allowed)]


def test_every_body_is_capped_and_a_malformed_one_refused(client: TestClient, world: World,
                                                         personas: dict[str, dict[str, str]]) -> None:
    sup = personas[SUPERVISOR]
    document = client.get(f"{V1}/openapi.json", headers=sup).json()
    with_bodies = [(method.upper(), path.removeprefix(V1)) for path, item in document["paths"].items()
                   for method, operation in item.items() if "requestBody" in operation]
    assert len(with_bodies) >= 20
    for method, template in with_bodies:
        url, caller = _url(template, world.ids), _caller(personas, method, template)
        if (method, template) in STREAMED:  # a file, under the upload cap
            oversized = client.request(method, url, headers=caller,
                                       files={"file": ("big.csv", b"1," * UPLOAD_CAP, "text/csv")})
        else:
            oversized = client.request(method, url, headers={**caller, "content-type": "application/json"},
                                       content=b"[" + b"1," * JSON_CAP + b"1]")
        assert oversized.status_code == 413, (method, template, oversized.text[:200])
        if (method, template) in STREAMED | FORM:
            continue
        caller = _caller(personas, method, template)
        for body in (b"{not json", b'{"a": ', b"\xff\xfe", b"[]", b"null"):
            refused = client.request(method, url, headers={**caller, "content-type": "application/json"},
                                     content=body)
            assert refused.status_code == 422, (method, template, body, refused.text[:200])
            assert refused.headers["content-type"].startswith("application/problem+json")


def test_an_overlong_or_odd_id_is_refused_never_a_server_error(client: TestClient, world: World,
                                                               personas: dict[str, dict[str, str]]) -> None:
    for method, template in sorted(ROUTE_ROLES):
        caller = _caller(personas, method, template)
        for name in re.findall(r"\{(\w+)\}", template):
            for odd in ("x" * 65, "' OR 1=1 --", "%E2%80%AE"):
                url = _url(template, {**world.ids, name: odd, "search_request_id": odd}
                           if name == "request_id" else {**world.ids, name: odd})
                status = client.request(method, url, headers=caller).status_code
                assert status < 500, (method, template, name, odd, status)
                if name != "username":  # an assignment may name an OpenID Connect user Locard has not seen
                    assert status in (404, 422), (method, template, name, odd, status)
                if odd == "x" * 65 and name not in ("username", "index", "register"):
                    assert status == 422, (method, template, name, status)


NUL_QUERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("/persons", {"name": "ab\x00"}), ("/persons", {"national_number": "\x00"}), ("/vehicles", {"plate": "1\x00A"}),
    ("/search/plates", {"plate": "1\x00A"}), ("/search", {"q": "bus\x00"}),
    ("/search/national-numbers", {"number": "\x00"}))


def test_a_nul_in_an_id_or_a_query_is_answered_and_audited(client: TestClient, world: World,
                                                          personas: dict[str, dict[str, str]]) -> None:
    """An id or a query with a NUL character is refused (4xx) and audited. PostgreSQL cannot hold a NUL in text or
    JSON: looked up, or written to the audit log as what the request asked for, it would fail the request (500)
    and leave it unaudited."""
    calls: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
        (method, _url(template, {**world.ids, name: "%00", "search_request_id": "%00"}), {},
         _caller(personas, method, template))
        for method, template in sorted(ROUTE_ROLES) for name in re.findall(r"\{(\w+)\}", template)]
    calls += [("GET", f"{V1}{path}", params, personas[SUPERVISOR]) for path, params in NUL_QUERIES]
    failed = []
    for method, url, params, headers in calls:
        before = len(_audit(client))
        status = client.request(method, url, params=params, headers=headers).status_code
        if status >= 500 or (status < 400 and not params) or len(_audit(client)) <= before:
            failed.append(f"{method} {url} {params}: {status}, audited: {len(_audit(client)) > before}")
    assert not failed, "\n".join(failed)


def test_a_nul_in_a_json_or_form_body_is_refused_before_routing_and_audited(
        client: TestClient, world: World, personas: dict[str, dict[str, str]]) -> None:
    sup = personas[SUPERVISOR]
    for path, body in ((f"{V1}/search/faces", {"evidence_id": "a\x00b"}),
                       (f"{V1}/fingerprints/searches", {"probe_evidence_id": "a\x00", "limit": 5}),
                       (f"{V1}/watchlists/x/members", {"person_ids": ["p\x00"]})):
        before = len(_audit(client))
        refused = client.post(path, json=body, headers=sup)
        assert refused.status_code == 400 and refused.json()["title"] == "Invalid character", (path, refused.text)
        [entry] = _audit(client)[before:]
        assert entry.outcome != "ok" and "\x00" not in f"{entry.resource} {entry.resource_id} {entry.detail}"
    token = client.post(f"{V1}/auth/token", data={"grant_type": "password", "username": "sup\x00", "password": "x"})
    assert token.status_code == 400


def test_a_nul_or_control_character_in_a_register_body_is_refused(client: TestClient, world: World,
                                                                  personas: dict[str, dict[str, str]]) -> None:
    sup = personas[SUPERVISOR]
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=3)).isoformat()
    watchlist = {"name": "fences", "purpose": "stolen goods\nresale", "owner": "sup", "expires_at": later}
    for field, value in (("name", "a\x00"), ("name", "a\nb"), ("owner", "s\x00"), ("purpose", "p\x00")):
        refused = client.post(f"{V1}/watchlists", headers=sup, json={**watchlist, field: value})
        if "\x00" in value:  # refused before routing (api.limits)
            assert refused.status_code == 400 and refused.json()["title"] == "Invalid character", refused.text
        else:
            assert refused.status_code == 422 and field in refused.json()["detail"], (field, refused.text)
    _ok(client.post(f"{V1}/watchlists", headers=sup, json=watchlist), 201)  # a purpose may have lines
    members = _url("/watchlists/{watchlist_id}/members", world.ids)
    assert client.post(members, headers=sup, json={"person_ids": [world.ids["person_id"], "\x00"]}).status_code \
        == 400
    named = client.post(f"{V1}/persons", headers=sup, json={**person(83), "family_name": "A\x00"})
    assert named.status_code == 400
    assert client.get(f"{V1}/persons", params={"national_number": world.owner + "\x00"},
                      headers=sup).status_code == 400
    assert client.get(f"{V1}/persons", params={"name": "ja\x01"}, headers=sup).status_code == 422
