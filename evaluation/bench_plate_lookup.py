"""Plate lookup in the vehicle register, tolerant of OCR confusions, against the scans a user would otherwise run.

Part of `evaluation.bench_registers` (which fills the register first). Queries are the register's own plates
read five ways, `per_kind` of each: as registered ("exact"), with one and with two OCR confusions (0/O, 1/I,
8/B, 5/S, 2/Z: `storage.plate_keys`, the plate matcher's own table), with a separator missing, and plates that
are not in the register at all ("absent"). Each is looked up the way the plate matcher does it
(`workers.matchers.plates`): the reading's plate key and its confusion variants
(`storage.plate_keys.confusion_variants`), then `vehicles_by_plate_keys` for all of them in one query. Recall
is the share of register queries whose vehicle is among the answers (every confused plate must find it).

The naive ways, on a sample of the same queries (each scans every vehicle): SQL `LIKE` with a one-character
wildcard at every confusable position of the key (a pattern that finds every confusion and more, on both
databases), PostgreSQL's `levenshtein(plate_key, key) <= 2` (fuzzystrmatch), and Python's
`difflib.get_close_matches` over every plate key held in memory.
"""

from __future__ import annotations

import difflib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from evaluation.common import percentile
from storage.db import reading
from storage.identifiers import plate_key
from storage.plate_keys import CONFUSIONS, MAX_SUBSTITUTIONS, confusion_variants
from storage.vehicles import vehicles_by_plate_keys
from tests.register_samples import plate

KINDS = ("exact", "one_confusion", "two_confusions", "missing_separator", "absent")
REGISTER_KINDS = KINDS[:-1]
WARM_UP_QUERIES = 20
DIFFLIB_CUTOFF = 0.7


@dataclass(frozen=True)
class PlateQuery:
    """One plate as read, and the register key it must find (None: a plate not in the register)."""

    kind: str
    reading: str
    expected_key: str | None


def stats_ms(values: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p95, max and mean of durations in milliseconds, to the microsecond (lookups take well under 1 ms)."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "max": round(max(values), 3), "mean": round(sum(values) / len(values), 3)}


def _confuse(reading: str, swaps: int, rng: random.Random) -> str | None:
    """`reading` with `swaps` of its characters replaced by their OCR confusion, or None when it has too few."""
    positions = [at for at, char in enumerate(reading) if char in CONFUSIONS]
    if len(positions) < swaps:
        return None
    chars = list(reading)
    for at in rng.sample(positions, swaps):
        chars[at] = CONFUSIONS[chars[at]]
    return "".join(chars)


def make_queries(rows: int, per_kind: int, *, seed: int = 12) -> list[PlateQuery]:
    """`per_kind` queries of every kind in KINDS over a register of `tests.register_samples.plate(0..rows-1)`."""
    rng = random.Random(seed)
    queries: list[PlateQuery] = []
    for kind in KINDS:
        made = 0
        while made < per_kind:
            if kind == "absent":
                queries.append(PlateQuery(kind, plate(rng.randrange(rows, 2 * rows + 1000)), None))
                made += 1
                continue
            registered = plate(rng.randrange(rows))
            if kind == "exact":
                read: str | None = registered
            elif kind == "missing_separator":
                read = registered.replace("-", "", 1)
            else:
                read = _confuse(registered, 1 if kind == "one_confusion" else 2, rng)
            if read is not None:
                queries.append(PlateQuery(kind, read, plate_key(registered)))
                made += 1
    return queries


def matcher_lookup(session: Session, reading: str) -> list[str]:
    """The plate matcher's register lookup: the key, its OCR confusion variants, one query; the keys found."""
    key = plate_key(reading)
    keys = [key, *confusion_variants(key, max_substitutions=MAX_SUBSTITUTIONS)]
    return [vehicle.plate_key for vehicle in vehicles_by_plate_keys(session, keys=keys)]


def like_pattern(key: str) -> str:
    """The key with a one-character wildcard at every position an OCR confusion could have changed."""
    return "".join("_" if char in CONFUSIONS else char for char in key)


def _summary(queries: Sequence[PlateQuery], durations: Sequence[float],
             answers: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Latency, recall and answer sizes of some queries, per kind and overall."""
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        picked = [at for at, query in enumerate(queries) if query.kind == kind]
        if not picked:
            continue
        entry: dict[str, Any] = {"ms": stats_ms([durations[at] for at in picked]),
                                 "mean_answers": round(sum(len(answers[at]) for at in picked) / len(picked), 2)}
        if kind == "absent":
            entry["queries_with_answers"] = sum(1 for at in picked if answers[at])
        else:
            entry["recall"] = round(sum(1 for at in picked if queries[at].expected_key in answers[at])
                                    / len(picked), 4)
        kinds[kind] = entry
    wanted = [at for at, query in enumerate(queries) if query.expected_key is not None]
    recall = sum(1 for at in wanted if queries[at].expected_key in answers[at]) / len(wanted) if wanted else None
    return {"ms": stats_ms(durations), "recall": None if recall is None else round(recall, 4), "kinds": kinds}


def _timed(queries: Sequence[PlateQuery], ask: Callable[[PlateQuery], list[str]]) -> dict[str, Any]:
    durations, answers = [], []
    for query in queries:
        started = time.perf_counter()
        found = ask(query)
        durations.append((time.perf_counter() - started) * 1000)
        answers.append(found)
    return _summary(queries, durations, answers)


def naive_sample(queries: Sequence[PlateQuery], count: int) -> list[PlateQuery]:
    """`count` queries taken round-robin over the kinds (the naive scans are too slow to run them all)."""
    by_kind = [[query for query in queries if query.kind == kind] for kind in KINDS]
    sample: list[PlateQuery] = []
    for at in range(max(len(group) for group in by_kind)):
        sample += [group[at] for group in by_kind if at < len(group)]
    return sample[:count]


def lookup_benchmark(factory: sessionmaker[Session], engine: Engine, queries: Sequence[PlateQuery],
                     naive_queries: int) -> dict[str, Any]:
    """The matcher's lookup over every query and the naive SQL scans over a sample, on one database."""
    with reading(factory) as session:
        for query in queries[:WARM_UP_QUERIES]:
            matcher_lookup(session, query.reading)
        matcher = _timed(queries, lambda query: matcher_lookup(session, query.reading))
    sample = naive_sample(queries, naive_queries)
    naive: dict[str, Any] = {}
    with engine.connect() as connection:
        like = text("SELECT plate_key FROM vehicles WHERE plate_key LIKE :pattern")
        naive["like_scan"] = _timed(sample, lambda query: list(connection.scalars(
            like, {"pattern": like_pattern(plate_key(query.reading))})))
        if engine.dialect.name == "postgresql":
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch"))
            distance = text(f"SELECT plate_key FROM vehicles WHERE levenshtein(plate_key, :key) <= {MAX_SUBSTITUTIONS}")
            naive["levenshtein_scan"] = _timed(sample, lambda query: list(connection.scalars(
                distance, {"key": plate_key(query.reading)})))
        connection.rollback()
    for result in naive.values():
        result["speedup_p50"] = _ratio(result["ms"], matcher["ms"], "p50")
        result["speedup_p95"] = _ratio(result["ms"], matcher["ms"], "p95")
    return {"matcher": matcher, "naive": naive}


def difflib_benchmark(engine: Engine, queries: Sequence[PlateQuery], count: int,
                      matcher_ms: dict[str, Any]) -> dict[str, Any]:
    """`difflib.get_close_matches` over every plate key held in memory, on a sample of the queries."""
    with engine.connect() as connection:
        keys = list(connection.scalars(text("SELECT plate_key FROM vehicles")))
    result = _timed(naive_sample(queries, count), lambda query: difflib.get_close_matches(
        plate_key(query.reading), keys, n=5, cutoff=DIFFLIB_CUTOFF))
    result["cutoff"], result["n_best"] = DIFFLIB_CUTOFF, 5
    result["speedup_p50"] = _ratio(result["ms"], matcher_ms, "p50")
    result["speedup_p95"] = _ratio(result["ms"], matcher_ms, "p95")
    return result


def _ratio(slow: dict[str, Any], fast: dict[str, Any], field: str) -> float | None:
    if not slow.get(field) or not fast.get(field):
        return None
    return round(slow[field] / fast[field], 1)
