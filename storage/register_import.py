"""Bulk import into the persons and vehicle registers from CSV or JSON Lines, streamed.

The file is read line by line (`storage.register_files`: a too-long line is skipped, never held), each record is checked
into a typed row by its register (`storage.persons.parse_person`, `storage.vehicles.parse_vehicle`), and rows are
written BATCH_ROWS at a time, one transaction per batch, with the dialect's upsert (INSERT ... ON CONFLICT), so a
file of a million rows takes the memory of one batch. A bad record is reported with its line number and the
reason, and the good ones are kept. The import is idempotent on the natural keys (the national number; the plate
key with the country): a record equal to the register's is left alone ("unchanged"), a different one updates it,
and importing the same file again changes nothing. A key seen twice in one file is kept from its first line and
reported on the later ones (the file's keys are remembered in a temporary table, not in memory). The records of
a batch that may match older evidence (added ones; vehicles whose plate or status changed) are re-matched with it
by ONE job queued in the batch's transaction (`storage.rematch`), never by work at import time.

A file that cannot be imported at all (empty, a CSV header with unknown, missing or repeated columns) raises
ImportFileError before anything is written. Every import, refused ones too, is one entry in the audit log: who,
the file's name and SHA-256, and the counts.

CSV: a header line names the columns (any order, case and surrounding spaces ignored); the dialect is Excel's
(comma, double quotes), UTF-8 with or without a byte-order mark. JSON Lines: one object per line with the same
names as keys and strings (or null) as values; blank lines are skipped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, cast

from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from storage import audit
from storage.db import transaction
from storage.persons import PERSON_FIELDS, PERSON_REQUIRED, Person, PersonRow, parse_person
from storage.register_files import (
    ImportFileError,
    Lines,
    Rejection,
    csv_records,
    drain,
    jsonl_records,
)
from storage.registers import RowError
from storage.rematch import queue_rematch
from storage.tables import new_id, utcnow
from storage.vehicles import (
    ROW_COLUMNS,
    VEHICLE_FIELDS,
    VEHICLE_REQUIRED,
    Vehicle,
    VehicleRow,
    VehicleStatusChange,
    history_entry,
    parse_vehicle,
)

REGISTERS = ("persons", "vehicles")
FORMATS = ("csv", "jsonl")
BATCH_ROWS = 1000
MAX_REJECTIONS_KEPT = 1000  # every rejection is counted; the first ones are listed

Row = PersonRow | VehicleRow


@dataclass(frozen=True)
class ImportProgress:
    """How far an import is: records read, bytes read, and the file's size when known."""

    rows: int
    bytes_read: int
    total_bytes: int | None


@dataclass
class ImportReport:
    """What one import did. `rows` counts every record read; each is added, updated, unchanged or rejected."""

    register: str
    file_name: str
    file_format: str
    sha256: str = ""
    bytes_read: int = 0
    rows: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    rejections: list[Rejection] = field(default_factory=list)  # the first MAX_REJECTIONS_KEPT
    audit_id: int | None = None

    def reject(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append(Rejection(line, reason))

    def counts(self) -> dict[str, int]:
        return {"rows": self.rows, "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "rejected": self.rejected}


@dataclass(frozen=True)
class _Register:
    """How one register is read and written."""

    fields: tuple[str, ...]
    required: tuple[str, ...]
    parse: Callable[..., Row]
    table: Table
    key_columns: tuple[str, ...]
    row_type: type[PersonRow] | type[VehicleRow]
    row_columns: tuple[str, ...]
    target_kind: str  # what `storage.rematch` calls its records


_REGISTERS = {
    "persons": _Register(PERSON_FIELDS, PERSON_REQUIRED, parse_person, cast(Table, Person.__table__),
                         ("national_number",), PersonRow, tuple(PersonRow.__dataclass_fields__), "person"),
    "vehicles": _Register(VEHICLE_FIELDS, VEHICLE_REQUIRED, parse_vehicle, cast(Table, Vehicle.__table__),
                          ("plate_key", "country"), VehicleRow, ROW_COLUMNS, "vehicle"),
}
_HISTORY = cast(Table, VehicleStatusChange.__table__)


def _key_text(row: Row) -> str:
    return row.key if isinstance(row, PersonRow) else f"{row.country}:{row.plate_key}"


def _may_match_anew(row: Row, before: Row | None) -> bool:
    """Whether the record written may match older evidence it did not match: a new record, or a vehicle whose
    plate or status changed (`storage.rematch`)."""
    if before is None:
        return True
    return isinstance(row, VehicleRow) and isinstance(before, VehicleRow) and (
        (row.plate, row.status) != (before.plate, before.status))


def _keys_table() -> Table:
    """The temporary table of the keys this import has seen, with their first line."""
    return Table("locard_import_keys", MetaData(), Column("key", String(64), primary_key=True),
                 Column("line", Integer, nullable=False), prefixes=["TEMPORARY"])


def _upsert(connection: Connection, table: Table, keys: tuple[str, ...], columns: Sequence[str],
            values: list[dict[str, Any]]) -> None:
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    excluded = statement.excluded
    upsert = statement.on_conflict_do_update(index_elements=list(keys),
                                             set_={name: excluded[name] for name in (*columns, "updated_at")})
    _insert_values(connection, upsert, values)


def _insert_values(connection: Connection, statement: Any, values: list[dict[str, Any]]) -> None:
    """One executemany of the statement (compiled once and cached; psycopg pipelines the rows)."""
    connection.execute(statement, values)


class _Writer:
    """Writes one batch of checked rows per transaction, counting what each row did."""

    def __init__(self, connection: Connection, register: str, report: ImportReport, recorded_by: str) -> None:
        self.connection, self.spec, self.report = connection, _REGISTERS[register], report
        self.recorded_by = recorded_by
        self.keys = _keys_table()
        self.keys.drop(connection, checkfirst=True)  # left on a pooled connection by an import that failed
        self.keys.create(connection)
        connection.commit()

    def close(self) -> None:
        self.connection.rollback()
        self.keys.drop(self.connection, checkfirst=True)
        self.connection.commit()

    def _existing(self, rows: list[Row]) -> dict[str, tuple[str, Row]]:
        """The register's present rows for these rows' keys: key text -> (id, row)."""
        table, spec = self.spec.table, self.spec
        query = select(table.c.id, *(table.c[name] for name in spec.row_columns))
        first = spec.key_columns[0]
        query = query.where(table.c[first].in_(sorted({getattr(row, first) for row in rows})))
        found: dict[str, tuple[str, Row]] = {}
        for record in self.connection.execute(query):
            present = spec.row_type(**{name: record._mapping[name] for name in spec.row_columns})
            found[_key_text(present)] = (record.id, present)
        return found

    def write(self, batch: list[tuple[int, Row]]) -> None:
        report, keys = self.report, self.keys
        with self.connection.begin():
            texts = [_key_text(row) for _, row in batch]
            earlier = dict(self.connection.execute(select(keys.c.key, keys.c.line).where(keys.c.key.in_(texts)))
                           .tuples().all())
            fresh: list[tuple[int, Row]] = []
            for (line, row), key in zip(batch, texts, strict=True):
                first = earlier.get(key)
                if first is not None:
                    report.reject(line, f"the same key as line {first} (kept from there): {key}")
                    continue
                earlier[key] = line
                fresh.append((line, row))
            if not fresh:
                return
            _insert_values(self.connection, insert(keys), [{"key": _key_text(row), "line": line}
                                                           for line, row in fresh])
            existing = self._existing([row for _, row in fresh])
            now = utcnow()
            changed: list[tuple[str, Row]] = []
            history: list[Row] = []
            rematch: list[str] = []
            for _, row in fresh:
                present = existing.get(_key_text(row))
                if present is not None and present[1] == row:
                    report.unchanged += 1
                    continue
                if present is None:
                    report.added += 1
                else:
                    report.updated += 1
                row_id = new_id() if present is None else present[0]
                changed.append((row_id, row))
                if _may_match_anew(row, None if present is None else present[1]):
                    rematch.append(row_id)
                if isinstance(row, VehicleRow) and (row.status_fields != cast(VehicleRow, present[1]).status_fields
                                                    if present is not None else row.status != "none"):
                    history.append(row)
            if not changed:
                return
            columns = [name for name in changed[0][1].values() if name not in self.spec.key_columns]
            _upsert(self.connection, self.spec.table, self.spec.key_columns, columns,
                    [{"id": row_id, "created_at": now, "updated_at": now, **row.values()} for row_id, row in changed])
            if history:
                self._history(cast(list[VehicleRow], history))
            if rematch:
                with Session(bind=self.connection) as session:  # joins the batch's transaction
                    queue_rematch(session, target_kind=self.spec.target_kind, target_ids=rematch,
                                  reason=f"import:{now.isoformat()}")

    def _history(self, rows: list[VehicleRow]) -> None:
        ids = {key: vehicle_id for key, (vehicle_id, _row) in self._existing(list(rows)).items()}
        _insert_values(self.connection, insert(_HISTORY), [
            history_entry(vehicle_id=ids[_key_text(row)], row=row, recorded_by=self.recorded_by) for row in rows])


def _log(factory: sessionmaker[Session], report: ImportReport, *, actor: str, roles: Sequence[str],
         outcome: str, reason: str | None = None) -> int | None:
    detail: dict[str, Any] = {"file_name": report.file_name, "format": report.file_format, "sha256": report.sha256,
                              "bytes": report.bytes_read, **report.counts(),
                              "first_rejected_lines": [r.line for r in report.rejections[:20]]}
    if reason is not None:
        detail["reason"] = reason
    with transaction(factory) as session:
        entry = audit.record(session, actor=actor, roles=roles, action="collection",
                             resource=f"register import {report.register}", resource_id=report.sha256 or None,
                             outcome=outcome, detail=detail)
        session.flush()
        return entry.id


def import_register(factory: sessionmaker[Session], *, register: str, stream: IO[bytes], file_name: str,
                    file_format: str, actor: str, roles: Sequence[str] = (), total_bytes: int | None = None,
                    progress: Callable[[ImportProgress], None] | None = None, batch_rows: int = BATCH_ROWS,
                    today: dt.date | None = None) -> ImportReport:
    """Import the records of `stream` (CSV or JSON Lines, `file_format`) into the `register` ("persons" or
    "vehicles") and audit it as done by `actor`; the report of what each record did.

    `progress` is called after every batch. Raises ImportFileError (audited, nothing written) for a file that
    cannot be imported at all; an unexpected error is audited too, and the batches written before it stay.
    """
    if register not in REGISTERS:
        raise ValueError(f"unknown register {register!r}; expected one of {', '.join(REGISTERS)}")
    if file_format not in FORMATS:
        raise ValueError(f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}")
    spec = _REGISTERS[register]
    report = ImportReport(register=register, file_name=file_name, file_format=file_format)
    lines = Lines(stream)
    today = today or dt.date.today()
    engine = cast(Engine, factory.kw["bind"])
    try:
        with engine.connect() as connection:
            writer = _Writer(connection, register, report, recorded_by=f"import {actor}")
            records = (csv_records(lines, register=register, fields=spec.fields, required=spec.required)
                       if file_format == "csv" else jsonl_records(lines, fields=spec.fields))
            batch: list[tuple[int, Row]] = []
            for line, fields in records:
                for skipped in lines.skipped:
                    report.rows += 1
                    report.reject(skipped.line, skipped.reason)
                lines.skipped.clear()
                report.rows += 1
                try:
                    if isinstance(fields, str):
                        raise RowError(fields)
                    batch.append((line, spec.parse(fields, today=today)))
                except RowError as exc:
                    report.reject(line, str(exc))
                if len(batch) >= batch_rows:
                    writer.write(batch)
                    batch = []
                    if progress is not None:
                        progress(ImportProgress(report.rows, lines.bytes_read, total_bytes))
            for skipped in lines.skipped:
                report.rows += 1
                report.reject(skipped.line, skipped.reason)
            if batch:
                writer.write(batch)
            writer.close()
    except Exception as exc:
        drain(lines)
        report.sha256, report.bytes_read = lines.digest.hexdigest(), lines.bytes_read
        reason = str(exc) if isinstance(exc, ImportFileError) else f"{type(exc).__name__}: {exc}"[:500]
        report.audit_id = _log(factory, report, actor=actor, roles=roles, outcome="error", reason=reason)
        raise
    report.sha256, report.bytes_read = lines.digest.hexdigest(), lines.bytes_read
    if report.added + report.updated >= REFRESH_STATISTICS_ROWS:
        _refresh_statistics(engine, register)
    if progress is not None:
        progress(ImportProgress(report.rows, lines.bytes_read, total_bytes))
    report.audit_id = _log(factory, report, actor=actor, roles=roles, outcome="ok")
    return report


# After a large import PostgreSQL's planner may still hold the statistics of the small table it was: plate lookups
# over 10^6 fresh vehicles took 11.8 ms at p95 until ANALYZE, 0.6 ms after it (evaluation/bench_registers.py).
REFRESH_STATISTICS_ROWS = 5_000


def _refresh_statistics(engine: Engine, register: str) -> None:
    """ANALYZE the register's table, so lookups are planned for its new size (SQLite plans without it)."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as connection:
        connection.execute(text({"persons": "ANALYZE persons", "vehicles": "ANALYZE vehicles"}[register]))
        connection.commit()
