"""PDF pages whose text layer explains little of their ink are OCR'd: a scan with a stamped page number or a
scanner's partial text layer keeps its words; a text PDF is not OCR'd.

Ink explained by the layer, measured at 72 dpi: text PDFs 1.00, these scans 0.001-0.07 (threshold 0.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage import data as skimage_data

from models.ocr import OcrPage, character_error_rate
from storage.messages import HeldText
from tests.media_samples import text_layer_pdf
from tests.text_samples import TEXTS, LayerText, render_page, scan_noise, scan_pdf
from workers.analyzers import ocr
from workers.analyzers.base import AnalysisLimits, EvidenceFile, FindingData

LIMITS = AnalysisLimits()
STAMP = "Page 1 of 3"


@pytest.fixture(scope="module")
def analyzer() -> ocr.OcrAnalyzer:
    loaded = ocr.OcrAnalyzer()
    loaded.load()
    return loaded


def _read(analyzer: ocr.OcrAnalyzer, tmp_path: Path, pdf: bytes) -> FindingData:
    path = tmp_path / "scan.pdf"
    path.write_bytes(pdf)
    item = EvidenceFile(evidence_id="scan", path=path, sha256="", size=len(pdf), media_type="application/pdf")
    [page] = [finding for finding in analyzer.analyze(item, LIMITS) if finding.kind == ocr.PAGE_KIND]
    return page


def test_a_scan_with_a_stamped_page_number_is_read(analyzer: ocr.OcrAnalyzer, tmp_path: Path) -> None:
    rendered = render_page("fra")
    page = _read(analyzer, tmp_path, scan_pdf(scan_noise(rendered.image), [LayerText(STAMP, 480, 30)]))
    data = page.data
    assert data["engine"] == "tesseract" and data["passes"][0] == "text-layer"
    assert data["text_layer"]["ink_explained"] < 0.05
    text = data["text"]
    assert text.count(STAMP) == 1 and text.splitlines()[-1] == STAMP  # the layer's line, once, where it is printed
    body = "\n".join(line for line in text.splitlines() if line != STAMP)
    assert character_error_rate(rendered.text, body) < 0.02 and data["language"] == "fra"
    assert isinstance(page.held, HeldText) and page.held.text == text and page.held.engine == "tesseract"


def test_a_real_scan_with_a_stamp_is_read(analyzer: ocr.OcrAnalyzer, tmp_path: Path) -> None:
    grey = np.pad(skimage_data.page(), ((0, 40), (0, 0)), constant_values=255)  # room for the stamp below the text
    scan = np.ascontiguousarray(np.stack([grey] * 3, axis=-1))
    size = (grey.shape[1] * 0.72, grey.shape[0] * 0.72)  # scanned at 100 dpi
    page = _read(analyzer, tmp_path, scan_pdf(scan, [LayerText(STAMP, 200, 8, 8.0)], page_size=size))
    text = page.data["text"]
    assert "Region-based segmentation" in text and "unambiguously" in text and text.count(STAMP) == 1


def test_a_scanners_partial_layer_is_completed_without_duplicating_it(analyzer: ocr.OcrAnalyzer,
                                                                       tmp_path: Path) -> None:
    rendered = render_page("nld")
    title = TEXTS["nld"][0]
    # The scanner's invisible text over the title only (page 1240 x 1754 px drawn on 595 x 842 pt).
    layer = [LayerText(title, 90 * 595 / 1240, 842 - (90 + 40) * 842 / 1754, 21.0, invisible=True)]
    data = _read(analyzer, tmp_path, scan_pdf(rendered.image, layer)).data
    assert data["engine"] == "tesseract" and data["text_layer"]["ink_explained"] < 0.2
    lines = data["text"].splitlines()
    assert lines[0] == title and sum(title in line for line in lines) == 1
    assert character_error_rate(rendered.text, data["text"]) < 0.02


def test_a_text_pdf_is_not_ocrd(analyzer: ocr.OcrAnalyzer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ocr(pixels: np.ndarray) -> OcrPage:
        raise AssertionError("a page whose text layer explains its ink was OCR'd")

    monkeypatch.setattr(analyzer.tesseract, "read_page", no_ocr)
    lines = ["Proces-verbaal nr. 2026/118, Gent, 3 maart 2023."] * 30 + ["Annex 3"]
    data = _read(analyzer, tmp_path, text_layer_pdf([lines], font_size=9)).data
    assert data["engine"] == "pdf-text-layer" and data["text"].splitlines() == lines
    assert data["text_layer"]["ink_explained"] > 0.95
    short = _read(analyzer, tmp_path, text_layer_pdf([["Bijlage 3"]])).data  # a short layer that explains its page
    assert short["engine"] == "pdf-text-layer" and short["text"] == "Bijlage 3"
