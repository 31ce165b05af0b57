"""Bulk import into the registers on both databases: bad rows reported by line while good ones are kept,
idempotence, updates, JSON Lines, hostile files, bounded memory, the audit entry and `locard import`.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from locard import cli
from storage import audit, persons, vehicles
from storage.db import make_engine, migrate, session_factory
from storage.register_files import MAX_LINE_BYTES
from storage.register_import import ImportFileError, ImportProgress, ImportReport, import_register
from storage.settings import get_settings
from tests import register_samples as samples

AUDIT_KEY = "9c1e5a7f3b2d8e4a6c0f1b9d7e3a5c2f"
TOKEN_SECRET = "3e7b1d9f5a2c8e4b6d0f3a9c7e1b5d2f"


def run_import(factory: sessionmaker[Session], register: str, path: Path, file_format: str = "csv",
               **options: object) -> ImportReport:
    with path.open("rb") as stream:
        return import_register(factory, register=register, stream=stream, file_name=path.name,
                               file_format=file_format, actor="tester", **options)  # type: ignore[arg-type]


def count(factory: sessionmaker[Session], table: type[persons.Person] | type[vehicles.Vehicle]) -> int:
    with factory() as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def lines_of(report: ImportReport) -> list[int]:
    return [rejection.line for rejection in report.rejections]


def test_ten_bad_rows_among_ten_thousand_are_reported_and_the_rest_kept(factory: sessionmaker[Session],
                                                                      tmp_path: Path) -> None:
    bad = {index * 997 + 5: kind for index, kind in enumerate(range(10))}
    path = samples.persons_csv(tmp_path / "persons.csv", 10_000, bad=bad)
    report = run_import(factory, "persons", path)
    assert report.counts() == {"rows": 10_000, "added": 9_990, "updated": 0, "unchanged": 0, "rejected": 10}
    assert lines_of(report) == [index + 2 for index in sorted(bad)]  # the header is line 1
    for rejection, (_changes, reason) in zip(report.rejections, samples.BAD_PERSONS, strict=True):
        assert reason in rejection.reason
    assert count(factory, persons.Person) == 9_990
    if factory.kw["bind"].dialect.name == "postgresql":  # planned for its new size: statistics refreshed
        with factory() as session:
            assert session.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'persons'")) == 9_990
    again = run_import(factory, "persons", path)
    assert again.counts() == {"rows": 10_000, "added": 0, "updated": 0, "unchanged": 9_990, "rejected": 10}
    assert count(factory, persons.Person) == 9_990


def test_a_changed_row_updates_and_a_new_status_goes_to_the_history(factory: sessionmaker[Session],
                                                                     tmp_path: Path) -> None:
    rows = list(samples.vehicle_rows(120))
    first = samples.write_csv(tmp_path / "v1.csv", iter(rows), fields=vehicles.VEHICLE_FIELDS)
    report = run_import(factory, "vehicles", first, batch_rows=50)
    assert (report.added, report.rejected) == (120, 0)
    rows[3] = {**rows[3], "colour": "green"}
    rows[7] = {**rows[7], "status": "none", "status_authority": "Police Gent", "status_date": "2026-02-01"}
    rows.append(samples.vehicle(500))
    second = samples.write_csv(tmp_path / "v2.csv", iter(rows), fields=vehicles.VEHICLE_FIELDS)
    report = run_import(factory, "vehicles", second, batch_rows=50)
    assert report.counts() == {"rows": 121, "added": 1, "updated": 2, "unchanged": 118, "rejected": 0}
    with factory() as session:
        [green] = vehicles.vehicles_by_plate(session, plate=rows[3]["plate"])
        assert green.colour == "green"
        [recovered] = vehicles.vehicles_by_plate(session, plate=rows[7]["plate"], country="BE")
        assert [(h.status, h.authority) for h in vehicles.status_history(session, vehicle_id=recovered.id)] == [
            ("stolen", "Police Bruxelles"), ("none", "Police Gent")]
        assert all(h.recorded_by == "import tester"
                   for h in vehicles.status_history(session, vehicle_id=recovered.id))


def test_json_lines_are_imported_and_bad_lines_reported(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = samples.write_jsonl(tmp_path / "persons.jsonl", samples.person_rows(30))
    with path.open("a", encoding="utf-8") as out:
        out.write("\n")  # a blank line (31) is skipped
        out.write('{"national_number": 85073003328\n')  # 32: not JSON
        out.write('["a", "list"]\n')  # 33
        out.write(json.dumps({**samples.person(40), "national_number": 85073003328}) + "\n")  # 34: a number
        out.write(json.dumps({**samples.person(41), "surname": "x"}) + "\n")  # 35: an unknown field
        out.write(json.dumps({**samples.person(42), "given_names": None}) + "\n")  # 36: null is empty: kept
    report = run_import(factory, "persons", path, file_format="jsonl")
    assert report.counts() == {"rows": 35, "added": 31, "updated": 0, "unchanged": 0, "rejected": 4}
    assert [(r.line, r.reason.split(":")[0]) for r in report.rejections] == [
        (32, "not valid JSON"), (33, "not a JSON object"), (34, "field(s) national_number must be strings (or null)"),
        (35, "unknown field(s) 'surname'")]
    assert run_import(factory, "persons", path, file_format="jsonl").unchanged == 31


@pytest.mark.parametrize(("header", "reason"), [
    ("national_number,surname,given_names", "unknown column(s) 'surname'"),
    ("national_number,given_names", "missing column(s) family_name"),
    ("national_number,family_name,Family_Name", "family_name appear more than once"),
    ("", "the file is empty"),
])
def test_a_wrong_header_refuses_the_file_and_is_audited(factory: sessionmaker[Session], tmp_path: Path,
                                                        header: str, reason: str) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text(f"{header}\n85073003328,Peeters,Jan\n" if header else "", encoding="utf-8")
    with pytest.raises(ImportFileError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        run_import(factory, "persons", path)
    assert count(factory, persons.Person) == 0
    with factory() as session:
        [entry] = audit.query(session, actor="tester")
    assert (entry.outcome, entry.resource) == ("error", "register import persons")
    assert reason in entry.detail["reason"] and entry.detail["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_hostile_lines_are_reported_and_never_stop_the_import(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "hostile.csv"
    good = [samples.person(index) for index in range(8)]
    formula = "=cmd|' /C calc'!A0"
    with path.open("wb") as out:
        out.write(b"\xef\xbb\xbfNational_Number , family_name,given_names,date_of_birth,nationality\r\n")  # 1: BOM
        out.write(",".join(good[0].values()).encode() + b"\r\n")  # 2
        out.write(b'"' + b"A" * (10 * 1024 * 1024) + b'",x,y,,\r\n')  # 3: a 10 MB line
        out.write(",".join(good[1].values()).encode() + b"\r\n")  # 4
        out.write(good[2]["national_number"].encode() + b",Pe\xffters,Jan,,\r\n")  # 5: not UTF-8
        out.write(f'{good[3]["national_number"]},"{formula}",Jan,,BE\r\n'.encode())  # 6: a formula, kept as text
        out.write(f'{good[4]["national_number"]},Maes\r\n'.encode())  # 7: too few fields
        out.write(f'{good[5]["national_number"]},Ma\x00es,Jan,,BE\r\n'.encode())  # 8: a NUL byte
        out.write(f'{good[0]["national_number"]},Other,Jan,,BE\r\n'.encode())  # 9: the key of line 2 again
        out.write(f'"{good[6]["national_number"]}","Van\r\nDamme",Jan,,BE\r\n'.encode())  # 10-11: a newline in a name
        out.write(",".join(good[7].values()).encode() + b"\r\n")  # 12
    report = run_import(factory, "persons", path, batch_rows=3)
    assert (report.added, report.rejected) == (4, 6)
    reasons = {rejection.line: rejection.reason for rejection in report.rejections}
    assert reasons[3] == f"line longer than {MAX_LINE_BYTES} bytes"
    assert reasons[5].startswith("not UTF-8 text (byte 0xff")
    assert reasons[7] == "2 fields where the header has 5"
    assert "NUL" in reasons[8] or "control characters" in reasons[8]
    assert reasons[9].startswith("the same key as line 2")
    assert reasons[10] == "family_name contains control characters"
    with factory() as session:
        stored = persons.get_person(session, national_number=good[3]["national_number"])
        assert stored is not None and stored.family_name == formula
        kept = persons.get_person(session, national_number=good[0]["national_number"])
        assert kept is not None and kept.family_name == good[0]["family_name"]
    assert report.bytes_read == path.stat().st_size


def test_a_header_that_is_not_utf8_refuses_the_file(factory: sessionmaker[Session], tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("national_number,family_name,given_names,pr\xe9nom\n".encode("latin-1"))
    with pytest.raises(ImportFileError, match=r"the header cannot be read \(line 1: not UTF-8"):
        run_import(factory, "persons", path)


def test_a_key_twice_in_a_file_is_kept_from_its_first_line(factory: sessionmaker[Session], tmp_path: Path) -> None:
    rows = [*samples.vehicle_rows(5), {**samples.vehicle(1), "plate": "1aaa001", "colour": "pink"},
            *samples.vehicle_rows(3, start=5), {**samples.vehicle(1), "plate": "1 AAA 001"},
            {**samples.vehicle(1), "country": "NL"}]
    path = samples.write_csv(tmp_path / "dupes.csv", iter(rows), fields=vehicles.VEHICLE_FIELDS)
    report = run_import(factory, "vehicles", path, batch_rows=4)
    assert report.counts() == {"rows": 11, "added": 9, "updated": 0, "unchanged": 0, "rejected": 2}
    assert [(r.line, r.reason) for r in report.rejections] == [
        (7, "the same key as line 3 (kept from there): BE:1AAA001"),
        (11, "the same key as line 3 (kept from there): BE:1AAA001")]
    with factory() as session:
        [kept] = vehicles.vehicles_by_plate(session, plate="1-AAA-001", country="BE")
        assert (kept.plate, kept.colour) == (samples.vehicle(1)["plate"], samples.vehicle(1)["colour"])


def test_the_import_is_audited_once_with_the_file_and_its_counts(factory: sessionmaker[Session],
                                                                 tmp_path: Path) -> None:
    path = samples.persons_csv(tmp_path / "audited.csv", 2_500, bad={7: 0})
    seen: list[ImportProgress] = []
    report = run_import(factory, "persons", path, progress=seen.append, roles=["administrator"],
                        total_bytes=path.stat().st_size)
    with factory() as session:
        [entry] = audit.query(session, actor="tester")
    assert entry.id == report.audit_id
    assert (entry.action, entry.resource, entry.outcome, entry.actor_roles) == (
        "collection", "register import persons", "ok", ["administrator"])
    assert entry.resource_id == hashlib.sha256(path.read_bytes()).hexdigest() == report.sha256
    assert {name: entry.detail[name] for name in ("file_name", "format", "rows", "added", "rejected")} == {
        "file_name": "audited.csv", "format": "csv", "rows": 2_500, "added": 2_499, "rejected": 1}
    assert entry.detail["first_rejected_lines"] == [9]
    assert [p.rows for p in seen] == [1_001, 2_001, 2_500]  # records read when a batch of 1,000 good ones is full
    assert seen[-1].bytes_read == seen[-1].total_bytes == path.stat().st_size


def _peak_memory(factory: sessionmaker[Session], path: Path) -> int:
    tracemalloc.start()
    try:
        report = run_import(factory, "vehicles", path)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.rejected == 0 and report.added > 0
    return peak


def test_memory_is_one_batch_whatever_the_file_size(tmp_path: Path) -> None:
    """200,000 rows take no more memory than 20,000 (one batch), far less than the file. On SQLite only: the
    reading, checking and batching are the same code for both databases, and tracing every allocation for
    200,000 rows through PostgreSQL's driver takes minutes."""
    engine = make_engine(f"sqlite:///{tmp_path / 'memory.db'}")
    migrate(engine)
    factory = session_factory(engine, chain_key=AUDIT_KEY.encode())
    try:
        small = _peak_memory(factory, samples.vehicles_csv(tmp_path / "small.csv", 20_000))
        path = samples.vehicles_csv(tmp_path / "big.csv", 200_000, start=20_000)
        big = _peak_memory(factory, path)
    finally:
        engine.dispose()
    size = path.stat().st_size
    assert size > 9_000_000 and big < size / 2 and big < 1.5 * small, (size, small, big)


# --- the CLI --------------------------------------------------------------------------------------------------


@pytest.fixture
def store(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[sessionmaker[Session]]:
    """The CLI's settings from the environment; sessions on its record store."""
    for name, value in {"LOCARD_DATABASE_URL": database_url, "LOCARD_HOME": str(tmp_path / "home"),
                        "LOCARD_AUDIT_KEY": AUDIT_KEY, "LOCARD_TOKEN_SECRET": TOKEN_SECRET,
                        "LOCARD_ENVIRONMENT": "test"}.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    engine = make_engine(database_url)
    yield session_factory(engine, chain_key=AUDIT_KEY.encode())
    engine.dispose()
    get_settings.cache_clear()


def test_locard_import_prints_counts_and_rejections(store: sessionmaker[Session], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    path = samples.persons_csv(tmp_path / "people.csv", 300, bad={10: 0, 20: 4, 30: 5})
    assert cli.main(["import", "persons", str(path), "--show", "2"]) == 0
    out = capsys.readouterr().out
    assert "persons: 300 record(s) read from people.csv: 297 added, 0 updated, 0 unchanged, 3 rejected" in out
    assert "  line 12: national_number" in out and "  line 22: date_of_birth '31/02/1990'" in out
    assert "  ... and 1 more" in out
    assert cli.main(["import", "persons", str(path)]) == 0
    assert "0 added, 0 updated, 297 unchanged, 3 rejected" in capsys.readouterr().out
    with store() as session:
        entries = audit.query(session, actor=f"cli:{getpass.getuser()}")
    assert [(e.resource, e.detail["added"]) for e in entries] == [("register import persons", 297),
                                                                  ("register import persons", 0)]


def test_locard_import_exit_statuses(store: sessionmaker[Session], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    jsonl = samples.write_jsonl(tmp_path / "cars.ndjson", samples.vehicle_rows(5))
    assert cli.main(["import", "vehicles", str(jsonl)]) == 0
    assert "5 added" in capsys.readouterr().out
    refused = tmp_path / "cars.csv"
    refused.write_text("plate,land\n1-ABC-234,BE\n", encoding="utf-8")
    assert cli.main(["import", "vehicles", str(refused)]) == 1
    assert "error: cars.csv was not imported: unknown column(s) 'land'" in capsys.readouterr().out
    all_bad = tmp_path / "all-bad.csv"
    all_bad.write_text("plate,country\n---,BE\n1-ABC-234,Belgium\n", encoding="utf-8")
    assert cli.main(["import", "vehicles", str(all_bad)]) == 1
    assert "line 2: plate '---' has no letters or digits" in capsys.readouterr().out
    unknown = tmp_path / "cars.txt"
    unknown.write_text("plate,country\n", encoding="utf-8")
    assert cli.main(["import", "vehicles", str(unknown)]) == 2
    assert cli.main(["import", "vehicles", str(unknown), "--format", "csv"]) == 0
    assert cli.main(["import", "vehicles", str(tmp_path / "missing.csv")]) == 2
    with store() as session:
        assert vehicles.vehicles_by_plate(session, plate="1ABC234") == []
        assert len(vehicles.vehicles_by_plate(session, plate=samples.plate(4))) == 1
