"""The subscription routes and the event stream, on both record stores: a case system (by API key) subscribes to
its case, gets the secret once and receives signed events from the delivery loop; the delivery log, replay of one
delivery and of a range, deletion; refusals (401, 403, another's subscription or case as 404, addresses that could
reach inside as 422); and the server-sent events a reader may see, resumed with Last-Event-ID."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage import accounts, apikeys, audit, events, subscriptions, watchlists
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.roles import ADMINISTRATOR, AUDITOR, CASE_SYSTEM, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import utcnow
from tests.api_helpers import V1, account
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.test_delivery import Clock, Receiver, drain
from workers.delivery import DeliveryLoop

A, B = "2026-0950", "2026-0951"


@pytest.fixture
def client(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(_env_file=None, environment="test", home=tmp_path / "home",  # type: ignore[call-arg]
                        database_url=database_url, token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with TestClient(create_app(settings, store=MemoryObjectStore()), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


def _factory(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.session_factory  # type: ignore[attr-defined]


def _cases(client: TestClient) -> dict[str, str]:
    sup = account(client, "sup", (SUPERVISOR,))
    return {ref: client.post(f"{V1}/cases", headers=sup, json={"reference": ref, "title": "t"}).json()["id"]
            for ref in (A, B)}


def _key(client: TestClient, username: str, case_id: str) -> dict[str, str]:
    """An API key of a case-system account assigned to `case_id`."""
    with transaction(_factory(client)) as session:
        user = accounts.create_user(session, username=username, password=None, roles=[CASE_SYSTEM], created_by="t")
        accounts.assign(session, case_id=case_id, username=username, assigned_by="t")
        _, key = apikeys.create_api_key(session, user=user, name="rms")
    return {"X-API-Key": key}


def _publish(client: TestClient, case_ids: list[str], kind: str = events.MATCH_CREATED) -> str:
    with transaction(_factory(client)) as session:
        return events.publish(session, kind=kind, case_ids=case_ids, payload={"match_id": "m"}).uid


def _frames(text: str) -> list[dict[str, str]]:
    found = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        found.append(fields)
    return found


def test_a_case_system_subscribes_receives_signed_events_reads_its_log_replays_and_deletes(
        client: TestClient, receiver: Receiver) -> None:
    cases = _cases(client)
    rms = _key(client, "rms-a", cases[A])
    made = client.post(f"{V1}/subscriptions", headers=rms, json={"url": receiver.url, "case_id": cases[A],
                                                                 "kinds": [events.MATCH_CONFIRMED]})
    assert made.status_code == 201, made.text
    subscription, secret = made.json(), made.json()["secret"]
    assert secret.startswith("whsec_") and subscription["owner"] == "rms-a"
    listed = client.get(f"{V1}/subscriptions", headers=rms).json()
    assert [s["id"] for s in listed] == [subscription["id"]] and "secret" not in listed[0]
    one = f"{V1}/subscriptions/{subscription['id']}"
    assert "secret" not in client.get(one, headers=rms).json()
    _publish(client, [cases[A]])  # a kind it did not ask for
    sent = [_publish(client, [cases[A]], events.MATCH_CONFIRMED) for _ in range(2)]
    _publish(client, [cases[B]], events.MATCH_CONFIRMED)
    loop = DeliveryLoop(_factory(client), clock=Clock())
    drain(loop)
    assert [body["webhook-id"] for body in receiver.bodies(secret)] == sent
    log = client.get(f"{one}/deliveries", headers=rms).json()
    assert [(d["state"], d["attempts"], d["last_status"]) for d in log] == [("delivered", 1, 204)] * 2
    assert log[0]["sequence"] < log[1]["sequence"]
    detail = client.get(f"{one}/deliveries/{log[0]['id']}", headers=rms).json()
    assert [(a["number"], a["status"]) for a in detail["attempt_log"]] == [(1, 204)]
    assert client.get(f"{one}/deliveries", headers=rms, params={"state": "failed"}).json() == []
    replayed = client.post(f"{one}/deliveries/{log[1]['id']}/replay", headers=rms)
    assert replayed.status_code == 202 and replayed.json() == {"queued": 1}
    drain(loop)
    ranged = client.post(f"{one}/replay", headers=rms, json={"first": log[0]["sequence"], "last": log[1]["sequence"]})
    assert ranged.json() == {"queued": 2}
    drain(loop)
    assert [body["webhook-id"] for body in receiver.bodies(secret)] == sent + sent[1:] + sent
    assert client.delete(one, headers=rms).status_code == 204
    assert client.get(one, headers=rms).status_code == 404
    assert client.get(f"{one}/deliveries", headers=rms).status_code == 404
    with _factory(client)() as session:
        made_entry = [e for e in audit.query(session, limit=100, actor="rms-a")
                      if e.resource == "POST /api/v1/subscriptions"]
    assert [(e.resource_id, e.detail["url"]) for e in made_entry] == [(subscription["id"], receiver.url)]


def test_refusals(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases(client)
    rms_a, rms_b = _key(client, "rms-a", cases[A]), _key(client, "rms-b", cases[B])
    hook = {"url": "https://hooks.example.org/locard", "case_id": cases[A]}
    mine = client.post(f"{V1}/subscriptions", headers=rms_a, json=hook).json()["id"]
    anonymous = TestClient(client.app)
    for method, path in (("POST", "/subscriptions"), ("GET", "/subscriptions"), ("GET", f"/subscriptions/{mine}"),
                         ("GET", "/events/stream")):
        assert anonymous.request(method, V1 + path, json=hook).status_code == 401
    for role in (AUDITOR, ADMINISTRATOR):
        who = account(client, f"the-{role}", (role,))
        assert client.post(f"{V1}/subscriptions", headers=who, json=hook).status_code == 403
        assert client.get(f"{V1}/events/stream", headers=who).status_code == 403
    # Another's case and another's subscription are answered as missing ones.
    hidden = client.post(f"{V1}/subscriptions", headers=rms_b, json=hook)
    missing = client.post(f"{V1}/subscriptions", headers=rms_b, json={**hook, "case_id": "no-such-case"})
    assert hidden.status_code == missing.status_code == 404 and hidden.json()["title"] == missing.json()["title"]
    for method, suffix, body in (("GET", "", None), ("DELETE", "", None), ("GET", "/deliveries", None),
                                 ("GET", "/deliveries/1", None), ("POST", "/deliveries/1/replay", None),
                                 ("POST", "/replay", {"first": 1, "last": 2})):
        theirs = client.request(method, f"{V1}/subscriptions/{mine}{suffix}", headers=rms_b, json=body)
        absent = client.request(method, f"{V1}/subscriptions/nope{suffix}", headers=rms_b, json=body)
        assert theirs.status_code == absent.status_code == 404, (method, suffix)
        assert theirs.json()["title"] == absent.json()["title"]
    assert client.get(f"{V1}/subscriptions", headers=rms_b).json() == []
    monkeypatch.setattr(subscriptions, "MAX_PER_OWNER", 2)
    assert client.post(f"{V1}/subscriptions", headers=rms_a, json=hook).status_code == 201
    assert client.post(f"{V1}/subscriptions", headers=rms_a, json=hook).status_code == 409
    assert client.get(f"{V1}/subscriptions/{mine}/deliveries/1", headers=rms_a).status_code == 404
    # Malformed, and addresses that could reach inside.
    bodies: list[dict[str, Any]] = [
        {**hook, "watchlist_id": "w"}, {"url": hook["url"]}, {**hook, "kinds": ["match.deleted"]}, {**hook, "extra": 1},
        {**hook, "description": "a\tb"}, *({**hook, "url": url} for url in (
            "https://169.254.169.254/latest", "http://hooks.example.org/", "https://10.1.2.3/",
            "https://[::ffff:192.168.0.1]/", "https://2130706433/", "https://intranet/", "https://u:p@hooks.example.org/"))]
    for body in bodies:
        refused = client.post(f"{V1}/subscriptions", headers=rms_a, json=body)
        assert refused.status_code == 422, (body, refused.text)
    for bad in ({"first": 5, "last": 4}, {"first": 1, "last": 20_002}, {"first": 0, "last": 1}):
        assert client.post(f"{V1}/subscriptions/{mine}/replay", headers=rms_a, json=bad).status_code == 422
    assert client.get(f"{V1}/subscriptions/{mine}/deliveries", headers=rms_a,
                      params={"state": "lost"}).status_code == 422
    # Watchlists: a case system does not read them; an examiner or supervisor does.
    with transaction(_factory(client)) as session:
        watch = watchlists.create_watchlist(session, name="w", purpose="p", owner="sup",
                                            expires_at=utcnow() + dt.timedelta(days=2), created_by="t").id
    by_watchlist = {"url": hook["url"], "watchlist_id": watch}
    assert client.post(f"{V1}/subscriptions", headers=rms_a, json=by_watchlist).status_code == 403
    sup = account(client, "sup", (SUPERVISOR,))
    assert client.post(f"{V1}/subscriptions", headers=sup, json=by_watchlist).status_code == 201
    assert client.post(f"{V1}/subscriptions", headers=sup, json={**by_watchlist, "watchlist_id": "x"}).status_code \
        == 404


def test_the_stream_shows_each_reader_what_it_may_see_and_resumes(client: TestClient) -> None:
    cases = _cases(client)
    ann = account(client, "ann", (INVESTIGATOR,), cases=[cases[A]])
    sup = account(client, "sup", (SUPERVISOR,))
    start = client.get(f"{V1}/events/stream", headers=ann)
    assert start.status_code == 200 and start.headers["content-type"].startswith("text/event-stream")
    assert _frames(start.text) == [{"retry": "2000", "id": "0"}]  # from now: nothing yet
    _publish(client, [cases[A]])
    _publish(client, [cases[B]])
    _publish(client, [cases[A], cases[B]])  # a match across both: only for who sees both
    _publish(client, [cases[A]], events.MATCH_CONFIRMED)
    shown = _frames(client.get(f"{V1}/events/stream", headers={**ann, "Last-Event-ID": "0"}).text)
    assert [f.get("event") for f in shown] == [None, events.MATCH_CREATED, events.MATCH_CONFIRMED]
    assert [f["id"] for f in shown] == ["0", "1", "4"]
    assert '"sequence":1' in shown[1]["data"] and '"sequence":4' in shown[2]["data"]
    resumed = _frames(client.get(f"{V1}/events/stream", headers={**ann, "Last-Event-ID": "1"}).text)
    assert [f["id"] for f in resumed] == ["1", "4"]  # the position, then what came after it
    kinds = _frames(client.get(f"{V1}/events/stream", headers=ann,
                               params={"after": 0, "kind": events.MATCH_CONFIRMED}).text)
    assert [f["id"] for f in kinds] == ["0", "4"]
    everything = _frames(client.get(f"{V1}/events/stream", headers=sup, params={"after": 0}).text)
    assert [f["id"] for f in everything] == ["0", "1", "2", "3", "4"]
    of_b = client.get(f"{V1}/events/stream", headers=ann, params={"case_id": cases[B]})
    assert of_b.status_code == 404
    assert client.get(f"{V1}/events/stream", headers={**ann, "Last-Event-ID": "x"}).status_code == 422
    assert client.get(f"{V1}/events/stream", headers=ann, params={"kind": "nope"}).status_code == 422
    only_b = _frames(client.get(f"{V1}/events/stream", headers=ann, params={"after": 1, "kind": "lead.created"}).text)
    assert [f["id"] for f in only_b] == ["1", "4"]  # nothing shown, the position still moves on


def test_the_stream_stays_open_for_what_comes(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = _cases(client)
    ann = account(client, "ann", (INVESTIGATOR,), cases=[cases[A]])
    first_read = threading.Event()
    original = events.settled

    def settled(*args: Any, **kwargs: Any) -> list[events.Event]:
        found = original(*args, **kwargs)
        first_read.set()
        return found

    published: list[str] = []

    def publisher() -> None:
        first_read.wait(10)
        published.append(_publish(client, [cases[A]]))

    monkeypatch.setattr(events, "settled", settled)
    thread = threading.Thread(target=publisher)
    thread.start()
    answer = client.get(f"{V1}/events/stream", headers=ann, params={"wait": 2})
    thread.join()
    frames = _frames(answer.text)
    assert [f["id"] for f in frames] == ["0", "1"] and published[0] in frames[1]["data"]
