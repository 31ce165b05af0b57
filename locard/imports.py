"""`locard import`: bulk import into the persons or the vehicle register, straight into the record store.

    locard import persons FILE [--format csv|jsonl] [--show N]
    locard import vehicles FILE [--format csv|jsonl] [--show N]

The format is taken from the file's extension (.csv; .jsonl, .ndjson) unless --format gives it. The file is
streamed (`storage.register_import`), with a progress bar on standard error when it is a terminal; then the
counts (added, updated, unchanged, rejected) and the first N rejected records with their line numbers are
printed. Importing the same file again changes nothing. The import is written to the audit log as done by
`cli:<operating-system user>`.

Exit status: 0 when the import ran (rejected records, if any, are listed: the good ones were kept); 1 when
nothing could be imported (the file was refused, e.g. its header, or every record was rejected); 2 for a
command-line error (no such file, unknown format).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from locard.stack import with_stack_identity
from locard.users import Say, operating_system_user
from storage.db import make_engine, migrate, session_factory
from storage.register_import import FORMATS, REGISTERS, ImportFileError, ImportProgress, ImportReport, import_register
from storage.settings import Settings

SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
DEFAULT_SHOWN = 20


def add_parser(sub: Any) -> None:
    """Add `import` to the CLI's subcommands (`sub` from `add_subparsers`)."""
    parser = sub.add_parser("import", help="bulk import into the persons or vehicle register (CSV, JSON Lines)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("register", choices=REGISTERS)
    parser.add_argument("file", type=Path)
    parser.add_argument("--format", dest="file_format", choices=FORMATS, default=None,
                        help="csv or jsonl (default: from the file's extension)")
    parser.add_argument("--show", type=int, default=DEFAULT_SHOWN, metavar="N",
                        help=f"list the first N rejected records (default {DEFAULT_SHOWN})")


def _progress_bar(total: int) -> tuple[Callable[[ImportProgress], None] | None, Callable[[], None]]:
    """A progress callback drawing a bar in bytes on a terminal's standard error, and its closer."""
    if not sys.stderr.isatty():
        return None, lambda: None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a convenience; the import runs without it
        return None, lambda: None
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="importing", file=sys.stderr)

    def update(progress: ImportProgress) -> None:
        bar.update(progress.bytes_read - bar.n)
        bar.set_postfix(rows=progress.rows)

    return update, bar.close


def _summary(report: ImportReport, shown: int) -> list[str]:
    lines = [f"{report.register}: {report.rows} record(s) read from {report.file_name}: {report.added} added, "
             f"{report.updated} updated, {report.unchanged} unchanged, {report.rejected} rejected",
             f"sha256 {report.sha256}; audit entry {report.audit_id}"]
    listed = report.rejections[:max(shown, 0)]
    if listed:
        lines.append("rejected:")
        lines.extend(f"  line {rejection.line}: {rejection.reason}" for rejection in listed)
    if report.rejected > len(listed):
        lines.append(f"  ... and {report.rejected - len(listed)} more")
    return lines


def run(args: argparse.Namespace, settings: Settings, say: Say) -> int:
    """Carry out `locard import`; see the module's exit statuses."""
    path: Path = args.file
    file_format = args.file_format or SUFFIXES.get(path.suffix.lower())
    if file_format is None:
        say(f"error: cannot tell the format of {path.name} from its extension; give --format csv or jsonl")
        return 2
    if not path.is_file():
        say(f"error: not a file: {path}")
        return 2
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)
        factory = session_factory(engine, chain_key=with_stack_identity(settings).chain_key)
        progress, close = _progress_bar(path.stat().st_size)
        try:
            with path.open("rb") as stream:
                report = import_register(factory, register=args.register, stream=stream, file_name=path.name,
                                         file_format=file_format, actor=f"cli:{operating_system_user()}",
                                         total_bytes=path.stat().st_size, progress=progress)
        except ImportFileError as exc:
            say(f"error: {path.name} was not imported: {exc}")
            return 1
        finally:
            close()
    finally:
        engine.dispose()
    for line in _summary(report, args.show):
        say(line)
    return 1 if report.rows and report.rejected == report.rows else 0
