"""The registers' API on both record stores: persons, vehicles and watchlists (CRUD, lookups, reference photos),
bulk import, the purpose rule, the per-person audit trail, role refusals and minimisation, hostile input."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from storage import audit
from storage.fakes import MemoryObjectStore
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_SYSTEM, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from tests.api_helpers import V1, account, purpose
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.media_samples import bus_jpg_path
from tests.register_samples import bad_check, national_number, person, plate, vehicle

CASE = "2026-0700"
WHY = purpose(CASE)
UPLOAD_CAP = 64 * 1024
JSON_CAP = 4096


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY,
                        max_upload_bytes=UPLOAD_CAP, max_json_bytes=JSON_CAP)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def case_id(client: TestClient) -> str:
    response = client.post(f"{V1}/cases", json={"reference": CASE, "title": "Car-jackings, Antwerpen"},
                           headers=account(client, "sup"))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
def sup(client: TestClient, case_id: str) -> dict[str, str]:
    return {**account(client, "sup", (SUPERVISOR,)), **WHY}


@pytest.fixture
def ivy(client: TestClient, case_id: str) -> dict[str, str]:
    """An investigator assigned to the purpose case (the purpose headers not included)."""
    return account(client, "ivy", (INVESTIGATOR,), cases=[case_id])


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["detail"]
    return body


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def _audit(client: TestClient, **filters: Any) -> list[audit.AuditEntry]:
    with client.app.state.session_factory() as session:  # type: ignore[attr-defined]
        return list(audit.query(session, limit=10_000, **filters))


def _vehicle(index: int) -> dict[str, str]:
    """A sample vehicle as the API takes it (fields left empty in the import samples are left out)."""
    return {name: value for name, value in vehicle(index).items() if value}


def _formatted(number: str) -> str:
    return f"{number[:2]}.{number[2:4]}.{number[4:6]}-{number[6:9]}.{number[9:]}"


def test_a_person_round_trip_needs_a_purpose_to_be_read(client: TestClient, sup: dict[str, str]) -> None:
    number = national_number(11)
    created = _ok(client.post(f"{V1}/persons", headers=sup,
                              json={**person(11), "national_number": _formatted(number), "date_of_birth": None}), 201)
    assert created["national_number"] == number and created["date_of_birth"] == person(11)["date_of_birth"]
    _problem(client.post(f"{V1}/persons", headers=sup, json=person(11)), 409)
    url = f"{V1}/persons/{created['id']}"
    no_purpose = {k: v for k, v in sup.items() if not k.startswith("X-Locard")}
    assert "purpose" in _problem(client.get(url, headers=no_purpose), 403)["title"].lower()
    assert _ok(client.get(url, headers=sup))["family_name"] == person(11)["family_name"]
    assert "purpose" in _problem(client.patch(url, headers=no_purpose, json={}), 403)["title"].lower()
    changed = _ok(client.patch(url, headers=sup, json={"given_names": "Anne-Marie", "nationality": "nl"}))
    assert changed["given_names"] == "Anne-Marie" and changed["nationality"] == "NL"
    assert changed["family_name"] == person(11)["family_name"] and changed["national_number"] == number
    _problem(client.patch(url, headers=sup, json={"national_number": national_number(12)}), 422)  # the key stays
    _problem(client.patch(url, headers=sup, json={"nationality": "Belgium"}), 422)
    _problem(client.patch(url, headers=sup, json={"date_of_birth": "1931-01-01"}), 422)  # the number says otherwise
    _problem(client.post(f"{V1}/persons", headers=sup, json={**person(13), "national_number": bad_check(
        national_number(13))}), 422)
    assert client.delete(url, headers=sup).status_code == 204
    _problem(client.get(url, headers=sup), 404)
    _problem(client.delete(url, headers=sup), 404)
    erased = _audit(client, person=number, action="erasure")
    assert [entry.actor for entry in erased] == ["sup"]


def test_lookups_by_number_and_name_are_literal_and_audited_per_person(client: TestClient, sup: dict[str, str],
                                                                      ivy: dict[str, str]) -> None:
    people = [person(i) for i in range(4)]
    for index, fields in enumerate(people):
        family = {0: "Liégeois", 1: "Du_ont", 2: "Dupont", 3: "Du%ont"}[index]
        _ok(client.post(f"{V1}/persons", headers=sup, json={**fields, "family_name": family}), 201)
    number = people[0]["national_number"]
    for written in (number, _formatted(number), f" {number[:6]} {number[6:]} "):
        found = _ok(client.get(f"{V1}/persons", params={"national_number": written}, headers={**ivy, **WHY}))
        assert [p["family_name"] for p in found] == ["Liégeois"]

    def names(prefix: str) -> list[str]:
        found = _ok(client.get(f"{V1}/persons", params={"name": prefix}, headers={**ivy, **WHY}))
        return [p["family_name"] for p in found]

    assert names("LIEG") == ["Liégeois"]  # case and accents ignored
    assert names("du_") == ["Du_ont"] and names("du%") == ["Du%ont"]  # wildcards are taken literally
    assert names("%%") == [] and names("__") == [] and names("d%") == [] and names("' OR 1=1 --") == []
    assert sorted(names("du")) == ["Du%ont", "Du_ont", "Dupont"]
    _problem(client.get(f"{V1}/persons", params={"name": "d"}, headers={**ivy, **WHY}), 422)
    _problem(client.get(f"{V1}/persons", headers={**ivy, **WHY}), 422)  # one lookup at a time
    _problem(client.get(f"{V1}/persons", params={"name": "du"}, headers=ivy), 403)
    nobody = national_number(900)
    assert _ok(client.get(f"{V1}/persons", params={"national_number": nobody}, headers={**ivy, **WHY})) == []
    consulted = _audit(client, person=number, actor="ivy")
    assert len(consulted) == 4 and {e.action for e in consulted} == {"consultation"}  # 3 by number, 1 by name
    assert all(e.purpose_case == CASE and e.justification and e.outcome == "ok" for e in consulted)
    assert len(_audit(client, person=nobody, actor="ivy")) == 1  # a number looked up is noted even if unknown
    assert {e.person for e in _audit(client, actor="ivy")} >= {p["national_number"] for p in people[1:]}


def test_vehicles_status_history_and_the_owner_only_with_a_purpose(client: TestClient, sup: dict[str, str],
                                                                   ivy: dict[str, str]) -> None:
    owner = _ok(client.post(f"{V1}/persons", headers=sup, json=person(5)), 201)
    fields = {**vehicle(5), "owner_national_number": _formatted(owner["national_number"]), "status": "stolen",
              "status_authority": "", "status_date": ""}
    _problem(client.post(f"{V1}/vehicles", headers=sup, json={**fields, "status_date": None}), 422)
    fields = {k: v for k, v in fields.items() if not k.startswith("status")}
    car = _ok(client.post(f"{V1}/vehicles", headers=sup, json=fields), 201)
    assert car["plate_key"] == plate(5).replace("-", "") and car["owner_national_number"] == owner["national_number"]
    _problem(client.post(f"{V1}/vehicles", headers=sup, json={**fields, "plate": plate(5).lower()}), 409)
    url = f"{V1}/vehicles/{car['id']}"
    _problem(client.put(f"{url}/status", headers=sup, json={"status": "stolen"}), 422)  # authority and date needed
    _problem(client.put(f"{url}/status", headers=sup, json={"status": "stolen", "authority": "PZ Antwerpen",
                                                            "status_date": "2999-01-01"}), 422)
    _ok(client.put(f"{url}/status", headers=sup, json={"status": "stolen", "authority": "PZ Antwerpen",
                                                       "status_date": "2026-03-01"}))
    _ok(client.put(f"{url}/status", headers=sup, json={"status": "none"}))
    history = _ok(client.get(f"{url}/status-history", headers=ivy))
    assert [(h["status"], h["authority"], h["recorded_by"]) for h in history] == [
        ("stolen", "PZ Antwerpen", "sup"), ("none", None, "sup")]
    _ok(client.put(f"{url}/status", headers=sup, json={"status": "wanted", "authority": "Parquet",
                                                       "status_date": "2026-03-02"}))
    wanted = _ok(client.get(f"{V1}/vehicles", params={"status": "wanted"}, headers=ivy))
    assert [v["id"] for v in wanted] == [car["id"]]
    # Without a purpose: the vehicle, its owner withheld and not consulted; with one: shown and audited.
    plain = _ok(client.get(f"{V1}/vehicles", params={"plate": plate(5).replace("-", " ").lower()}, headers=ivy))
    assert [v["id"] for v in plain] == [car["id"]]
    assert plain[0]["owner_national_number"] is None and plain[0]["owner_withheld"] is True
    assert _ok(client.get(url, headers=ivy))["owner_withheld"] is True
    assert _audit(client, person=owner["national_number"], actor="ivy") == []
    shown = _ok(client.get(url, headers={**ivy, **WHY}))
    assert shown["owner_national_number"] == owner["national_number"] and shown["owner_withheld"] is False
    assert len(_audit(client, person=owner["national_number"], actor="ivy")) == 1
    _problem(client.get(url, headers={**ivy, **purpose("2099-0001")}), 403)  # a purpose must name one's case
    owned = _ok(client.get(f"{V1}/persons/{owner['id']}/vehicles", headers={**ivy, **WHY}))
    assert [v["id"] for v in owned] == [car["id"]]
    _problem(client.get(f"{V1}/persons/{owner['id']}/vehicles", headers=ivy), 403)
    changed = _ok(client.patch(url, headers=sup, json={"colour": "green", "owner_national_number": None}))
    assert changed["colour"] == "green" and changed["owner_national_number"] is None
    assert changed["status"] == "wanted" and changed["plate"] == plate(5)
    _problem(client.patch(url, headers=sup, json={"plate": "X"}), 422)
    _problem(client.get(f"{V1}/vehicles", params={"plate": "---"}, headers=ivy), 422)


def test_ids_of_other_kinds_are_not_found(client: TestClient, sup: dict[str, str]) -> None:
    someone = _ok(client.post(f"{V1}/persons", headers=sup, json=person(21)), 201)
    car = _ok(client.post(f"{V1}/vehicles", headers=sup, json=_vehicle(21)), 201)
    expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).isoformat()
    watch = _ok(client.post(f"{V1}/watchlists", headers=sup, json={
        "name": "car-jackers", "purpose": "series of car-jackings", "owner": "sup", "expires_at": expiry}), 201)
    for url in (f"{V1}/persons/{car['id']}", f"{V1}/persons/{watch['id']}", f"{V1}/vehicles/{someone['id']}",
                f"{V1}/vehicles/{watch['id']}/status-history", f"{V1}/watchlists/{someone['id']}",
                f"{V1}/watchlists/{car['id']}/members", f"{V1}/persons/{'x' * 64}"):
        _problem(client.get(url, headers=sup), 404)
    _problem(client.get(f"{V1}/persons/{'x' * 65}", headers=sup), 422)
    _problem(client.post(f"{V1}/watchlists/{watch['id']}/members", headers=sup,
                         json={"person_ids": [car["id"]]}), 422)


def test_roles_who_may_consult_and_who_may_write(client: TestClient, sup: dict[str, str], ivy: dict[str, str],
                                                 case_id: str) -> None:
    someone = _ok(client.post(f"{V1}/persons", headers=sup, json=person(31)), 201)
    examiner = {**account(client, "fey", (FORENSIC_EXAMINER,), cases=[case_id]), **WHY}
    assert _ok(client.get(f"{V1}/persons/{someone['id']}", headers=examiner))["id"] == someone["id"]
    for name, roles in (("audrey", (AUDITOR,)), ("root", (ADMINISTRATOR,))):
        headers = {**account(client, name, roles), **WHY}
        for url in (f"{V1}/persons/{someone['id']}", f"{V1}/persons?national_number={someone['national_number']}",
                    f"{V1}/vehicles?status=none", f"{V1}/watchlists"):
            refused = _problem(client.get(url, headers=headers), 403)
            assert "investigator" in refused["detail"] and "supervisor" in refused["detail"]
        _problem(client.post(f"{V1}/persons", headers=headers, json=person(32)), 403)
        assert _audit(client, person=someone["national_number"], actor=name) == []
        denied = [e for e in _audit(client, actor=name) if e.outcome == "denied"]
        assert denied and all("roles" in e.detail["reason"] for e in denied)
    # Investigators consult but do not write; a case system writes and imports but does not consult.
    _problem(client.post(f"{V1}/persons", headers=ivy, json=person(33)), 403)
    _problem(client.delete(f"{V1}/persons/{someone['id']}", headers=ivy), 403)
    _problem(client.post(f"{V1}/watchlists", headers=ivy, json={}), 403)
    rms = {**account(client, "rms", (CASE_SYSTEM,), cases=[case_id]), **WHY}
    created = _ok(client.post(f"{V1}/persons", headers=rms, json=person(34)), 201)
    _problem(client.get(f"{V1}/persons/{created['id']}", headers=rms), 403)
    _ok(client.post(f"{V1}/registers/vehicles/import?format=jsonl", headers=rms,
                    content=json.dumps(vehicle(34)).encode()))
    _problem(client.post(f"{V1}/watchlists", headers=rms, json={}), 403)


def test_reference_photos_are_evidence_the_caller_may_see(client: TestClient, sup: dict[str, str],
                                                          ivy: dict[str, str], case_id: str) -> None:
    someone = _ok(client.post(f"{V1}/persons", headers=sup, json=person(41)), 201)
    upload = client.post(f"{V1}/cases/{case_id}/evidence", headers=sup,
                         files={"file": ("face.jpg", bus_jpg_path().read_bytes()[:UPLOAD_CAP // 2], "image/jpeg")})
    evidence_id = _ok(upload, 201)["evidence"]["id"]
    url = f"{V1}/persons/{someone['id']}/photos/{evidence_id}"
    assert _ok(client.put(url, headers=sup), 201)["linked"] is True
    assert _ok(client.put(url, headers=sup))["linked"] is False
    assert _ok(client.get(f"{V1}/persons/{someone['id']}", headers=sup))["photos"] == [evidence_id]
    outsider = account(client, "rms-other", (CASE_SYSTEM,))  # not assigned to the photo's case
    _problem(client.put(url, headers=outsider), 404)  # another case's item does not exist for it
    _problem(client.put(url, headers=ivy), 403)  # she sees the item, but does not write the register
    _problem(client.put(f"{V1}/persons/{someone['id']}/photos/no-such-item", headers=sup), 404)
    assert client.delete(url, headers=sup).status_code == 204
    _problem(client.delete(url, headers=sup), 404)
    assert _ok(client.get(f"{V1}/persons/{someone['id']}", headers=sup))["photos"] == []


def test_watchlists_members_need_a_purpose(client: TestClient, sup: dict[str, str], ivy: dict[str, str]) -> None:
    people = [_ok(client.post(f"{V1}/persons", headers=sup, json=person(i)), 201) for i in (51, 52)]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    body = {"name": "robbers", "purpose": "armed robberies 2026", "owner": "sup", "expires_at": later.isoformat()}
    watch = _ok(client.post(f"{V1}/watchlists", headers=sup, json=body), 201)
    assert watch["active"] is True and watch["created_by"] == "sup"
    _problem(client.post(f"{V1}/watchlists", headers=sup, json=body), 409)
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    _problem(client.post(f"{V1}/watchlists", headers=sup, json={**body, "name": "old", "expires_at": past}), 422)
    _problem(client.post(f"{V1}/watchlists", headers=sup, json={**body, "name": "naive",
                                                                "expires_at": "2099-01-01T00:00:00"}), 422)
    _problem(client.post(f"{V1}/watchlists", headers=sup, json={**body, "name": "x", "purpose": " "}), 422)
    members = f"{V1}/watchlists/{watch['id']}/members"
    ids = [p["id"] for p in people]
    assert _ok(client.post(members, headers=sup, json={"person_ids": ids}))["added"] == 2
    assert _ok(client.post(members, headers=sup, json={"person_ids": ids}))["added"] == 0
    _problem(client.post(members, headers=ivy, json={"person_ids": ids}), 403)
    _problem(client.get(members, headers=ivy), 403)
    listed = _ok(client.get(members, headers={**ivy, **WHY}))
    assert sorted(p["id"] for p in listed) == sorted(ids)
    for someone in people:
        assert [e.actor for e in _audit(client, person=someone["national_number"], actor="ivy")] == ["ivy"]
        added = _audit(client, person=someone["national_number"], actor="sup", action="collection")
        assert [e.resource for e in added].count("POST /api/v1/watchlists/{watchlist_id}/members") == 2
    assert [w["name"] for w in _ok(client.get(f"{V1}/watchlists", headers=ivy))] == ["robbers"]
    assert client.delete(f"{members}/{ids[0]}", headers=sup).status_code == 204
    _problem(client.delete(f"{members}/{ids[0]}", headers=sup), 404)
    assert [p["id"] for p in _ok(client.get(members, headers={**ivy, **WHY}))] == [ids[1]]


def _csv(rows: list[dict[str, str]], bad: dict[int, dict[str, str]]) -> bytes:
    header = list(rows[0])
    lines = [",".join(header)]
    for index, row in enumerate(rows):
        values = {**row, **bad.get(index, {})}
        lines.append(",".join(values[name] for name in header))
    return ("\n".join(lines) + "\n").encode()


def test_import_reports_bad_rows_by_line_and_is_idempotent(client: TestClient, sup: dict[str, str]) -> None:
    rows = [person(i) for i in range(100, 220)]
    bad = {3: {"national_number": bad_check(rows[3]["national_number"])}, 40: {"family_name": ""},
           41: {"date_of_birth": "1990-13-01"}}
    data = _csv(rows, bad)
    assert len(data) > JSON_CAP  # an import is streamed, not held to the JSON body cap
    first = _ok(client.post(f"{V1}/registers/persons/import", headers=sup,
                            files={"file": ("people.csv", data, "text/csv")}))
    assert (first["rows"], first["added"], first["rejected"], first["unchanged"]) == (120, 117, 3, 0)
    assert [r["line"] for r in first["rejections"]] == [5, 42, 43]  # the header is line 1
    assert "check number" in first["rejections"][0]["reason"] and "family_name" in first["rejections"][1]["reason"]
    again = _ok(client.post(f"{V1}/registers/persons/import", headers={**sup, "content-type": "text/csv"},
                            content=data))
    assert (again["added"], again["updated"], again["unchanged"], again["rejected"]) == (0, 0, 117, 3)
    assert again["sha256"] == first["sha256"]
    found = _ok(client.get(f"{V1}/persons", params={"national_number": rows[0]["national_number"]}, headers=sup))
    assert len(found) == 1
    imports = _audit(client, actor="sup", action="collection")
    assert sum(1 for e in imports if e.resource == "register import persons") == 2
    lines = [json.dumps(vehicle(i)) for i in range(3)] + ["{not json", json.dumps({"plate": "1-XYZ-001"})]
    jsonl = _ok(client.post(f"{V1}/registers/vehicles/import", headers={**sup, "content-type": "application/x-ndjson"},
                            content="\n".join(lines).encode()))
    assert (jsonl["added"], jsonl["rejected"]) == (3, 2) and [r["line"] for r in jsonl["rejections"]] == [4, 5]


def test_refused_and_oversized_imports(client: TestClient, sup: dict[str, str]) -> None:
    refused = _problem(client.post(f"{V1}/registers/persons/import?format=csv", headers=sup,
                                   content=b"national_number,shoe_size\n1,2\n"), 422)
    assert "shoe_size" in refused["detail"]
    _problem(client.post(f"{V1}/registers/persons/import", headers={**sup, "content-type": "application/pdf"},
                         content=b"%PDF-1.7"), 422)  # no format to read it with
    _problem(client.post(f"{V1}/registers/persons/import?format=csv", headers=sup, content=b""), 422)
    _problem(client.post(f"{V1}/registers/animals/import?format=csv", headers=sup, content=b"a\n"), 422)
    huge = b"national_number,family_name\n" + b"85073003328,Peeters\n" * (UPLOAD_CAP // 20 + 10)
    _problem(client.post(f"{V1}/registers/persons/import?format=csv", headers=sup, content=huge), 413)
    _problem(client.post(f"{V1}/registers/persons/import", headers=sup,
                         files={"file": ("big.csv", huge, "text/csv")}), 413)

    def chunks() -> Iterator[bytes]:  # no Content-Length: refused while it streams
        for start in range(0, len(huge), 4096):
            yield huge[start:start + 4096]

    _problem(client.post(f"{V1}/registers/persons/import?format=csv", headers=sup, content=chunks()), 413)
    assert _ok(client.get(f"{V1}/persons", params={"name": "peeters"}, headers=sup)) == []
    assert not any(Path(client.app.state.spool).iterdir())  # type: ignore[attr-defined]
    assert client.get(f"{V1}/health").json() == {"status": "ok"}


def test_malformed_and_oversized_json_bodies(client: TestClient, sup: dict[str, str]) -> None:
    json_type = {**sup, "content-type": "application/json"}
    for body in (b"{not json", b"[]", b'"text"', b'{"national_number": 5}', b'{"family_name": "X"}'):
        _problem(client.post(f"{V1}/persons", headers=json_type, content=body), 422)
    _problem(client.post(f"{V1}/persons", headers=sup, json={**person(61), "shoe_size": "44"}), 422)
    _problem(client.post(f"{V1}/persons", headers=sup, json={**person(61), "family_name": "A\nB"}), 422)
    _problem(client.post(f"{V1}/vehicles", headers=sup, json={**_vehicle(61), "status": "lost"}), 422)
    _problem(client.post(f"{V1}/watchlists/x/members", headers=sup, json={"person_ids": []}), 422)
    _problem(client.post(f"{V1}/persons", headers=sup, json={**person(61), "given_names": "x" * JSON_CAP}), 413)
    assert _ok(client.post(f"{V1}/persons", headers=sup, json=person(61)), 201)["family_name"]
