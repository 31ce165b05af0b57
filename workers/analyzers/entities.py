"""Entities in text: Belgian national numbers, licence plates, phone numbers, IBANs, e-mail addresses, dates.

Runs after `ocr` (`requires`) on the text of every page it read, and reports each entity as a finding of kind
`entity.<kind>` whose label is the normalised value (what later matching links to the record stores), with
the page, the characters as read, and, for OCR'd pages, the box of the line it was found on. The rules and
their false-positive guards are in `workers.entities`. Without the `ocr` findings (its run failed) there is
no text to read: the run fails with that reason.

Scene text (PP-OCR on a photo, engine "rapidocr") is read only in its lines of at least
`models.scenetext.MIN_LINE_CONFIDENCE`: what PP-OCR half-read on a photo is no identifier to link cases by.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models.scenetext import MIN_LINE_CONFIDENCE
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, Analyzer, EvidenceFile, FindingData
from workers.analyzers.ocr import PAGE_KIND
from workers.analyzers.registry import register
from workers.entities import extract_entities

KINDS = ("national_number", "plate", "phone", "iban", "email", "date")


@register
class EntitiesAnalyzer(Analyzer):
    """Finds the identifiers investigators search for in every page of text that `ocr` read."""

    name = "entities"
    version = "1.1.0"  # 1.1: scene text only from its confident lines
    accepts = frozenset({"image/*", "application/pdf"})
    produces = frozenset(f"entity.{kind}" for kind in KINDS)
    requires = ("ocr",)
    num_cpus = 0.25

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        if "ocr" not in item.upstream:
            raise AnalysisFailed("no text to read: the ocr analysis of this item did not succeed")
        findings = []
        for page in item.upstream["ocr"]:
            if page.kind != PAGE_KIND:
                continue
            data = page.data
            text, lines = data.get("text") or "", data.get("lines") or []
            if data.get("engine") == "rapidocr":
                lines = [line for line in lines if float(line.get("confidence") or 0.0) >= MIN_LINE_CONFIDENCE]
                text = "\n".join(line.get("text") or "" for line in lines)
            if not text.strip():
                continue
            spans = _line_spans(text, lines)
            for entity in extract_entities(text, language=data.get("language")):
                box = _box_at(spans, entity.start)
                findings.append(FindingData(
                    kind=f"entity.{entity.kind}", label=entity.value, confidence=round(entity.confidence, 3),
                    data={**entity.to_dict(), "page": data.get("page"), "engine": data.get("engine"),
                          "line_box": box}))
        return findings


def _line_spans(text: str, lines: Sequence[dict[str, Any]]) -> list[tuple[int, int, list[float] | None]]:
    """Where each line's text lies in the page text, with its box."""
    spans = []
    cursor = 0
    for line in lines:
        content = line.get("text") or ""
        at = text.find(content, cursor) if content else -1
        if at < 0:
            continue
        spans.append((at, at + len(content), line.get("box")))
        cursor = at + len(content)
    return spans


def _box_at(spans: Sequence[tuple[int, int, list[float] | None]], offset: int) -> list[float] | None:
    for start, end, box in spans:
        if start <= offset < end:
            return box
    return None
