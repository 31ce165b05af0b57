"""The ocr analyzer without Ray: PDF text layers and scans, photos, page limits, and PDFs it cannot open."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from models.ocr import character_error_rate
from storage.messages import HeldText
from tests.media_samples import bus_jpg_path, text_layer_pdf
from tests.text_samples import render_page, sign_on_photo
from workers.analyzers import ocr
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, EvidenceFile, FindingData
from workers.analyzers.entities import EntitiesAnalyzer

LIMITS = AnalysisLimits()


@pytest.fixture(scope="module")
def analyzer() -> ocr.OcrAnalyzer:
    loaded = ocr.OcrAnalyzer()
    loaded.load()
    return loaded


def _item(tmp_path: Path, name: str, data: bytes, media_type: str, kind: str | None = None) -> EvidenceFile:
    path = tmp_path / name
    path.write_bytes(data)
    return EvidenceFile(evidence_id=name, path=path, sha256="", size=len(data), media_type=media_type,
                        declared_kind=kind)


def _pages(findings: list[FindingData]) -> list[dict]:
    return sorted((f.data for f in findings if f.kind == ocr.PAGE_KIND), key=lambda page: page["page"])


def test_text_layer_pages_and_their_entities(analyzer: ocr.OcrAnalyzer, tmp_path: Path) -> None:
    lines = ["Procès-verbal n° 2026/118, Namur, le 3 mars 2023.", "Contact : agent.dubois@example.be"]
    findings = analyzer.analyze(_item(tmp_path, "pv.pdf", text_layer_pdf([lines, ["Deuxième page."], []]),
                                      "application/pdf"), LIMITS)
    first, second, third = _pages(findings)
    assert first["text"].splitlines() == lines and first["engine"] == "pdf-text-layer"
    held = {f.data["page"]: f.held for f in findings if f.kind == ocr.PAGE_KIND}
    assert first["language"] == "fra" and held[1] == HeldText(text=first["text"], page=1, language="fra",
                                                               engine="pdf-text-layer")
    assert [line["text"] for line in first["lines"]] == lines and first["lines"][0]["box"][1] < 100  # from the top
    assert second["text"] == "Deuxième page."
    assert third["engine"] == "tesseract" and third["text"] == "" and held[3] is None  # empty page: OCR'd, not held
    [summary] = [f.data for f in findings if f.kind == ocr.DOCUMENT_KIND]
    assert (summary["pages"], summary["pages_with_text"], summary["pages_skipped"]) == (3, 2, 0)

    upstream = [finding.as_upstream() for finding in findings]
    item = EvidenceFile(evidence_id="pv", path=tmp_path / "pv.pdf", sha256="", size=1, media_type="application/pdf",
                        upstream={"ocr": upstream})
    entities = EntitiesAnalyzer().analyze(item, LIMITS)
    assert {(f.kind, f.label) for f in entities} == {("entity.date", "2023-03-03"),
                                                     ("entity.email", "agent.dubois@example.be")}
    email = next(f for f in entities if f.kind == "entity.email")
    assert email.data["page"] == 1 and email.data["line_box"] == first["lines"][1]["box"]
    with pytest.raises(AnalysisFailed, match="ocr analysis"):
        EntitiesAnalyzer().analyze(EvidenceFile(evidence_id="x", path=item.path, sha256="", size=1,
                                                media_type="application/pdf"), LIMITS)


def test_scanned_pdf_pages_are_read_and_the_page_limit_is_reported(analyzer: ocr.OcrAnalyzer, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    page = render_page("deu")
    buffer = io.BytesIO()
    scans = [Image.fromarray(page.image), Image.new("RGB", (620, 877), "white"), Image.new("RGB", (620, 877))]
    scans[0].save(buffer, "PDF", resolution=150.0, save_all=True, append_images=scans[1:])
    monkeypatch.setattr(ocr, "MAX_PAGES", 2)
    findings = analyzer.analyze(_item(tmp_path, "scan.pdf", buffer.getvalue(), "application/pdf"), LIMITS)
    read, blank = _pages(findings)
    assert read["engine"] == "tesseract" and read["language"] == "deu"
    assert character_error_rate(page.text, read["text"]) < 0.02
    assert blank["text"] == ""
    [summary] = [f.data for f in findings if f.kind == ocr.DOCUMENT_KIND]
    assert (summary["pages"], summary["pages_read"], summary["pages_skipped"]) == (3, 2, 1)


def test_pdfs_that_cannot_be_opened_fail_with_the_reason(analyzer: ocr.OcrAnalyzer, tmp_path: Path) -> None:
    plain = text_layer_pdf([["geheim"]])
    locked = plain.replace(b"trailer\n<< /Size 6 /Root 1 0 R >>", b"trailer\n<< /Size 6 /Root 1 0 R /Encrypt << "
                           b"/Filter /Standard /V 1 /R 2 /O <" + b"00" * 32 + b"> /U <" + b"11" * 32 + b"> /P -4 >> "
                           b"/ID [<0123456789abcdef0123456789abcdef> <0123456789abcdef0123456789abcdef>] >>")
    with pytest.raises(AnalysisFailed, match="encrypted"):
        analyzer.analyze(_item(tmp_path, "locked.pdf", locked, "application/pdf"), LIMITS)
    with pytest.raises(AnalysisFailed, match="cannot be opened"):
        analyzer.analyze(_item(tmp_path, "cut.pdf", plain[:200], "application/pdf"), LIMITS)


def test_photos_get_scene_text_and_documents_tesseract(analyzer: ocr.OcrAnalyzer, tmp_path: Path) -> None:
    photo = sign_on_photo(np.asarray(Image.open(bus_jpg_path()).convert("RGB")), "BAKKERIJ DE VRIES")
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG", quality=92)
    [page] = _pages(analyzer.analyze(_item(tmp_path, "street.jpg", buffer.getvalue(), "image/jpeg"), LIMITS))
    assert page["engine"] == "rapidocr" and "BAKKERIJ DE VRIES" in page["text"]
    document = render_page("nld")
    buffer = io.BytesIO()
    Image.fromarray(document.image).save(buffer, "PNG")
    [read] = _pages(analyzer.analyze(_item(tmp_path, "page.png", buffer.getvalue(), "image/png", "document"), LIMITS))
    assert read["engine"] == "tesseract" and character_error_rate(document.text, read["text"]) < 0.02
    [undeclared] = _pages(analyzer.analyze(_item(tmp_path, "page2.png", buffer.getvalue(), "image/png"), LIMITS))
    assert undeclared["engine"] == "tesseract"  # a page of text in a photo is read as a document
