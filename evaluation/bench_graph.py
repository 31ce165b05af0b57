"""Benchmark of the identity graph: the neighbourhood of a node with 10^4 edges, against the naive ways.

    python -m evaluation.bench_graph [--hub-edges N] [--background M] [--queries Q] [--naive-queries S]
                                     [--databases sqlite postgresql] [--postgres-url URL] [--out PATH]

Data (generated, bulk-inserted as the cross-matcher would have recorded it; 50 cases): a registered vehicle whose
plate was read in N items (default 10,000), each reading matched to the vehicle and indexed under the plate's key
(so the vehicle has N match edges and the plate N "contains" edges and N match edges); a hub item with N
near-duplicate image matches to other items; and M background items (default 40,000) reading random plates, each
matched to a random register vehicle, a third of them pairwise by image. On each database, a fresh one (SQLite: a
file; PostgreSQL: a database created on the server of `--postgres-url` and dropped after), migrated like Locard's
and analysed after the load.

Measured, per root (the vehicle, the plate, the hub item) and depth (1 and 2):

- locard: `storage.graph.neighbourhood` with its default limit (200 nodes, best edges first), Q times;
- unbounded: the same indexed queries without a limit (every edge), S times: what the limit saves;
- naive: every live match and key loaded and the graph walked in Python (what a service without the graph's
  queries would do per request), S times.

p50/p95 in milliseconds, the nodes and edges answered, and the naive medians over Locard's. Results go to
`evaluation/results/graph.json` unless `--out` says otherwise. Target: p95 < 100 ms for a node with 10^4 edges.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from evaluation.bench_plate_lookup import stats_ms
from evaluation.bench_registers import DEFAULT_POSTGRES_URL, fresh_database
from evaluation.common import RESULTS, locard_commit, machine_info
from storage import graph
from storage.db import make_engine, migrate, reading, session_factory
from storage.graph import LIVE, Edge, Node
from storage.matches import Match, MatchKey
from storage.records import create_case
from storage.tables import AnalysisRun, Evidence, Finding, new_id, utcnow
from storage.vehicles import Vehicle

DEFAULT_OUT = RESULTS / "graph.json"
DATABASES = ("sqlite", "postgresql")
CASES = 50
REGISTER_VEHICLES = 2_000
BATCH = 5_000
TARGET_P95_MS = 100.0
HUB_PLATE, HUB_KEY = "1-HUB-001", "1HUB001"


class World:
    """Rows to insert, built in memory: items, runs, findings, keys, matches, vehicles."""

    def __init__(self) -> None:
        self.rows: dict[Any, list[dict[str, Any]]] = {table: [] for table in (
            Vehicle, Evidence, AnalysisRun, Finding, MatchKey, Match)}
        self.hub_vehicle = ""
        self.hub_item = ""

    def item(self, case_id: str) -> tuple[str, str]:
        evidence_id, run_id = new_id(), new_id()
        self.rows[Evidence].append({"id": evidence_id, "case_id": case_id, "sha256": evidence_id.replace("-", "") * 2,
                                    "size": 1, "media_type": "image/jpeg", "bucket": "b", "object_key": evidence_id,
                                    "source": "api", "received_by": "bench", "received_at": utcnow()})
        self.rows[AnalysisRun].append({"id": run_id, "evidence_id": evidence_id, "analyzer": "plates",
                                       "analyzer_version": "2.1.0", "status": "succeeded", "finished_at": utcnow(),
                                       "models": {}, "attempt": 1})
        return evidence_id, run_id

    def finding(self, evidence_id: str, run_id: str, case_id: str, kind: str, label: str | None) -> str:
        finding_id = new_id()
        self.rows[Finding].append({"id": finding_id, "evidence_id": evidence_id, "case_id": case_id, "run_id": run_id,
                                   "analyzer": kind.split(".")[0], "kind": kind, "label": label, "confidence": 0.9,
                                   "data": {}, "created_at": utcnow()})
        return finding_id

    def match(self, modality: str, finding: tuple[str, str, str], target_kind: str, target_id: str,
              detail: dict[str, Any], target: tuple[str, str] | None = None, score: float = 1.0) -> None:
        finding_id, evidence_id, case_id = finding
        self.rows[Match].append({
            "id": new_id(), "modality": modality, "finding_id": finding_id, "finding_kind": "plates.plate",
            "evidence_id": evidence_id, "case_id": case_id, "analyzer": "plates", "analyzer_version": "2.1.0",
            "target_kind": target_kind, "target_id": target_id, "target_evidence_id": target[0] if target else None,
            "target_case_id": target[1] if target else None,
            "target_analyzer": "register" if target is None else "similarity", "target_version": None,
            "score": score, "threshold": 0.6, "method": "exact", "matcher": modality, "matcher_version": "1.0.0",
            "detail": detail, "status": "confirmed" if len(self.rows[Match]) % 7 == 0 else "candidate",
            "created_at": utcnow(), "pair_key": f"{modality}:{finding_id}:{target_kind}:{target_id}"})


def plate_of(number: int) -> tuple[str, str]:
    letters = "".join(chr(65 + (number // 26 ** power) % 26) for power in range(3))
    return f"1-{letters}-{number % 1000:03d}", f"1{letters}{number % 1000:03d}"


def build(factory: sessionmaker[Session], *, hub_edges: int, background: int, seed: int = 13) -> World:
    """The benchmark's rows (see the module), inserted in batches; the world, with its hub ids."""
    rng = random.Random(seed)
    with factory() as session, session.begin():
        cases = [create_case(session, reference=f"B-{at:04d}", title="bench", description="",
                             created_by="bench").id for at in range(CASES)]
    world = World()
    vehicles = []
    for number in range(REGISTER_VEHICLES):
        plate, key = plate_of(number) if number else (HUB_PLATE, HUB_KEY)
        vehicles.append((new_id(), plate, key))
        world.rows[Vehicle].append({"id": vehicles[-1][0], "plate": plate, "plate_key": key, "country": "BE",
                                    "make": "Volvo", "model": "V70", "colour": "grey", "status": "none",
                                    "created_at": utcnow(), "updated_at": utcnow()})
    world.hub_vehicle = vehicles[0][0]
    hub_case = cases[0]
    world.hub_item, hub_run = world.item(hub_case)
    hub_picture = world.finding(world.hub_item, hub_run, hub_case, "similarity.embedding", None)
    for at in range(hub_edges + background):
        case_id = cases[rng.randrange(CASES)]
        evidence_id, run_id = world.item(case_id)
        vehicle_id, plate, key = vehicles[0] if at < hub_edges else vehicles[rng.randrange(1, REGISTER_VEHICLES)]
        finding_id = world.finding(evidence_id, run_id, case_id, "plates.plate", plate)
        world.rows[MatchKey].append({"modality": "plate", "key": key, "exact": True, "finding_id": finding_id,
                                     "evidence_id": evidence_id})
        world.match("plate", (finding_id, evidence_id, case_id), "vehicle", vehicle_id,
                    {"reading": plate, "key": key, "matched_key": key}, score=round(rng.uniform(0.6, 1.0), 4))
        if at < hub_edges or at % 3 == 0:  # a near-duplicate picture of the hub's, or of an earlier item's
            picture = world.finding(evidence_id, run_id, case_id, "similarity.embedding", None)
            if at < hub_edges:
                side_a = (hub_picture, world.hub_item, hub_case)
            else:
                earlier = world.rows[Evidence][rng.randrange(1, len(world.rows[Evidence]) - 1)]
                side_a = (new_id(), earlier["id"], earlier["case_id"])  # its picture's finding id: not needed here
            world.match("image", side_a, "finding", picture, {"inliers": 100}, target=(evidence_id, case_id),
                        score=round(rng.uniform(0.6, 1.0), 4))
    with factory() as session, session.begin():
        for table, rows in world.rows.items():
            for start in range(0, len(rows), BATCH):
                session.execute(insert(table), rows[start:start + BATCH])
    return world


def analyse(engine: Engine) -> None:
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
        else:
            connection.execute(text("ANALYZE"))
            connection.commit()


def naive(session: Session, *, node: Node, depth: int) -> tuple[int, int]:
    """Every live match and key loaded, the graph walked in Python: (nodes, edges) within `depth` of `node`."""
    adjacency: dict[Node, list[Edge]] = {}
    for match in session.scalars(select(Match).where(LIVE)):
        edge = graph.match_edge(match)
        if edge is not None:
            for end in {edge.source, edge.target, *([edge.via] if edge.via else [])}:
                adjacency.setdefault(end, []).append(edge)
    for evidence_id, modality, key in session.execute(select(MatchKey.evidence_id, MatchKey.modality, MatchKey.key)
                                                      .where(MatchKey.exact.is_(True))):
        trace = Node("plate", key) if modality == "plate" else graph.entity_node(key)
        if trace is not None:
            edge = Edge("contains", Node("evidence", evidence_id), trace)
            for end in (edge.source, edge.target):
                adjacency.setdefault(end, []).append(edge)
    seen, frontier, edges = {node}, [node], set()
    for _ in range(depth):
        following = []
        for current in frontier:
            for edge in adjacency.get(current, []):
                edges.add(edge.key)
                for end in (edge.source, edge.target):
                    if end not in seen:
                        seen.add(end)
                        following.append(end)
        frontier = following
    return len(seen), len(edges)


def timed(repeat: int, ask: Callable[[], tuple[int, int]]) -> dict[str, Any]:
    durations, answer = [], (0, 0)
    for _ in range(repeat):
        started = time.perf_counter()
        answer = ask()
        durations.append((time.perf_counter() - started) * 1000)
    return {"ms": stats_ms(durations), "nodes": answer[0], "edges": answer[1]}


def one_database(kind: str, folder: Path, postgres_url: str, *, hub_edges: int, background: int, queries: int,
                 naive_queries: int) -> dict[str, Any]:
    with fresh_database(kind, folder, postgres_url) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            factory = session_factory(engine)
            started = time.perf_counter()
            world = build(factory, hub_edges=hub_edges, background=background)
            built = round(time.perf_counter() - started, 1)
            analyse(engine)
            roots = {"vehicle": Node("vehicle", world.hub_vehicle), "plate": Node("plate", HUB_KEY),
                     "item": Node("evidence", world.hub_item)}
            measured: dict[str, Any] = {}
            with reading(factory) as session:
                for name, root in roots.items():
                    for depth in (1, 2):
                        def locard(limit: int, root: Node = root, depth: int = depth) -> tuple[int, int]:
                            found = graph.neighbourhood(session, node=root, depth=depth, limit=limit)
                            return len(found.depth), len(found.edges)

                        def walked(root: Node = root, depth: int = depth) -> tuple[int, int]:
                            return naive(session, node=root, depth=depth)

                        timed(3, lambda: locard(200))  # warm up
                        entry = {"locard": timed(queries, lambda: locard(200)),
                                 "unbounded": timed(naive_queries, lambda: locard(10**9)),
                                 "naive_python": timed(naive_queries, walked)}
                        base = entry["locard"]["ms"]["p50"] or 0.001
                        entry["ratio_p50"] = {way: round(entry[way]["ms"]["p50"] / base, 1)
                                              for way in ("unbounded", "naive_python")}
                        measured[f"{name}_depth{depth}"] = entry
        finally:
            engine.dispose()
    rows = {table.__tablename__: len(rows) for table, rows in world.rows.items()}
    return {"build_seconds": built, "rows": rows, "queries": measured}


def run(*, hub_edges: int = 10_000, background: int = 40_000, queries: int = 200, naive_queries: int = 5,
        databases: tuple[str, ...] = DATABASES, postgres_url: str = DEFAULT_POSTGRES_URL,
        out: Path | None = DEFAULT_OUT) -> dict[str, Any]:
    """The whole benchmark; the results, also written to `out` as JSON when given."""
    result: dict[str, Any] = {
        "benchmark": "graph", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **locard_commit(),
        "machine": machine_info(),
        "parameters": {"hub_edges": hub_edges, "background_items": background, "queries": queries,
                       "naive_queries": naive_queries, "limit": 200, "cases": CASES, "databases": list(databases)},
        "databases": {}}
    with tempfile.TemporaryDirectory(prefix="locard-bench-graph-") as tmp:
        for kind in databases:
            result["databases"][kind] = one_database(kind, Path(tmp), postgres_url, hub_edges=hub_edges,
                                                     background=background, queries=queries,
                                                     naive_queries=naive_queries)
    worst = max(entry["locard"]["ms"]["p95"] for db in result["databases"].values()
                for entry in db["queries"].values())
    result["targets"] = {"neighbourhood_p95_ms": TARGET_P95_MS, "worst_p95_ms": worst, "met": worst < TARGET_P95_MS}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"hub with {result['parameters']['hub_edges']:,} edges, "
             f"{result['parameters']['background_items']:,} background items"]
    for kind, db in result["databases"].items():
        for name, entry in db["queries"].items():
            lines.append(f"{kind} {name}: p50 {entry['locard']['ms']['p50']} ms, p95 {entry['locard']['ms']['p95']} "
                         f"ms ({entry['locard']['nodes']} nodes); unbounded p50 {entry['unbounded']['ms']['p50']} ms "
                         f"({entry['ratio_p50']['unbounded']}x), naive p50 {entry['naive_python']['ms']['p50']} ms "
                         f"({entry['ratio_p50']['naive_python']}x)")
    lines.append(f"target p95 < {TARGET_P95_MS} ms: {'met' if result['targets']['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--hub-edges", type=int, default=10_000)
    parser.add_argument("--background", type=int, default=40_000)
    parser.add_argument("--queries", type=int, default=200, help="neighbourhood queries per root and depth")
    parser.add_argument("--naive-queries", type=int, default=5, help="runs of each naive way per root and depth")
    parser.add_argument("--databases", nargs="+", choices=DATABASES, default=list(DATABASES))
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="a server where databases can be made")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = run(hub_edges=args.hub_edges, background=args.background, queries=args.queries,
                 naive_queries=args.naive_queries, databases=tuple(args.databases), postgres_url=args.postgres_url,
                 out=args.out)
    print(summary(result))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
