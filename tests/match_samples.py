"""Record-store rows for matching tests: evidence items with recorded findings, and register vehicles."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import vehicles
from storage.records import create_case
from storage.tables import AnalysisRun, Case, Evidence, Finding, utcnow
from workers.plate_registration import read_registration


def item(session: Session, case_reference: str) -> Evidence:
    """A new evidence item in the case `case_reference` (made when new)."""
    case = session.scalar(select(Case).where(Case.reference == case_reference))
    if case is None:
        case = create_case(session, reference=case_reference, title="t", description="", created_by="t")
    evidence = Evidence(case_id=case.id, sha256=uuid.uuid4().hex * 2, size=1, media_type="image/jpeg", bucket="b",
                        object_key=f"k/{uuid.uuid4().hex}", source="api", received_by="t")
    session.add(evidence)
    session.flush()
    return evidence


def record(session: Session, evidence: Evidence, analyzer: str, version: str,
           findings: list[tuple[str, str | None, dict[str, Any]]]) -> list[str]:
    """Record a succeeded run of `analyzer` on the item with these (kind, label, data) findings; their ids."""
    run = AnalysisRun(evidence_id=evidence.id, analyzer=analyzer, analyzer_version=version, status="succeeded",
                      finished_at=utcnow())
    session.add(run)
    session.flush()
    ids = []
    for kind, label, data in findings:
        finding = Finding(evidence_id=evidence.id, case_id=evidence.case_id, run_id=run.id, analyzer=analyzer,
                          kind=kind, label=label, confidence=0.8, data=data)
        session.add(finding)
        session.flush()
        ids.append(finding.id)
    return ids


def plate_data(raw: str, *, matchable: bool = True, alternatives: bool = True) -> dict[str, Any]:
    """The data of a plates finding that read `raw`, as the plates analyzer writes it."""
    reading = read_registration(raw).as_dict()
    return {"text": reading["text_normalised"], "text_read": raw, "country": reading["country"],
            "country_source": reading["country_source"], "candidate_countries": reading["candidate_countries"],
            "format": reading["format_name"], "alternatives": reading["alternatives"] if alternatives else [],
            "matchable": matchable}


def plate(raw: str, *, matchable: bool = True, alternatives: bool = True) -> tuple[str, str | None, dict[str, Any]]:
    kind = "plates.plate" if matchable else "plates.candidate"
    return kind, raw, plate_data(raw, matchable=matchable, alternatives=alternatives)


def entity(kind: str, value: str, raw: str | None = None) -> tuple[str, str | None, dict[str, Any]]:
    """An `entity.<kind>` finding as the entities analyzer writes it."""
    return f"entity.{kind}", value, {"kind": kind, "value": value, "raw": raw or value, "page": 1, "details": {}}


def vehicle(session: Session, plate_text: str, *, status: str = "none", country: str = "BE") -> str:
    """A register vehicle; its id."""
    fields = {"plate": plate_text, "country": country, "make": "Volvo", "model": "V70", "colour": "grey",
              "status": status}
    if status != "none":
        fields |= {"status_authority": "Police Bruxelles", "status_date": "2026-01-15"}
    row = vehicles.parse_vehicle(fields)
    return vehicles.put_vehicle(session, row=row, recorded_by="t")[0].id
