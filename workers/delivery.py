"""The delivery loop: sends the outbox's pending webhook deliveries (`storage.subscriptions`), signed, in order.

Each step claims, under a lease (two loops, in one process or two, never send the same attempt), the due head
delivery of up to `batch` subscriptions with up to `run - 1` due ones that follow it; the subscriptions are served
side by side, each one's run one delivery after the other, stopping at the first that is not delivered (the rest
are handed back untried), so a subscription's events stay in order. Every attempt goes to the subscription's
delivery log, all of a step's in one transaction. Before sending, it checks again that
the subscription's owner may see the event (`storage.subscriptions.may_see`): one that may not is withheld, never
sent. The address is checked and resolved at each attempt and the connection goes to the address checked
(`resolve_target`), with the name kept for TLS (SNI and certificate) and the Host header.

Standard Webhooks (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md):
headers `webhook-id` (the event's id, the same for every try and replay: the receiver's idempotency key),
`webhook-timestamp` (the attempt's Unix time) and `webhook-signature` (`v1,` + base64 HMAC-SHA256 of
`{id}.{timestamp}.{body}`, `storage.subscriptions.sign`). A 2xx answer is a delivery; a redirect is a failure (never
followed); 410 Gone disables the subscription; anything else, or no answer within `timeout`, is tried again after
2^n seconds (n: tries so far, capped at `backoff_cap`, at least the receiver's Retry-After), until 24 hours after the
event (or its replay) have passed: a last try falls at the deadline, then the delivery is given up.

The loop runs in the worker service (`start`); tests and the benchmark drive `step` with a clock of their own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
from sqlalchemy.orm import Session, sessionmaker

from storage import events, subscriptions, webhook_targets
from storage.db import reading, transaction
from storage.subscriptions import DELIVERED, FAILED, PENDING, WITHHELD, AttemptResult, ClaimedDelivery
from storage.tables import utcnow
from storage.webhook_targets import Resolver, TargetRefused

log = logging.getLogger("locard.delivery")
TIMEOUT_SECONDS = 15.0  # Standard Webhooks recommends 15 to 30 s
LEASE_SECONDS = 60.0
BACKOFF_CAP_SECONDS = 3600.0
IDLE_SECONDS = 0.2  # how often an idle loop looks for new deliveries
MAX_ERROR = 500
USER_AGENT = "Locard-Webhooks/1"


@dataclass(frozen=True)
class Request:
    """One delivery to send: where, its message id, the subscription's secret and the body."""

    url: str
    message_id: str
    secret: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    """What one try came to: the receiver's status (None: no answer), an error, how long it took, Retry-After."""

    status: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None
    withheld: bool = False  # not sent: the owner may not see the event (or the subscription is gone)


def backoff(tries: int, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """Seconds to wait after `tries` failed tries: 2^tries, capped."""
    return min(2.0 ** min(tries, 32), cap)


def _authority(target: webhook_targets.Target) -> str:
    """The Host header of `target`: its name (an IPv6 literal in brackets), with a port other than the default."""
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else None


class DeliveryLoop:
    """Sends pending deliveries; `step` does one round, `run` loops until stopped."""

    def __init__(self, factory: sessionmaker[Session], *, owner: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow, client: httpx.Client | None = None,
                 timeout: float = TIMEOUT_SECONDS, lease_seconds: float = LEASE_SECONDS, batch: int = 32,
                 backoff_cap: float = BACKOFF_CAP_SECONDS, allow_loopback: bool = True,
                 resolve: Resolver = webhook_targets.system_resolver, threads: int = 8, run: int = 20) -> None:
        self.factory, self.clock = factory, clock
        self.owner = owner or f"delivery:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        # No proxy or .netrc from the environment: the address checked is the one connected to.
        self.client = client or httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False,
                                             headers={"user-agent": USER_AGENT})
        self.lease_seconds, self.batch, self.backoff_cap = lease_seconds, batch, backoff_cap
        self.run_length = run  # deliveries of one subscription sent in one step, one after the other
        self.allow_loopback, self.resolve = allow_loopback, resolve
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="delivery")

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

    def step(self) -> int:
        """Claim due deliveries, send them, record every outcome; how many were tried (sent or withheld)."""
        claimed = subscriptions.claim_due(self.factory, owner=self.owner, now=self.clock(),
                                          lease_seconds=self.lease_seconds, limit=self.batch, run=self.run_length)
        if not claimed:
            return 0
        try:
            ready = self._prepare(claimed)
        except Exception as exc:  # e.g. the record store is unreachable: each is tried again, given up in time
            log.exception("deliveries could not be prepared")
            ready = {one.id: Outcome(None, f"internal error: {type(exc).__name__}", 0.0) for one in claimed}
        runs: dict[str, list[ClaimedDelivery]] = {}
        for one in claimed:
            runs.setdefault(one.subscription_id, []).append(one)
        results = [result for done in self.pool.map(lambda run: self._send_run(run, ready), runs.values())
                   for result in done]
        with transaction(self.factory) as session:
            lost = subscriptions.record_attempts(session, results=results)
            gone = {result.claimed.subscription_id for result in results
                    if result.status == 410 and result not in lost}
            for subscription_id in sorted(gone):
                subscriptions.disable(session, subscription_id=subscription_id,
                                      reason="the receiver answered 410 Gone")
        if lost:
            log.warning("%d deliveries' leases ran out before their attempts were recorded", len(lost))
        return sum(not result.released for result in results)

    def _send_run(self, run: list[ClaimedDelivery], ready: dict[int, Request | Outcome]) -> list[AttemptResult]:
        """Send one subscription's run in order; after a failure the rest are handed back untried."""
        results: list[AttemptResult] = []
        until = time.monotonic() + self.lease_seconds / 2  # the rest goes back long before the lease runs out
        for one in run:
            if results and (results[-1].state not in (DELIVERED, WITHHELD) or time.monotonic() > until):
                results.append(AttemptResult(one, self.clock(), PENDING, None, None, None, released=True))
            else:
                results.append(self._result(one, self._send(ready[one.id])))
        return results

    def run(self, stop: threading.Event, *, idle: float = IDLE_SECONDS) -> None:
        """Loop until `stop` is set; a failing step is logged and the loop goes on."""
        while not stop.is_set():
            try:
                sent = self.step()
            except Exception:
                log.exception("delivery step failed")
                sent = 0
            if not sent:
                stop.wait(idle)

    # --- one delivery ----------------------------------------------------------------------------------------

    def _prepare(self, claimed: list[ClaimedDelivery]) -> dict[int, Request | Outcome]:
        """What to send for each claimed delivery, or why nothing is sent (withheld: may not see it, or gone)."""
        with reading(self.factory) as session:  # no write lock while the receivers are called
            subs = subscriptions.get_subscriptions(session, ids={one.subscription_id for one in claimed})
            found = events.get_events(session, ids={one.event_id for one in claimed})
            viewers = subscriptions.viewers(session, owners={s.owner for s in subs.values()})
            watched = subscriptions.existing_watchlists(
                session, ids={s.watchlist_id for s in subs.values() if s.watchlist_id is not None})
            ready: dict[int, Request | Outcome] = {}
            for one in claimed:
                subscription, event = subs.get(one.subscription_id), found.get(one.event_id)
                viewer = viewers.get(subscription.owner) if subscription is not None else None
                if subscription is None or event is None:
                    ready[one.id] = Outcome(None, "the subscription was deleted", 0.0, withheld=True)
                elif (viewer is None or not viewer.sees(event.case_ids, watchlist=subscription.watchlist_id is not None)
                      or (subscription.watchlist_id is not None and subscription.watchlist_id not in watched)):
                    ready[one.id] = Outcome(None, "withheld: the subscription's owner may not see this event", 0.0,
                                            withheld=True)
                else:
                    ready[one.id] = Request(subscription.url, event.uid, subscriptions.secret_of(session, subscription),
                                            events.body(event, with_watchlists=viewer.reads_watchlists))
        return ready

    def _send(self, request: Request | Outcome) -> Outcome:
        if isinstance(request, Outcome):
            return request
        url, message_id, secret, body = request.url, request.message_id, request.secret, request.body
        started = time.perf_counter()
        try:
            target = webhook_targets.check_url(url, allow_loopback=self.allow_loopback)
            address = webhook_targets.resolve_target(target, allow_loopback=self.allow_loopback, resolve=self.resolve)
        except TargetRefused as exc:
            return Outcome(None, f"address refused: {exc}", (time.perf_counter() - started) * 1000)
        timestamp = int(self.clock().timestamp())
        host = f"[{address}]" if ":" in address else address
        headers = {"content-type": "application/json", "webhook-id": message_id,
                   "webhook-timestamp": str(timestamp),
                   "webhook-signature": subscriptions.sign(secret, message_id=message_id, timestamp=timestamp,
                                                           body=body),
                   "host": _authority(target)}
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            # The answer's body is never read: a receiver cannot make Locard hold a large one.
            with self.client.stream("POST", f"{target.scheme}://{host}:{target.port}{target.path}", content=body,
                                    headers=headers, extensions=extensions) as response:
                pass
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR], (time.perf_counter() - started) * 1000)
        elapsed = (time.perf_counter() - started) * 1000
        if 200 <= response.status_code < 300:
            return Outcome(response.status_code, None, elapsed)
        return Outcome(response.status_code, f"answered {response.status_code}", elapsed, _retry_after(response))

    def _result(self, claimed: ClaimedDelivery, outcome: Outcome) -> AttemptResult:
        now = self.clock()
        sent = None if outcome.withheld else outcome.duration_ms
        if outcome.withheld:
            return AttemptResult(claimed, now, WITHHELD, None, outcome.error, None)
        if outcome.error is None:
            return AttemptResult(claimed, now, DELIVERED, outcome.status, None, sent)
        if outcome.status == 410:
            return AttemptResult(claimed, now, FAILED, 410,
                                 "the receiver answered 410 Gone: the subscription is disabled", sent)
        if now >= claimed.deadline:
            return AttemptResult(claimed, now, FAILED, outcome.status, f"given up after 24 hours: {outcome.error}",
                                 sent)
        wait = max(backoff(claimed.attempt, self.backoff_cap), min(outcome.retry_after or 0.0, self.backoff_cap))
        return AttemptResult(claimed, now, PENDING, outcome.status, outcome.error, sent,
                             next_attempt_at=min(now + dt.timedelta(seconds=wait), claimed.deadline))


def start(factory: sessionmaker[Session], stop: threading.Event, *, allow_loopback: bool) -> threading.Thread:
    """Run a delivery loop in a daemon thread until `stop` is set (the worker service's)."""
    loop = DeliveryLoop(factory, allow_loopback=allow_loopback)

    def run() -> None:
        try:
            loop.run(stop)
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="locard-delivery", daemon=True)
    thread.start()
    return thread
