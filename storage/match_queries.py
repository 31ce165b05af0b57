"""Reading matches and match keys for the API (keyword-only access): pages of matches per item or case with
filters, one match, and the findings of the cases a caller may see that hold given keys (the plate and national
number searches).

`storage.matches` writes matches and keys (the cross-matcher's side); this module only reads them. A finding is
found by the keys the cross-matcher indexed for it (`storage.matches.MatchKey`, one indexed lookup whatever the
number of findings), so an item is searchable once it has been cross-matched, which happens by itself when its
analysis ends.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from storage.matches import FindingSide, Match, MatchKey
from storage.tables import AnalysisRun, Case, Finding


@dataclass(frozen=True)
class KeyedFinding(FindingSide):
    """A finding found by one or more of the keys looked up: which ones, and whether it read one (`exact`) or had
    it only among its reader's alternatives."""

    keys: dict[str, bool]  # key -> exact


def list_matches(session: Session, *, evidence_id: str | None = None, case_id: str | None = None,
                 modality: str | None = None, status: str | None = None, include_superseded: bool = False,
                 offset: int = 0, limit: int = 100) -> Sequence[Match]:
    """Matches with the item or case on either side, highest score first (then oldest, then by id: a stable
    order to page through)."""
    query = select(Match)
    if evidence_id is not None:
        query = query.where(or_(Match.evidence_id == evidence_id, Match.target_evidence_id == evidence_id))
    if case_id is not None:
        query = query.where(or_(Match.case_id == case_id, Match.target_case_id == case_id))
    if modality is not None:
        query = query.where(Match.modality == modality)
    if status is not None:
        query = query.where(Match.status == status)
    if not include_superseded:
        query = query.where(Match.superseded_at.is_(None))
    return session.scalars(query.order_by(Match.score.desc(), Match.created_at, Match.id)
                           .offset(offset).limit(limit)).all()


def get_match(session: Session, *, match_id: str) -> Match | None:
    return session.get(Match, match_id)


def case_references(session: Session, *, case_ids: Collection[str]) -> dict[str, str]:
    """The references of these cases, by id."""
    wanted = sorted(set(case_ids))
    if not wanted:
        return {}
    return dict(session.execute(select(Case.id, Case.reference).where(Case.id.in_(wanted))).tuples().all())


@dataclass(frozen=True)
class FindingShown:
    """What a match listing shows of a finding on one of its sides: its kind and its derived files (crops)."""

    kind: str
    artifacts: list[dict[str, Any]]  # {"index", "name", "content_type"} of each of the finding's artifacts


def findings_shown(session: Session, *, finding_ids: Collection[str]) -> dict[str, FindingShown]:
    """Kind and artifacts of those of these findings that still exist (re-analysis replaces findings), by id."""
    wanted = sorted(set(finding_ids))
    if not wanted:
        return {}
    shown = {}
    for finding_id, kind, data in session.execute(select(Finding.id, Finding.kind, Finding.data)
                                                  .where(Finding.id.in_(wanted))).tuples():
        artifacts = data.get("artifacts") if isinstance(data, dict) else None
        shown[finding_id] = FindingShown(kind, [
            {"index": index, "name": str(artifact.get("name", "")), "content_type": artifact.get("content_type")}
            for index, artifact in enumerate(artifacts if isinstance(artifacts, list) else [])
            if isinstance(artifact, dict)])
    return shown


def findings_with_keys(session: Session, *, modality: str, keys: Collection[str], case_ids: Collection[str] | None,
                       offset: int = 0, limit: int = 100) -> list[KeyedFinding]:
    """Findings holding one of `keys` (as their reading or an alternative) in `case_ids` (None: every case), each
    once, by case then item then id; a page of them."""
    wanted = sorted({key for key in keys if key})
    if not wanted or (case_ids is not None and not case_ids):
        return []
    keyed = select(MatchKey.finding_id).where(MatchKey.modality == modality, MatchKey.key.in_(wanted))
    query = (select(Finding, AnalysisRun.analyzer_version).join(AnalysisRun, AnalysisRun.id == Finding.run_id)
             .where(Finding.id.in_(keyed)))
    if case_ids is not None:
        query = query.where(Finding.case_id.in_(sorted(set(case_ids))))
    rows = session.execute(query.order_by(Finding.case_id, Finding.evidence_id, Finding.id)
                           .offset(offset).limit(limit)).tuples().all()
    held: dict[str, dict[str, bool]] = {}
    if rows:
        for finding_id, key, exact in session.execute(
                select(MatchKey.finding_id, MatchKey.key, MatchKey.exact)
                .where(MatchKey.modality == modality, MatchKey.key.in_(wanted),
                       MatchKey.finding_id.in_([finding.id for finding, _ in rows]))
                .order_by(MatchKey.id)).tuples():
            found = held.setdefault(finding_id, {})
            found[key] = found.get(key, False) or exact
    return [KeyedFinding(**vars(FindingSide.of(f, version)), keys=held.get(f.id, {})) for f, version in rows]
