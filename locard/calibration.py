"""`locard report calibration`: how often examiners reject the matches of each matcher setting, as JSON.

    locard report calibration [--output FILE] [--modality plate|entity|face|fingerprint|image]

Per modality and threshold (the one in force when each match was made): the matches whose review stands
(`reviewed`), how many were confirmed and rejected, and the observed false-match rate (`rejected / reviewed`;
null before any review), read straight from the record store (`storage.reviews.calibration`). Counts only: nothing
of any case or person. Written to FILE, or to standard output.

Exit status: 0 when the report was written; 2 for a command-line error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from locard.stack import with_stack_identity
from locard.users import Say
from storage import reviews
from storage.db import make_engine, migrate, reading, session_factory
from storage.matches import MODALITIES
from storage.settings import Settings

REPORTS = ("calibration",)


def add_parser(sub: Any) -> None:
    """Add `report` to the CLI's subcommands (`sub` from `add_subparsers`)."""
    parser = sub.add_parser("report", help="reports from the record store (calibration of the matchers, as JSON)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report", choices=REPORTS)
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here (default: standard output)")
    parser.add_argument("--modality", choices=MODALITIES, default=None, help="only this modality")


def calibration_report(settings: Settings, *, modality: str | None = None) -> dict[str, Any]:
    """The calibration of every matcher setting (see the module), with when it was made."""
    engine = make_engine(settings.effective_database_url)
    try:
        migrate(engine)
        factory = session_factory(engine, chain_key=with_stack_identity(settings).chain_key)
        with reading(factory) as session:
            rows = reviews.calibration(session, modality=modality)
    finally:
        engine.dispose()
    return {"report": "calibration", "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "settings": [{"modality": row.modality, "threshold": row.threshold, "reviewed": row.reviewed,
                          "confirmed": row.confirmed, "rejected": row.rejected,
                          "false_match_rate": row.false_match_rate} for row in rows]}


def run(args: argparse.Namespace, settings: Settings, say: Say) -> int:
    """Carry out `locard report`; see the module's exit statuses."""
    output: Path | None = args.output
    if output is not None and not output.parent.is_dir():
        say(f"error: no such directory: {output.parent}")
        return 2
    text = json.dumps(calibration_report(settings, modality=args.modality), indent=2)
    if output is None:
        say(text)
    else:
        output.write_text(text + "\n", encoding="utf-8")
        say(f"calibration of {len(json.loads(text)['settings'])} matcher setting(s) written to {output}")
    return 0
