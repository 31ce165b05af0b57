"""The outbox and its rules, on both record stores: what `publish` takes and refuses, which subscriptions an
event is fanned out to, the sequence read without skipping a late commit, the body and signature (the Standard
Webhooks test vector), who may see an event (the same rule as the API's), and the addresses refused."""

from __future__ import annotations

import datetime as dt
import json
from itertools import combinations

import pytest
from cryptography.exceptions import InvalidTag
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from api.deps import case_visible
from api.principal import Principal
from api.routes.registers import REGISTER_READ_ROLES
from storage import accounts, events, subscriptions, watchlists
from storage.db import transaction
from storage.records import create_case
from storage.roles import ROLES, SUPERVISOR
from storage.subscriptions import Delivery
from storage.tables import utcnow
from storage.webhook_targets import TargetRefused, check_url, public_address, resolve_target


def _case(session: Session, reference: str) -> str:
    return create_case(session, reference=reference, title=reference, description="", created_by="t").id


def test_publish_refuses_what_is_not_an_event(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        case = _case(session, "2026-0901")
        for kwargs in ({"kind": "match.deleted", "case_ids": [case]}, {"kind": events.MATCH_CREATED, "case_ids": []},
                       {"kind": events.MATCH_CREATED, "case_ids": [case] * 1 + [f"c{i}" for i in range(100)]},
                       {"kind": events.LEAD_CREATED, "case_ids": [case], "payload": {"x": "y" * 17_000}}):
            with pytest.raises(ValueError):
                events.publish(session, **{"payload": {}, **kwargs})  # type: ignore[arg-type]
        event = events.publish(session, kind=events.LEAD_UPDATED, case_ids=[case, case], payload={"lead_id": "l1"})
        assert event.case_ids == [case] and event.uid.startswith("evt_") and "." not in event.uid


def test_an_event_goes_to_the_subscriptions_of_its_cases_watchlists_and_kinds(
        factory: sessionmaker[Session]) -> None:
    later = utcnow() + dt.timedelta(days=3)
    with transaction(factory) as session:
        a, b = _case(session, "2026-0902"), _case(session, "2026-0903")
        watch = watchlists.create_watchlist(session, name="w", purpose="p", owner="sup", expires_at=later,
                                            created_by="t")
        made = {name: subscriptions.create_subscription(session, owner="sup", url="https://hooks.example.org/x",
                                                        case_id=case, watchlist_id=watchlist, kinds=kinds)[0].id
                for name, case, watchlist, kinds in (
                    ("a", a, None, ()), ("b", b, None, ()), ("w", None, watch.id, ()),
                    ("a-confirmed", a, None, (events.MATCH_CONFIRMED,)), ("off", a, None, ()))}
        session.get_one(subscriptions.Subscription, made["off"]).active = False
        created = events.publish(session, kind=events.MATCH_CREATED, case_ids=[a], watchlist_ids=[watch.id],
                                 payload={"match_id": "m1"})
        confirmed = events.publish(session, kind=events.MATCH_CONFIRMED, case_ids=[a, b], payload={})
        fanned = session.execute(select(Delivery.subscription_id, Delivery.event_id, Delivery.kind)).all()
    by_name = {v: k for k, v in made.items()}
    assert sorted((by_name[s], e, k) for s, e, k in fanned) == sorted([
        ("a", created.id, events.MATCH_CREATED), ("w", created.id, events.MATCH_CREATED),
        ("a", confirmed.id, events.MATCH_CONFIRMED), ("b", confirmed.id, events.MATCH_CONFIRMED),
        ("a-confirmed", confirmed.id, events.MATCH_CONFIRMED)])


def test_the_sequence_waits_at_a_gap_until_it_is_old(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with transaction(factory) as session:
        case = _case(session, "2026-0904")
        for number in (1, 2, 4):  # 3: a transaction that has not committed yet (or never will)
            session.add(events.Event(id=number, kind=events.MATCH_CREATED, case_ids=[case], watchlist_ids=[],
                                     payload={}, created_at=now))
    with factory() as session:
        assert [e.id for e in events.settled(session, after=0, limit=10, now=now)] == [1, 2]
        assert [e.id for e in events.settled(session, after=2, limit=10, now=now)] == []
        later = now + dt.timedelta(seconds=events.GAP_SECONDS + 1)
        assert [e.id for e in events.settled(session, after=2, limit=10, now=later)] == [4]
        assert events.latest(session) == 4
        fourth = session.get_one(events.Event, 4)
        body = json.loads(events.body(fourth, with_watchlists=False))
    assert body == {"id": fourth.uid, "type": events.MATCH_CREATED, "timestamp": now.isoformat().replace("+00:00", "Z"),
                    "sequence": 4, "case_ids": [case], "watchlist_ids": [], "data": {}}


def test_the_signature_is_the_standard_webhooks_one() -> None:
    """The test vector of the Standard Webhooks reference libraries."""
    assert subscriptions.sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
                              timestamp=1614265330, body=b'{"test": 2432232314}') \
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    secret = subscriptions.new_secret()
    assert secret.startswith("whsec_") and len(secret) == 6 + 44 and secret != subscriptions.new_secret()


def test_a_secret_is_kept_sealed_and_bound_to_its_subscription(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        case = _case(session, "2026-0905")
        first, secret = subscriptions.create_subscription(session, owner="sup", url="https://a.example.org/",
                                                          case_id=case, watchlist_id=None)
        second, _ = subscriptions.create_subscription(session, owner="sup", url="https://a.example.org/",
                                                      case_id=case, watchlist_id=None)
        assert secret not in first.sealed_secret and subscriptions.secret_of(session, first) == secret
        second.sealed_secret = first.sealed_secret  # moved to another subscription: it does not open
        with pytest.raises(InvalidTag):
            subscriptions.secret_of(session, second)


def test_who_may_see_an_event_is_the_rule_of_the_api(factory: sessionmaker[Session]) -> None:
    assert set(subscriptions.WATCHLIST_READERS) == set(REGISTER_READ_ROLES)
    later = utcnow() + dt.timedelta(days=3)
    role_sets = [(role,) for role in ROLES] + list(combinations(ROLES, 2))
    with transaction(factory) as session:
        a, b = _case(session, "2026-0906"), _case(session, "2026-0907")
        watch = watchlists.create_watchlist(session, name="w2", purpose="p", owner="sup", expires_at=later,
                                            created_by="t")
        for i, roles in enumerate(role_sets):
            user = accounts.User(username=f"u{i}", roles=list(roles), created_by="t")
            session.add(user)
            session.flush()
            accounts.assign(session, case_id=a, username=user.username, assigned_by="t")
            principal = Principal(name=user.username, roles=frozenset(roles), user_id=user.id)
            for cases in ([a], [b], [a, b]):
                expected = all(case_visible(session, principal, case) for case in cases)
                assert subscriptions.may_see(session, owner=user.username, case_ids=cases) == expected, roles
            reads = principal.has(*REGISTER_READ_ROLES) and case_visible(session, principal, a)
            assert subscriptions.may_see(session, owner=user.username, case_ids=[a], watchlist_id=watch.id) == reads
        supervisor = accounts.User(username="boss", roles=[SUPERVISOR], created_by="t", active=False)
        session.add(supervisor)
        session.flush()
        assert not subscriptions.may_see(session, owner="boss", case_ids=[a])  # a deactivated account sees none
        assert not subscriptions.may_see(session, owner="nobody", case_ids=[a])


REFUSED = (
    "http://hooks.example.org/x",  # https only
    "ftp://hooks.example.org/x", "https://user:pw@hooks.example.org/x", "https://hooks.example.org/x#frag",
    "https://10.0.0.1/x", "https://192.168.1.10/", "https://172.16.0.1/", "https://169.254.169.254/latest/meta-data",
    "https://100.64.0.1/", "https://0.0.0.0/", "https://127.0.0.2/", "https://224.0.0.1/", "https://240.0.0.1/",
    "https://[fe80::1]/", "https://[fc00::1]/", "https://[::ffff:10.0.0.1]/", "https://[::ffff:127.0.0.1]/",
    "https://[2002:a00:1::]/", "https://[64:ff9b::a00:1]/", "https://[::]/", "https://2130706433/",
    "https://0x7f.1/", "https://127.1/", "https://017700000001/", "https://intranet/x", "https://metadata/",
    "https://db.internal/", "https://printer.local/", "https://a.localhost/", "https://hooks.example.org:99999/",
    "https://hooks.exa mple.org/", "https://hooks.example.org/\x07", "https://bad_name.example.org/",
    "https://" + "a" * 2000 + ".org/",
)
ACCEPTED = ("https://hooks.example.org/locard?x=1", "https://93.184.215.14:8443/h", "http://127.0.0.1:8080/h",
            "http://localhost/h", "https://[::1]:9/h", "https://HOOKS.Example.org./x")


@pytest.mark.parametrize("url", REFUSED)
def test_an_address_that_could_reach_inside_is_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(url, allow_loopback=True)


@pytest.mark.parametrize("url", ACCEPTED)
def test_a_public_https_or_a_loopback_address_is_taken(url: str) -> None:
    target = check_url(url, allow_loopback=True)
    if target.loopback:
        with pytest.raises(TargetRefused, match="production"):
            check_url(url, allow_loopback=False)
        assert resolve_target(target, allow_loopback=True, resolve=lambda *_: ["10.0.0.1"]) in ("127.0.0.1", "::1")
    else:
        assert target.scheme == "https"


def test_a_name_is_sent_to_only_when_every_address_it_resolves_to_is_public() -> None:
    target = check_url("https://hooks.example.org/x", allow_loopback=True)
    assert resolve_target(target, allow_loopback=True, resolve=lambda *_: ["93.184.215.14"]) == "93.184.215.14"
    for addresses in (["93.184.215.14", "127.0.0.1"], ["::ffff:192.168.0.1"], ["fe80::1%eth0"], []):
        with pytest.raises(TargetRefused):
            resolve_target(target, allow_loopback=True, resolve=lambda *_, found=addresses: found)

    def unknown(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(TargetRefused, match="does not resolve"):
        resolve_target(target, allow_loopback=True, resolve=unknown)
    assert public_address("2a00:1450:4001:80b::200e") and not public_address("2001:db8::1")
