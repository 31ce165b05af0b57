"""Benchmark: webhook delivery from the durable outbox to 10 local subscribers, beside a naive baseline.

    python -m evaluation.bench_delivery [--events N] [--rate R] [--database-url URL] [--out PATH]

Ten receivers (http.server, 127.0.0.1) each hold a subscription to one case. Two ways of telling them:

* `outbox` (Locard): `storage.events.publish` adds the event and its ten deliveries in the publisher's
  transaction; a delivery loop (`workers.delivery.DeliveryLoop`, run as in the worker service, on the real clock)
  sends them, signed, in order per subscription, each attempt logged;
* `naive`: after its transaction commits, the publisher itself posts the event to each subscriber in turn
  (signed, one HTTP request after the other), with no outbox, log, retry or ordering guarantee across a crash.

Each is measured twice: `burst` (N events published as fast as one publisher can: deliveries/s until the last
one arrived, and how long the publisher was held) and `steady` (events published at R per second, as
confirmations arrive: latency from the publishing transaction's commit to the receiver, p95 target < 1 s).
Every receiver checks each signature and counts duplicates. Results: evaluation/results/delivery.json.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from storage import accounts, events, subscriptions
from storage.db import make_engine, migrate, session_factory, transaction
from storage.records import create_case
from storage.roles import CASE_SYSTEM
from storage.subscriptions import DELIVERED, Delivery
from workers.delivery import DeliveryLoop

DEFAULT_OUT = RESULTS / "delivery.json"
SUBSCRIBERS = 10
TARGET_P95_MS = 1000.0


class Receivers:
    """Ten webhook receivers: the arrival time of each (subscriber, webhook-id), duplicates and bad signatures."""

    def __init__(self, count: int) -> None:
        self.arrived: dict[tuple[int, str], float] = {}
        self.duplicates = self.bad_signatures = 0
        self.secrets: dict[int, str] = {}
        self.lock = threading.Lock()
        self.servers = [self._serve(index) for index in range(count)]

    def _serve(self, index: int) -> ThreadingHTTPServer:
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at = time.perf_counter()
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receivers.note(index, self.headers["webhook-id"], self.headers["webhook-timestamp"],
                               self.headers["webhook-signature"], body, at)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.servers[index].server_address[1]}/hook"

    def note(self, index: int, message_id: str, timestamp: str, signature: str, body: bytes, at: float) -> None:
        key = base64.b64decode(self.secrets[index].removeprefix("whsec_"))
        expected = base64.b64encode(hmac.new(key, f"{message_id}.{timestamp}.".encode() + body,
                                             hashlib.sha256).digest()).decode()
        with self.lock:
            if not hmac.compare_digest(signature, f"v1,{expected}"):
                self.bad_signatures += 1
            if (index, message_id) in self.arrived:
                self.duplicates += 1
            else:
                self.arrived[index, message_id] = at

    def wait_for(self, count: int, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self.lock:
                if len(self.arrived) >= count:
                    return True
            time.sleep(0.005)
        return False

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def _setup(factory: sessionmaker[Session], receivers: Receivers, tag: str) -> tuple[str, dict[int, str]]:
    """A case, ten case-system accounts on it, and a subscription of each to one receiver."""
    made: dict[int, str] = {}
    with transaction(factory) as session:
        case_id = create_case(session, reference=f"BENCH-{tag}", title="delivery benchmark", description="",
                              created_by="bench").id
        for index in range(SUBSCRIBERS):
            name = f"rms-{tag}-{index}"
            accounts.create_user(session, username=name, password=None, roles=[CASE_SYSTEM], created_by="bench")
            accounts.assign(session, case_id=case_id, username=name, assigned_by="bench")
            subscription, secret = subscriptions.create_subscription(
                session, owner=name, url=receivers.url(index), case_id=case_id, watchlist_id=None)
            receivers.secrets[index] = secret
            made[index] = subscription.id
    return case_id, made


Publisher = Callable[[int], tuple[str, float]]  # event number -> (webhook id, commit time)


def _outbox_publisher(factory: sessionmaker[Session], case_id: str) -> Publisher:
    def publish(number: int) -> tuple[str, float]:
        with transaction(factory) as session:
            uid = events.publish(session, kind=events.MATCH_CONFIRMED, case_ids=[case_id],
                                 payload={"match_id": f"m{number}"}).uid
        return uid, time.perf_counter()

    return publish


def _naive_publisher(factory: sessionmaker[Session], case_id: str, receivers: Receivers,
                     client: httpx.Client) -> Publisher:
    def publish(number: int) -> tuple[str, float]:
        with transaction(factory) as session:  # the event is recorded, but the posting is not durable
            event = events.Event(kind=events.MATCH_CONFIRMED, case_ids=[case_id], watchlist_ids=[],
                                 payload={"match_id": f"m{number}"})
            session.add(event)
            session.flush()
            body = events.body(event, with_watchlists=False)
            uid = event.uid
        committed = time.perf_counter()
        for index in range(SUBSCRIBERS):
            timestamp = int(time.time())
            client.post(receivers.url(index), content=body, headers={
                "content-type": "application/json", "webhook-id": uid, "webhook-timestamp": str(timestamp),
                "webhook-signature": subscriptions.sign(receivers.secrets[index], message_id=uid,
                                                        timestamp=timestamp, body=body)})
        return uid, committed

    return publish


def _run(publish: Publisher, receivers: Receivers, count: int, rate: float | None) -> dict[str, Any]:
    """Publish `count` events (at `rate` per second, or at once) and wait until every subscriber has each."""
    before = len(receivers.arrived)
    committed: dict[str, float] = {}
    started = time.perf_counter()
    for number in range(count):
        if rate is not None:
            pause = started + number / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        uid, at = publish(number)
        committed[uid] = at
    publisher_seconds = time.perf_counter() - started
    complete = receivers.wait_for(before + count * SUBSCRIBERS, timeout=120)
    with receivers.lock:
        arrivals = {key: at for key, at in receivers.arrived.items() if key[1] in committed}
    last = max(arrivals.values(), default=started)
    latencies = [(at - committed[uid]) * 1000 for (_, uid), at in arrivals.items()]
    seconds = last - started
    return {"events": count, "deliveries": len(arrivals), "complete": complete,
            "seconds": round(seconds, 3), "publisher_held_seconds": round(publisher_seconds, 3),
            "deliveries_per_s": round(len(arrivals) / seconds, 1) if seconds > 0 else None,
            "events_per_s": round(len(arrivals) / SUBSCRIBERS / seconds, 1) if seconds > 0 else None,
            "latency_ms": describe(latencies), **({"rate_per_s": rate} if rate is not None else {})}


def run(database_url: str, *, count: int, rate: float) -> dict[str, Any]:
    engine = make_engine(database_url)
    migrate(engine)
    factory = session_factory(engine)
    receivers = Receivers(SUBSCRIBERS)
    results: dict[str, Any] = {}
    try:
        case_id, made = _setup(factory, receivers, "outbox")
        stop = threading.Event()
        loop = DeliveryLoop(factory)
        thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
        thread.start()
        publish = _outbox_publisher(factory, case_id)
        results["outbox"] = {"burst": _run(publish, receivers, count, None),
                             "steady": _run(publish, receivers, max(count // 2, 1), rate)}
        stop.set()
        thread.join()
        loop.close()
        with factory() as session:
            logged = session.scalar(select(func.count()).select_from(Delivery).where(
                Delivery.subscription_id.in_(made.values()), Delivery.state == DELIVERED))
        results["outbox"]["delivered_in_log"] = logged
        naive_case, _ = _setup(factory, receivers, "naive")
        with httpx.Client(timeout=15) as client:
            publish = _naive_publisher(factory, naive_case, receivers, client)
            results["naive"] = {"burst": _run(publish, receivers, count, None),
                                "steady": _run(publish, receivers, max(count // 2, 1), rate)}
        results["duplicates"], results["bad_signatures"] = receivers.duplicates, receivers.bad_signatures
    finally:
        receivers.close()
        engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=400, help="events of the burst (half as many at --rate)")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second of the steady run")
    parser.add_argument("--database-url", default="", help="default: an embedded SQLite file in a temp folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        url = args.database_url or f"sqlite:///{Path(home) / 'locard.db'}"
        results = run(url, count=args.events, rate=args.rate)
    p95 = results["outbox"]["steady"]["latency_ms"].get("p95")
    report = {"benchmark": "delivery", "subscribers": SUBSCRIBERS,
              "database": "postgresql" if args.database_url.startswith("postgresql") else "sqlite",
              "target_p95_ms": TARGET_P95_MS, "meets_target": p95 is not None and p95 < TARGET_P95_MS,
              **results, "machine": machine_info(), **locard_commit()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("outbox", "naive", "meets_target", "duplicates")}, indent=2))


if __name__ == "__main__":
    main()
