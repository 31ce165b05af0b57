"""Benchmark: the cost of authentication, authorisation and the audit trail on a read route.

    python -m evaluation.bench_auth [--rounds R] [--requests N] [--database-url URL] [--out PATH]

Two apps over one record store, measured side by side in alternating rounds: `secured` is the case API as
deployed (a bearer token checked on every request, the user's roles re-read, case assignment checked, one
HMAC-chained audit entry committed per request); `open` is the same app without the access middleware, with
the principal fixed (no token, no audit). The route is `GET /api/v1/cases/{id}` as an investigator assigned
to the case (for `open`, the same principal). Requests go through the ASGI app in process (no network), so the
figure is the server's own cost. Results: evaluation/results/auth.json (requests/s medians and the overhead).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.access import AccessMiddleware
from api.deps import get_principal
from api.main import create_app
from api.principal import Principal
from api.security import issue_access_token
from evaluation.common import RESULTS, locard_commit, machine_info
from storage import accounts, records
from storage.db import make_engine, migrate, session_factory, transaction
from storage.fakes import MemoryObjectStore
from storage.roles import INVESTIGATOR
from storage.settings import Settings

DEFAULT_OUT = RESULTS / "auth.json"
TARGET_OVERHEAD = 0.15
USER = "bench-investigator"


def _settings(database_url: str, home: Path) -> Settings:
    return Settings(_env_file=None, environment="test", home=home, database_url=database_url,  # type: ignore[call-arg]
                    token_secret=SecretStr(secrets.token_urlsafe(32)), audit_key=SecretStr(secrets.token_urlsafe(32)))


def _open_app(settings: Settings, store: MemoryObjectStore) -> FastAPI:
    app = create_app(settings, store=store)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not AccessMiddleware]
    principal = Principal(USER, frozenset({INVESTIGATOR}))
    app.dependency_overrides[get_principal] = lambda: principal
    return app


def _round(client: TestClient, url: str, requests: int, headers: dict[str, str]) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        response = client.get(url, headers=headers)
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}: {response.text[:200]}")
    return requests / (time.perf_counter() - started)


def run(rounds: int, requests: int, database_url: str | None, out: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="locard-bench-auth-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'locard.db'}"
        settings = _settings(url, Path(tmp))
        engine = make_engine(url)
        migrate(engine)
        with transaction(session_factory(engine, chain_key=settings.chain_key)) as session:
            case = records.create_case(session, reference=f"BENCH-{time.time_ns()}", title="t", description="",
                                       created_by="bench")
            user = accounts.get_user_by_name(session, username=USER) or accounts.create_user(
                session, username=USER, password=None, roles=[INVESTIGATOR], created_by="bench")
            accounts.assign(session, case_id=case.id, username=USER, assigned_by="bench")
            token, _ = issue_access_token(user_name=user.username, roles=user.roles, user_id=user.id,
                                          settings=settings)
        route = f"/api/v1/cases/{case.id}"
        store = MemoryObjectStore()
        rates: dict[str, list[float]] = {"secured": [], "open": []}
        with TestClient(create_app(settings, store=store)) as secured, \
                TestClient(_open_app(settings, store)) as plain:
            auth = {"Authorization": f"Bearer {token}"}
            _round(secured, route, 50, auth)  # warm-up
            _round(plain, route, 50, {})
            for _ in range(rounds):
                rates["secured"].append(_round(secured, route, requests, auth))
                rates["open"].append(_round(plain, route, requests, {}))
        engine.dispose()
    secured_rate, open_rate = statistics.median(rates["secured"]), statistics.median(rates["open"])
    overhead = 1.0 - secured_rate / open_rate
    results = {"benchmark": "auth", "created": dt.datetime.now(dt.UTC).isoformat(), "locard": locard_commit(),
               "machine": machine_info(), "database": url.split(":", 1)[0], "route": "GET /api/v1/cases/{id}",
               "rounds": rounds, "requests_per_round": requests,
               "requests_per_second": {"secured_median": round(secured_rate, 1), "open_median": round(open_rate, 1),
                                       "secured_rounds": [round(r, 1) for r in rates["secured"]],
                                       "open_rounds": [round(r, 1) for r in rates["open"]]},
               "overhead": round(overhead, 4), "target_overhead": TARGET_OVERHEAD,
               "target_met": overhead < TARGET_OVERHEAD}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds per app (7)")
    parser.add_argument("--requests", type=int, default=300, help="requests per round (300)")
    parser.add_argument("--database-url", default=None, help="record store (default: a temporary SQLite file)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    results = run(args.rounds, args.requests, args.database_url, args.out)
    rate = results["requests_per_second"]
    print(f"GET /api/v1/cases/{{id}} on {results['database']}: secured {rate['secured_median']} req/s, open "
          f"{rate['open_median']} req/s; auth + audit overhead {results['overhead']:.1%} "
          f"(target < {TARGET_OVERHEAD:.0%}) -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
