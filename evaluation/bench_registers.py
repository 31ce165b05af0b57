"""Benchmark of the vehicle register: bulk import rate and plate lookup tolerant of OCR confusions.

    python -m evaluation.bench_registers [--rows N] [--queries Q] [--naive-queries S]
                                         [--databases sqlite postgresql] [--postgres-url URL] [--out PATH]

Data (generated; see tests/register_samples.py): N vehicles (default 100,000; `--rows 1000000` for the bar),
Belgian plates "1-ABC-234", a third without owner, one in 50 stolen; written as CSV to a temporary folder, row by
row. On each database, a fresh one (SQLite: a file, migrated like Locard's; PostgreSQL: a database created for
the run on the server of `--postgres-url` and dropped after):

- import: `storage.register_import.import_register` of the file (parse and check every row, idempotent upsert
  on the plate key and country, status history, audit entry), then the same file again (every row
  "unchanged"); rows per second and the process's peak memory (RSS sampled during the import). Beside it, the
  floor a user would reach for, with no validation and no idempotence: PostgreSQL `COPY FROM` the same CSV
  (psycopg's copy) into a bare table of its columns, SQLite `executemany` of the parsed CSV rows into a bare
  table in one transaction.
- then the register is analysed (`settle`: VACUUM ANALYZE, as autovacuum would do after the load);
- plate lookup: see `evaluation.bench_plate_lookup` (the plate matcher's lookup against naive scans).

Results go to `evaluation/results/registers.json` unless `--out` says otherwise.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from evaluation.bench_plate_lookup import PlateQuery, difflib_benchmark, lookup_benchmark, make_queries
from evaluation.common import RESULTS, locard_commit, machine_info
from storage.db import make_engine, migrate, session_factory
from storage.register_import import BATCH_ROWS, import_register
from storage.vehicles import VEHICLE_FIELDS
from tests.register_samples import vehicles_csv

DEFAULT_OUT = RESULTS / "registers.json"
DEFAULT_ROWS = 100_000
DEFAULT_POSTGRES_URL = os.environ.get("LOCARD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DATABASES = ("sqlite", "postgresql")
TARGET_LOOKUP_P95_MS = 5.0
MIB = 1024 * 1024


class RssSampler:
    """The process's resident memory, sampled every `interval` seconds in a thread while in use."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval, self.peak, self.start = interval, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.start = self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


@contextmanager
def fresh_database(kind: str, folder: Path, postgres_url: str) -> Iterator[str]:
    """The URL of a new, empty record store; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / f'locard-{uuid.uuid4().hex[:8]}.db'}"
        return
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    name = f"locard_bench_{uuid.uuid4().hex[:12]}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def locard_import(factory: sessionmaker[Session], path: Path, rows: int) -> dict[str, Any]:
    """One `import_register` of the file: time, rate, what the rows did, peak memory."""
    with RssSampler() as memory, path.open("rb") as stream:
        started = time.perf_counter()
        report = import_register(factory, register="vehicles", stream=stream, file_name=path.name,
                                 file_format="csv", actor="bench", total_bytes=path.stat().st_size)
        seconds = time.perf_counter() - started
    if report.rows != rows or report.rejected:
        raise RuntimeError(f"import read {report.rows} rows and rejected {report.rejected}; expected {rows} good")
    return {"seconds": round(seconds, 2), "rows_per_s": round(rows / seconds), **report.counts(),
            "peak_rss_mib": round(memory.peak / MIB, 1), "rss_growth_mib": round((memory.peak - memory.start) / MIB, 1)}


def _bare_columns() -> str:
    return ", ".join(f"{name} text" for name in VEHICLE_FIELDS)


def postgres_copy(url: str, path: Path, rows: int) -> dict[str, Any]:
    """COPY FROM the CSV (psycopg's copy, 1 MiB chunks) into a bare table of its columns."""
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo) as connection, path.open("rb") as source:
        connection.execute(f"CREATE TABLE bare_vehicles ({_bare_columns()})")
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            with cursor.copy("COPY bare_vehicles FROM STDIN (FORMAT csv, HEADER true)") as copy:
                while chunk := source.read(MIB):
                    copy.write(chunk)
            connection.commit()
            seconds = time.perf_counter() - started
            cursor.execute("SELECT count(*) FROM bare_vehicles")
            count = cursor.fetchone()
    if count is None or count[0] != rows:
        raise RuntimeError(f"COPY loaded {count} rows; expected {rows}")
    return {"tool": "PostgreSQL COPY FROM STDIN (psycopg copy), bare table", "seconds": round(seconds, 2),
            "rows_per_s": round(rows / seconds)}


def sqlite_executemany(folder: Path, path: Path, rows: int) -> dict[str, Any]:
    """executemany of the parsed CSV rows into a bare table (same pragmas as Locard's), one transaction."""
    database = folder / f"bare-{uuid.uuid4().hex[:8]}.db"
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(f"CREATE TABLE bare_vehicles ({_bare_columns()})")
        marks = ", ".join("?" for _ in VEHICLE_FIELDS)
        with path.open(newline="", encoding="utf-8") as source:
            started = time.perf_counter()
            reader = csv.reader(source)
            next(reader)
            connection.execute("BEGIN")
            connection.executemany(f"INSERT INTO bare_vehicles VALUES ({marks})", reader)
            connection.execute("COMMIT")
            seconds = time.perf_counter() - started
        count = connection.execute("SELECT count(*) FROM bare_vehicles").fetchone()[0]
    finally:
        connection.close()
        database.unlink(missing_ok=True)
    if count != rows:
        raise RuntimeError(f"executemany loaded {count} rows; expected {rows}")
    return {"tool": "sqlite3 executemany of csv.reader rows, bare table, one transaction",
            "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def settle(engine: Engine) -> float:
    """VACUUM ANALYZE (PostgreSQL) or ANALYZE (SQLite) the register after the bulk load, as autovacuum would soon
    do on its own, so lookups are measured in steady state and not beside a background vacuum; its seconds."""
    started = time.perf_counter()
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE vehicles"))
        else:
            connection.execute(text("ANALYZE vehicles"))
            connection.commit()
    return round(time.perf_counter() - started, 2)


def one_database(kind: str, folder: Path, path: Path, rows: int, queries: list[PlateQuery], naive_queries: int,
                 postgres_url: str, *, with_difflib: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Import, re-import and the floor tool, then the plate lookups, on a fresh database of `kind` (and the
    in-memory difflib scan, which does not depend on the database, when `with_difflib`)."""
    with fresh_database(kind, folder, postgres_url) as url:
        engine = make_engine(url)
        try:
            migrate(engine)
            factory = session_factory(engine)
            first = locard_import(factory, path, rows)
            again = locard_import(factory, path, rows)
            if again["unchanged"] != rows:
                raise RuntimeError(f"re-import changed rows: {again}")
            floor = postgres_copy(url, path, rows) if kind == "postgresql" else sqlite_executemany(folder, path, rows)
            imported = {"locard": first, "reimport": again, "floor": floor,
                        "floor_to_locard": round(floor["rows_per_s"] / first["rows_per_s"], 1)}
            imported["analyze_seconds"] = settle(engine)
            lookup = lookup_benchmark(factory, engine, queries, naive_queries)
            difflib = difflib_benchmark(engine, queries, naive_queries, lookup["matcher"]["ms"]) \
                if with_difflib else None
        finally:
            engine.dispose()
    if difflib is not None:
        lookup["naive"]["difflib_in_memory"] = difflib
    return imported, lookup


def run(*, rows: int = DEFAULT_ROWS, queries_per_kind: int = 200, naive_queries: int = 10,
        databases: tuple[str, ...] = DATABASES, postgres_url: str = DEFAULT_POSTGRES_URL,
        out: Path | None = DEFAULT_OUT) -> dict[str, Any]:
    """The whole benchmark; the results, also written to `out` as JSON when given."""
    queries = make_queries(rows, queries_per_kind)
    result: dict[str, Any] = {
        "benchmark": "registers", "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        **locard_commit(), "machine": machine_info(), "rows": rows,
        "parameters": {"queries_per_kind": queries_per_kind, "naive_queries": naive_queries,
                       "batch_rows": BATCH_ROWS, "databases": list(databases)},
        "import": {}, "plate_lookup": {}}
    with tempfile.TemporaryDirectory(prefix="locard-bench-registers-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        path = vehicles_csv(folder / "vehicles.csv", rows)
        result["csv"] = {"bytes": path.stat().st_size, "generate_seconds": round(time.perf_counter() - started, 1)}
        for kind in databases:
            imported, lookup = one_database(kind, folder, path, rows, queries, naive_queries, postgres_url,
                                            with_difflib=kind == databases[0])
            result["import"][kind], result["plate_lookup"][kind] = imported, lookup
    worst = max(entry["matcher"]["ms"]["p95"] for entry in result["plate_lookup"].values())
    result["targets"] = {"plate_lookup_p95_ms": TARGET_LOOKUP_P95_MS, "worst_p95_ms": worst,
                         "met": worst < TARGET_LOOKUP_P95_MS}
    result["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def summary(result: dict[str, Any]) -> str:
    lines = [f"{result['rows']:,} vehicles"]
    for kind, imported in result["import"].items():
        lookup = result["plate_lookup"][kind]
        matcher = lookup["matcher"]
        naive = ", ".join(f"{name} p50 {entry['ms']['p50']} ms ({entry['speedup_p50']}x)"
                          for name, entry in lookup["naive"].items())
        lines.append(f"{kind}: import {imported['locard']['rows_per_s']:,} rows/s (peak RSS "
                     f"{imported['locard']['peak_rss_mib']} MiB), re-import {imported['reimport']['rows_per_s']:,} "
                     f"rows/s, {imported['floor']['tool'].split(' (')[0].split(' of ')[0]} "
                     f"{imported['floor']['rows_per_s']:,} rows/s ({imported['floor_to_locard']}x); plate lookup "
                     f"p50 {matcher['ms']['p50']} ms, p95 {matcher['ms']['p95']} ms, recall {matcher['recall']}; "
                     f"naive: {naive}")
    lines.append(f"target p95 < {TARGET_LOOKUP_P95_MS} ms: {'met' if result['targets']['met'] else 'NOT met'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--queries", type=int, default=200, help="queries of each kind")
    parser.add_argument("--naive-queries", type=int, default=10, help="queries run by each naive scan")
    parser.add_argument("--databases", nargs="+", choices=DATABASES, default=list(DATABASES))
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL, help="a server where databases can be made")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = run(rows=args.rows, queries_per_kind=args.queries, naive_queries=args.naive_queries,
                 databases=tuple(args.databases), postgres_url=args.postgres_url, out=args.out)
    print(summary(result))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
