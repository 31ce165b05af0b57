"""The delivery loop against real webhook receivers on 127.0.0.1, on both record stores, driven step by step on a
clock of the test's own (no sleep waits for time): every event exactly once, in order per subscription, with a
valid Standard Webhooks signature (checked here with an implementation of the test's own), also the events
published while the receiver was down; a receiver of another case gets none; withheld, given up after 24 hours,
410 Gone, replay, an address refused when it is sent, and a new loop picking up what a dead one left."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage import accounts, events, subscriptions
from storage.db import transaction
from storage.records import create_case
from storage.roles import CASE_SYSTEM
from storage.subscriptions import DELIVERED, FAILED, PENDING, WITHHELD, Delivery
from storage.tables import utcnow
from workers.delivery import DeliveryLoop


@dataclass
class Receiver:
    """A webhook receiver (http.server in a thread) that keeps what it gets and answers `status`."""

    status: int = 204
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    port: int = 0
    server: ThreadingHTTPServer | None = None
    location: str | None = None  # sent as Location (a redirect)

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("location", receiver.location)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/locard"

    def bodies(self, secret: str) -> list[dict[str, Any]]:
        """What was received, each signature checked (an implementation of the spec's own, not Locard's)."""
        found = []
        for headers, body in self.received:
            assert verify(secret, headers, body), headers
            found.append({**json.loads(body), "webhook-id": headers["webhook-id"]})
        return found


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification: HMAC-SHA256 of `{id}.{timestamp}.{body}` under the base64 key after
    `whsec_`, against any `v1,` signature of the space-separated header, in constant time."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(version == "v1" and hmac.compare_digest(value, expected)
               for version, _, value in (part.partition(",") for part in headers["webhook-signature"].split()))


class Clock:
    """The delivery loop's clock: a minute ahead of the record store's (events are due when published)."""

    def __init__(self) -> None:
        self.now = utcnow() + dt.timedelta(seconds=60)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        if receiver.server is not None:
            with contextlib.suppress(OSError):  # stopped by the test already
                receiver.stop()


@dataclass
class Scene:
    cases: dict[str, str]
    secrets: dict[str, str]  # subscription id -> secret
    subscription: dict[str, str]  # name -> subscription id


def scene(factory: sessionmaker[Session], urls: dict[str, tuple[str, str]]) -> Scene:
    """Cases A and B; case systems `rms-a` (assigned to A) and `rms-b` (to B); a subscription per name in `urls`
    (name -> (case, url)), owned by the case system of that case."""
    with transaction(factory) as session:
        cases = {name: create_case(session, reference=f"2026-77{i}", title=name, description="", created_by="t").id
                 for i, name in enumerate(("A", "B"))}
        for name, case_id in cases.items():
            accounts.create_user(session, username=f"rms-{name.lower()}", password=None, roles=[CASE_SYSTEM],
                                 created_by="t")
            accounts.assign(session, case_id=case_id, username=f"rms-{name.lower()}", assigned_by="t")
        made = {}
        for name, (case, url) in urls.items():
            made[name] = subscriptions.create_subscription(session, owner=f"rms-{case.lower()}", url=url,
                                                           case_id=cases[case], watchlist_id=None)
    return Scene(cases, {s.id: secret for s, secret in made.values()}, {n: s.id for n, (s, _) in made.items()})


def publish(factory: sessionmaker[Session], case_id: str, n: int, kind: str = events.MATCH_CREATED) -> list[str]:
    with transaction(factory) as session:
        return [events.publish(session, kind=kind, case_ids=[case_id], payload={"match_id": f"m{i}"}).uid
                for i in range(n)]


def drain(loop: DeliveryLoop) -> int:
    """Step until nothing is due; how many deliveries were tried."""
    tried = 0
    while sent := loop.step():
        tried += sent
    return tried


def log(factory: sessionmaker[Session], subscription_id: str) -> list[Delivery]:
    with factory() as session:
        return list(subscriptions.deliveries_of(session, subscription_id=subscription_id))


def test_every_event_arrives_once_in_order_signed_also_those_raised_while_the_receiver_was_down(
        factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    a, b = Receiver().start(), Receiver().start()
    receivers += [a, b]
    world = scene(factory, {"a": ("A", a.url), "b": ("B", b.url)})
    clock = Clock()
    loop = DeliveryLoop(factory, clock=clock)
    first = publish(factory, world.cases["A"], 3)
    assert drain(loop) == 3
    a.stop()
    while_down = publish(factory, world.cases["A"], 3)
    assert drain(loop) == 1  # only the head is tried: the next ones wait for it
    pending = log(factory, world.subscription["a"])[3:]
    assert [(d.state, d.attempts) for d in pending] == [(PENDING, 1), (PENDING, 0), (PENDING, 0)]
    assert "ConnectError" in (pending[0].last_error or "")
    for wait in (2, 4, 8, 16):  # down for 30 s: tried again after 2, 4, 8 and 16 s
        clock.advance(wait)
        assert drain(loop) == 1
    assert log(factory, world.subscription["a"])[3].attempts == 5
    a.start()  # on the same port
    assert drain(loop) == 0  # not due yet: the backoff holds
    clock.advance(32)
    assert drain(loop) == 3
    got = a.bodies(world.secrets[world.subscription["a"]])
    assert [body["webhook-id"] for body in got] == first + while_down  # once each, in order
    assert [body["sequence"] for body in got] == sorted(body["sequence"] for body in got)
    assert {body["type"] for body in got} == {events.MATCH_CREATED}
    assert all(body["case_ids"] == [world.cases["A"]] for body in got)
    assert b.received == []  # another case's receiver gets none
    delivered = log(factory, world.subscription["a"])
    assert [d.state for d in delivered] == [DELIVERED] * 6 and delivered[3].attempts == 6
    with factory() as session:
        tries = subscriptions.attempts_of(session, delivery_id=delivered[3].id)
    assert [t.status for t in tries] == [None] * 5 + [204] and all(t.error for t in tries[:5])


def test_an_event_its_owner_may_not_see_is_withheld_and_does_not_hold_back_the_next(
        factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    a = Receiver().start()
    receivers.append(a)
    world = scene(factory, {"a": ("A", a.url)})
    loop = DeliveryLoop(factory, clock=Clock())
    with transaction(factory) as session:  # a match between A and B: rms-a does not see B
        shared = events.publish(session, kind=events.MATCH_CREATED, case_ids=[world.cases["A"], world.cases["B"]],
                                payload={}).uid
    with transaction(factory) as session:
        accounts.unassign(session, case_id=world.cases["A"], username="rms-a")
    unassigned = publish(factory, world.cases["A"], 1)
    drain(loop)
    with transaction(factory) as session:
        accounts.assign(session, case_id=world.cases["A"], username="rms-a", assigned_by="t")
    later = publish(factory, world.cases["A"], 1)
    drain(loop)
    assert [body["webhook-id"] for body in a.bodies(world.secrets[world.subscription["a"]])] == later
    assert [d.state for d in log(factory, world.subscription["a"])] == [WITHHELD, WITHHELD, DELIVERED]
    assert shared not in later and unassigned != later


def test_a_delivery_is_given_up_after_24_hours_and_410_gone_disables_the_subscription(
        factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    failing = Receiver(status=500).start()
    receivers.append(failing)
    world = scene(factory, {"a": ("A", failing.url)})
    clock = Clock()
    loop = DeliveryLoop(factory, clock=clock)
    publish(factory, world.cases["A"], 2)
    hours = 0.0
    while hours < 25:
        drain(loop)
        clock.advance(1800)
        hours += 0.5
    gave_up, next_one = log(factory, world.subscription["a"])
    assert gave_up.state == FAILED and "given up after 24 hours" in (gave_up.last_error or "")
    assert 12 <= gave_up.attempts <= 40  # 1, 2, 4, ... then hourly, and a last try at the deadline
    # The next one waited its turn behind it, past its own 24 hours: tried once, then given up too.
    assert next_one.state == FAILED and next_one.attempts == 1
    failing.status = 410
    publish(factory, world.cases["A"], 2)
    clock.advance(60)
    assert drain(loop) == 1
    with factory() as session:
        subscription = subscriptions.get_subscription(session, subscription_id=world.subscription["a"])
        assert subscription is not None and not subscription.active
    publish(factory, world.cases["A"], 1)
    assert [d.state for d in log(factory, world.subscription["a"])] == [FAILED] * 4  # and none made any more
    assert len(failing.received) == gave_up.attempts + 2


def test_replay_sends_again_with_the_same_id(factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    a = Receiver().start()
    receivers.append(a)
    world = scene(factory, {"a": ("A", a.url)})
    clock = Clock()
    loop = DeliveryLoop(factory, clock=clock)
    sent = publish(factory, world.cases["A"], 3)
    drain(loop)
    with transaction(factory) as session:
        first, _, last = subscriptions.deliveries_of(session, subscription_id=world.subscription["a"])
        assert subscriptions.replay(session, subscription_id=world.subscription["a"], first=first.event_id,
                                    last=last.event_id, now=clock()) == 3
    drain(loop)
    assert [body["webhook-id"] for body in a.bodies(world.secrets[world.subscription["a"]])] == sent + sent
    assert [d.replays for d in log(factory, world.subscription["a"])] == [1, 1, 1]


def test_an_address_that_resolves_to_an_internal_one_is_never_sent_to(
        factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    world = scene(factory, {"a": ("A", "https://hooks.example.org/locard")})
    asked: list[str] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["93.184.215.14", "10.0.0.7"]  # one public, one internal: refused

    loop = DeliveryLoop(factory, clock=Clock(), resolve=rebinding)
    publish(factory, world.cases["A"], 1)
    drain(loop)
    [delivery] = log(factory, world.subscription["a"])
    assert asked == ["hooks.example.org"] and delivery.state == PENDING
    assert "10.0.0.7, which is not a public address" in (delivery.last_error or "")


def test_a_new_loop_takes_over_what_a_dead_one_left_and_two_loops_never_send_one_attempt_twice(
        factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    hooks = [Receiver().start() for _ in range(3)]
    receivers += hooks
    world = scene(factory, {f"s{i}": ("A", hook.url) for i, hook in enumerate(hooks)})
    clock = Clock()
    sent = publish(factory, world.cases["A"], 4)
    dead = subscriptions.claim_due(factory, owner="dead-loop", now=clock(), lease_seconds=60, limit=10)
    assert len(dead) == 3  # each subscription's head, leased to a loop that dies now
    survivor = DeliveryLoop(factory, clock=clock)
    assert drain(survivor) == 0  # the leases hold: nothing is sent twice
    clock.advance(61)
    more = publish(factory, world.cases["A"], 16)
    loops = [DeliveryLoop(factory, clock=clock, owner=f"loop-{i}") for i in range(2)]
    threads = [threading.Thread(target=drain, args=(loop,)) for loop in loops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain(survivor)
    for name, hook in zip(sorted(world.subscription), hooks, strict=True):
        got = [body["webhook-id"] for body in hook.bodies(world.secrets[world.subscription[name]])]
        assert got == sent + more, name  # exactly once each, in order, by whichever loop


def test_a_redirect_is_a_failure_never_followed(factory: sessionmaker[Session], receivers: list[Receiver]) -> None:
    target = Receiver().start()
    redirecting = Receiver(status=307).start()  # would send it on to `target`
    receivers += [target, redirecting]
    redirecting.location = target.url
    world = scene(factory, {"a": ("A", redirecting.url)})
    clock = Clock()
    loop = DeliveryLoop(factory, clock=clock)
    publish(factory, world.cases["A"], 1)
    drain(loop)
    [delivery] = log(factory, world.subscription["a"])
    assert (delivery.state, delivery.last_status, delivery.last_error) == (PENDING, 307, "answered 307")
    assert len(redirecting.received) == 1 and target.received == []
