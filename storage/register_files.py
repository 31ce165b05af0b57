"""Reading register files line by line: CSV (with a header) and JSON Lines, for `storage.register_import`.

A line longer than MAX_LINE_BYTES is skipped without being held, one that is not UTF-8 is skipped too; both are
reported with their line numbers. Every byte is hashed (SHA-256) and counted as it is read. A file that cannot be
read at all (no header, a header with unknown, missing or repeated columns, a header that is not UTF-8) raises
ImportFileError.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

MAX_LINE_BYTES = 64 * 1024
SKIP_CHUNK = 64 * 1024


class ImportFileError(ValueError):
    """A file that cannot be imported at all (the message says why); nothing was written."""


@dataclass(frozen=True)
class Rejection:
    """One record that was not kept: its (first) line in the file and why."""

    line: int
    reason: str


class Lines:
    """The file's lines as text, read one at a time; hashes and counts every byte. A line that is too long or not
    UTF-8 is skipped and kept in `skipped` for the caller to report."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.bytes_read = 0
        self.line = 0
        self.first: int | None = None  # the first line handed out since the caller last reset it
        self.skipped: list[Rejection] = []

    def __iter__(self) -> Iterator[str]:
        return self

    def read_raw(self, limit: int) -> bytes:
        data = self.stream.readline(limit)
        self.digest.update(data)
        self.bytes_read += len(data)
        return data

    def __next__(self) -> str:
        while True:
            raw = self.read_raw(MAX_LINE_BYTES + 1)
            if not raw:
                raise StopIteration
            self.line += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):
                    raw = self.read_raw(SKIP_CHUNK)
                self.skipped.append(Rejection(self.line, f"line longer than {MAX_LINE_BYTES} bytes"))
                continue
            try:
                decoded = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.skipped.append(Rejection(self.line, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at "
                                                         f"byte {exc.start + 1} of the line)"))
                continue
            if self.line == 1:
                decoded = decoded.removeprefix("\ufeff")
            if self.first is None:
                self.first = self.line
            return decoded


def _header(names: Sequence[str], register: str, fields: tuple[str, ...],
            required: tuple[str, ...]) -> list[str]:
    header = [name.strip().lower() for name in names]
    unknown = [name for name in header if name not in fields]
    if unknown:
        raise ImportFileError(f"unknown column(s) {', '.join(repr(n) for n in unknown)} in the header; the "
                              f"{register} register takes {', '.join(fields)}")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ImportFileError(f"column(s) {', '.join(repeated)} appear more than once in the header")
    missing = [name for name in required if name not in header]
    if missing:
        raise ImportFileError(f"missing column(s) {', '.join(missing)}; the {register} register needs "
                              f"{', '.join(required)}")
    return header


def csv_records(lines: Lines, *, register: str, fields: tuple[str, ...],
                required: tuple[str, ...]) -> Iterator[tuple[int, Mapping[str, str] | str]]:
    """(line, fields) per CSV record, or (line, reason) for one that cannot be read."""
    reader = csv.reader(lines, strict=True)
    header: list[str] | None = None
    while True:
        lines.first = None
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            if header is None:
                raise ImportFileError(f"the header cannot be read: {exc}") from None
            yield lines.first or lines.line, f"not readable as CSV: {exc}"
            continue
        if header is None:
            if lines.skipped:
                raise ImportFileError(f"the header cannot be read (line {lines.skipped[0].line}: "
                                      f"{lines.skipped[0].reason})")
            header = _header(record, register, fields, required)
            continue
        if not record or record == [""]:
            continue
        line = lines.first or lines.line
        if len(record) != len(header):
            yield line, f"{len(record)} fields where the header has {len(header)}"
            continue
        yield line, dict(zip(header, record, strict=True))
    if header is None:
        if lines.skipped:
            raise ImportFileError(f"the header cannot be read (line {lines.skipped[0].line}: "
                                  f"{lines.skipped[0].reason})")
        raise ImportFileError("the file is empty: no header line")


def jsonl_records(lines: Lines, *, fields: tuple[str, ...]) -> Iterator[tuple[int, Mapping[str, str | None] | str]]:
    """(line, fields) per JSON Lines record, or (line, reason) for one that cannot be read."""
    for content in lines:
        if not content.strip():
            continue
        try:
            record = json.loads(content)
        except (ValueError, RecursionError) as exc:
            yield lines.line, f"not valid JSON: {exc}"
            continue
        if not isinstance(record, dict):
            yield lines.line, "not a JSON object"
            continue
        unknown = sorted(name for name in record if name not in fields)
        if unknown:
            yield lines.line, f"unknown field(s) {', '.join(repr(name[:40]) for name in unknown[:5])}"
            continue
        wrong = sorted(name for name, value in record.items() if value is not None and not isinstance(value, str))
        if wrong:
            yield lines.line, f"field(s) {', '.join(wrong)} must be strings (or null)"
            continue
        yield lines.line, record


def drain(lines: Lines) -> None:
    """Read the rest of a file that was not imported, so that the audit entry names the whole file's SHA-256."""
    try:
        while lines.read_raw(SKIP_CHUNK):
            pass
    except OSError:
        pass
