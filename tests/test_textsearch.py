"""Page text recorded with an analysis run is searchable (SQLite FTS5 and PostgreSQL full-text), accents folded."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage import analysis, jobs, matching, records, textsearch
from storage.db import transaction
from storage.messages import HeldTemplate, HeldText, ReportedFinding, RunOutcome
from storage.tables import Evidence, EvidenceText, FingerprintTemplate

PAGES = {
    1: ("Proces-verbaal van verhoor. De verdachte verklaarde dat hij op 12 januari 2024 in Liège was, "
        "bij de garage van zijn broer.", "nld"),
    2: ("Procès-verbal d'audition. Le témoin a vu une voiture grise près de la gare de Namur à 22 h.", "fra"),
    3: ("Vernehmungsprotokoll. Der Zeuge sah einen grauen Wagen an der Straße nach Aachen.", "deu"),
}


def _evidence(session: Session, reference: str) -> Evidence:
    case = records.create_case(session, reference=reference, title="t", description="", created_by="test")
    evidence = Evidence(case_id=case.id, sha256=reference.ljust(64, "0")[:64], size=1, media_type="application/pdf",
                        bucket="b", object_key=f"k/{reference}", source="api", received_by="test")
    session.add(evidence)
    session.flush()
    return evidence


def _record(factory: sessionmaker[Session], evidence_id: str, findings: list[ReportedFinding]) -> None:
    with transaction(factory) as session:
        jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence_id}:ocr:{uuid.uuid4()}",
                     evidence_id=evidence_id, analyzer="ocr")
    [job] = jobs.claim(factory, kinds=["analysis"], owner="w", lease_seconds=30, limit=1)
    with transaction(factory) as session:
        run = analysis.record_outcome(session, job_id=job.id, owner="w", attempt=1, outcome=RunOutcome(
            analyzer="ocr", analyzer_version="1", status="succeeded", findings=findings))
        assert run is not None


def _page_findings(pages: dict[int, tuple[str, str]]) -> list[ReportedFinding]:
    return [ReportedFinding(kind="text.page", data={"page": page, "language": language},
                            held=HeldText(text=content, page=page, language=language, engine="tesseract"))
            for page, (content, language) in pages.items()]


def test_page_text_is_searchable_with_accents_folded(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        evidence_id = _evidence(session, "2026-T1").id
        other_id = _evidence(session, "2026-T2").id
    _record(factory, evidence_id, _page_findings(PAGES))
    _record(factory, other_id, _page_findings({1: ("Een grijze wagen reed weg richting Liege.", "nld")}))
    with factory() as session:
        hits = textsearch.search(session, query="liege")
        assert {(hit.evidence_id, hit.page) for hit in hits} == {(evidence_id, 1), (other_id, 1)}
        assert "Liège" in next(hit.snippet for hit in hits if hit.evidence_id == evidence_id)
        assert [(h.page, h.language) for h in textsearch.search(session, query="TÉMOIN voiture")] == [(2, "fra")]
        assert [h.page for h in textsearch.search(session, query="strasse")] == []  # ß is not "ss"
        assert [h.page for h in textsearch.search(session, query="Straße Aachen")] == [3]
        assert textsearch.search(session, query="grauen Wagen", case_ids=[other_id]) == []
        assert [h.case_reference for h in textsearch.search(session, query='"grijze wagen"')] == ["2026-T2"]
        assert textsearch.search(session, query='"wagen grijze"') == []
        assert textsearch.search(session, query="   ") == []
        assert textsearch.search(session, query='AND OR NOT * ( " NEAR') == []  # query syntax is not interpreted


def test_a_new_run_replaces_the_indexed_text_and_templates(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        evidence_id = _evidence(session, "2026-T3").id
    template = ReportedFinding(kind="fingerprint.template", data={"minutiae": 3},
                               held=HeldTemplate(iso=b"FMR\x00 20\x00", minutiae=3, nfiq2=40))
    _record(factory, evidence_id, [*_page_findings({1: ("oude tekst", "nld")}), template])
    _record(factory, evidence_id, _page_findings({1: ("nieuwe tekst", "nld"), 2: ("tweede blad", "nld")}))
    with factory() as session:
        assert textsearch.search(session, query="oude") == []
        assert [h.page for h in textsearch.search(session, query="nieuwe")] == [1]
        assert session.scalar(select(func.count()).select_from(EvidenceText)) == 2
        assert session.scalar(select(func.count()).select_from(FingerprintTemplate)) == 0
        assert matching.template_of(session, evidence_id=evidence_id) is None
        # What was held went to its own tables: the findings keep only their data.
        assert sorted((f.data["page"], f.data["language"], set(f.data))
                      for f in records.list_findings(session, evidence_id=evidence_id)) == [
            (1, "nld", {"page", "language"}), (2, "nld", {"page", "language"})]


def test_fold_keeps_lengths_so_snippets_show_the_original() -> None:
    for value in ("Liège", "Straße", "ŒUVRE", "ﬁn", "Ærø", "naïve café"):
        assert len(textsearch.fold(value)) == len(value)
    assert textsearch.fold("Liège Élodie") == "liege elodie"
