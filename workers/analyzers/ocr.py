"""Text: every page of a document or photo read, with its language, and made searchable.

Input: images (scans, photos, multi-page TIFF) and PDFs. Output: one `text.page` finding per page (its text,
lines with boxes and confidences, language, rotation, the engine and passes that ran; the words with their
boxes as a JSON artifact), and one `text.document` summary. The page text is handed to the record store's
full-text index (`storage.textsearch`).

How each page is read:

* a PDF page whose text layer explains its ink gives that text exactly, with the layer's text rectangles as
  lines (engine "pdf-text-layer"). The page is rendered at INK_DPI and its ink (dark pixels) compared with the
  layer's character boxes: a page without a layer, or whose layer explains less than MIN_EXPLAINED_INK of the
  ink (a scan with a stamped page number, a scanner's partial text layer), is rendered at RENDER_DPI and read
  by Tesseract. Its text is then the layer's lines where the layer has text and Tesseract's lines elsewhere
  (an OCR line mostly inside the layer's character boxes is left out: the page's text holds each line once);
* TIFF images and items declared documents are read by Tesseract (orientation, four languages, a
  single-language second pass: `models.ocr.TesseractOcr`);
* other images (photos) are read first by PP-OCR (`models.ocr.SceneTextReader`: shop signs, screens, plates);
  when that finds a page of text (DOCUMENT_MIN_CHARS characters, or lines over DOCUMENT_MIN_AREA of the
  image), the photo is a photographed document and Tesseract reads it as one. Otherwise only the scene-text
  lines PP-OCR is confident of are the page's text (`models.scenetext.confident_scene_text`: the others are
  listed as `low_confidence_lines`, out of the index and of entity extraction), its language "und" unless
  langid is sure.

The analyzer is paged: the worker hands it one page range per job (`AnalysisLimits.pages`, at most
`max_pages_per_job` pages), and a long document is read as several jobs, each with its pages and a
`text.document` summary of its range; together they are the findings of one pass over the document. Without a
range (a direct call), at most MAX_PAGES pages are read. The summary that ends the reading says how many pages
were skipped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models.ocr import OcrLine, OcrPage, TesseractOcr
from models.scenetext import SceneTextReader, confident_scene_text
from storage.messages import HeldText
from workers import imaging
from workers.analyzers.base import (
    AnalysisFailed,
    AnalysisLimits,
    Analyzer,
    Artifact,
    BadInput,
    EvidenceFile,
    FindingData,
    PageRange,
)
from workers.analyzers.registry import register

PAGE_KIND = "text.page"
DOCUMENT_KIND = "text.document"
MAX_PAGES = 50
MAX_IMAGE_FRAMES = 4  # frames of an animation (GIF, WebP) read; TIFF pages go up to MAX_PAGES
RENDER_DPI = 300
MAX_RENDER_PIXELS = 40_000_000
# A PDF's text layer explains the page when at least MIN_EXPLAINED_INK of the ink (pixels darker than INK_LEVEL at
# INK_DPI) lies in its characters' boxes (pdfium's loose boxes, CHAR_BOX_PAD pixels wider). Measured at 72 dpi:
# text-only pages (Helvetica 9 and 12 pt) 1.00 of their ink explained; a scanned page image with a stamped
# "Page 1 of 3" 0.001-0.005, with a scanner's invisible layer for its heading only 0.07, with an invisible layer
# for every word (boxes approximated, as a scanner's are) 0.74; a photo with a one-line caption 0.007. 0.5 lies
# well between partial and complete layers. A text page whose figures or photos outweigh its text falls below
# it and is OCR'd too: slower, never a loss (its layer's lines are kept). A page with less than
# MIN_UNEXPLAINED_INK of its area in unexplained ink (a rule, a small logo) is not OCR'd for it.
INK_DPI = 72
MAX_INK_PIXELS = 4_000_000  # a huge page's ink is measured at a lower resolution
INK_LEVEL = 128
CHAR_BOX_PAD = 1
MIN_EXPLAINED_INK = 0.5
MIN_UNEXPLAINED_INK = 0.002
LAYER_COVERED = 0.5  # an OCR line with this share of its box inside the layer's character boxes is the layer's
# A photo is a photographed document when PP-OCR finds this much text on it. Measured: street photos 78-104
# characters over 3-9 % of the image (bus.jpg with a shop sign); rendered and photographed pages 825-868
# characters over 28-41 %; skimage's scanned page 262 characters over 77 %.
DOCUMENT_MIN_CHARS = 200
DOCUMENT_MIN_AREA, DOCUMENT_MIN_AREA_LINES = 0.25, 4
MAX_PAGE_TEXT = 200_000  # characters of one page kept in the finding and the index


@dataclass(frozen=True)
class PageText:
    """One page as read (by OCR, or from a PDF's text layer), numbered from 1."""

    number: int
    page: OcrPage


@register
class OcrAnalyzer(Analyzer):
    """Reads the text of documents and photos (Tesseract, PP-OCR, PDF text layers) in Dutch, French, German, English."""

    name = "ocr"
    version = "1.1.0"  # 1.1: scene text above a confidence floor, language "und"; PDF pages OCR'd by ink coverage
    accepts = frozenset({"image/*", "application/pdf"})
    produces = frozenset({PAGE_KIND, DOCUMENT_KIND})
    num_cpus = 1.0
    paged = True
    time_budget_seconds = 900.0  # a range of scanned pages, each read in up to four languages

    def __init__(self) -> None:
        self.tesseract = TesseractOcr()
        self.scene = SceneTextReader()

    def load(self) -> None:
        self.tesseract.load()
        self.scene.load()

    def provenance(self) -> dict[str, Any]:
        return {"tesseract": self.tesseract.provenance(), "scene_text": self.scene.provenance(),
                "pdf": _pdfium_version()}

    def page_count(self, item: EvidenceFile, limits: AnalysisLimits) -> int:
        """Pages of a PDF or TIFF; other images are one page (their frames are read together)."""
        if item.media_type == "application/pdf":
            pdf = _open_pdf(item.path)
            try:
                return len(pdf)
            finally:
                pdf.close()
        return _frame_count(item.path, limits) if item.media_type == "image/tiff" else 1

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        if item.media_type == "application/pdf":
            pages, total = self._pdf(item.path, limits)
        else:
            pages, total = self._image(item, limits)
        selected = _selected(total, limits)
        findings = [_page_finding(page) for page in pages]
        languages = Counter(page.page.language for page in pages if page.page.language and page.page.text.strip())
        engines = Counter(page.page.engine for page in pages)
        # Pages no range reads: reported once, by the range that ends the reading.
        cap = min(total, limits.max_document_pages if limits.pages else MAX_PAGES)
        skipped = total - cap if selected.last >= cap else 0
        findings.append(FindingData(
            kind=DOCUMENT_KIND, label=f"{len(pages)} page(s), {sum(len(p.page.text) for p in pages)} characters",
            data={"pages": total, "first_page": selected.first, "last_page": selected.last,
                  "pages_read": len(pages), "pages_skipped": skipped,
                  "pages_with_text": sum(1 for page in pages if page.page.text.strip()),
                  "languages": dict(languages), "engines": dict(engines),
                  "characters": sum(len(page.page.text) for page in pages)}))
        return findings

    # -- images -------------------------------------------------------------------------------------
    def _image(self, item: EvidenceFile, limits: AnalysisLimits) -> tuple[list[PageText], int]:
        if item.media_type == "image/tiff":
            total = _frame_count(item.path, limits)
            return [PageText(number, self.tesseract.read_page(pixels))
                    for number, pixels in _tiff_pages(item.path, _selected(total, limits), limits)], total
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_IMAGE_FRAMES)
        document = item.declared_kind == "document"
        pages = []
        for number, frame in enumerate(frames, start=1):
            page = self.tesseract.read_page(frame.pixels) if document else self._photo(frame.pixels)
            pages.append(PageText(number, page))
        return pages, len(frames)

    def _photo(self, pixels: np.ndarray) -> OcrPage:
        scene = self.scene.predict(pixels)
        return self.tesseract.read_page(pixels) if _is_document(scene) else confident_scene_text(scene)

    # -- PDFs ---------------------------------------------------------------------------------------
    def _pdf(self, path: Path, limits: AnalysisLimits) -> tuple[list[PageText], int]:
        import pypdfium2 as pdfium

        pdf = _open_pdf(path)
        try:
            total = len(pdf)
            pages = []
            for number in range(_selected(total, limits).first, _selected(total, limits).last + 1):
                try:
                    page = pdf[number - 1]
                except pdfium.PdfiumError as exc:
                    raise BadInput(f"the file could not be read as a PDF: page {number} of {total} cannot be "
                                   f"loaded ({exc}; a broken or cyclic page tree)") from exc
                try:
                    pages.append(PageText(number, self._pdf_page(page, limits)))
                finally:
                    page.close()
            return pages, total
        finally:
            pdf.close()

    def _pdf_page(self, page: Any, limits: AnalysisLimits) -> OcrPage:
        from models.langid import identify_language

        width, height = page.get_size()
        textpage = page.get_textpage()
        try:
            layer = textpage.get_text_range().replace("\r\n", "\n").replace("\r", "\n")
            lines = _layer_lines(textpage, height) if layer.strip() else []
            coverage = _ink_coverage(page, textpage, height) if lines else None
        finally:
            textpage.close()
        if coverage is not None and coverage.explains_page:
            language, probability = identify_language(layer)
            return OcrPage(text=layer.strip(), lines=tuple(lines), language=language,
                           language_confidence=probability, rotation=0, orientation_confidence=0.0,
                           engine="pdf-text-layer", mean_confidence=1.0, width=round(width),
                           height=round(height), passes=("text-layer",), extra={"text_layer": coverage.to_dict()})
        scale = RENDER_DPI / 72.0
        pixels_at_scale = width * height * scale * scale
        budget = min(limits.max_image_pixels, MAX_RENDER_PIXELS)
        if pixels_at_scale > budget:
            scale *= (budget / pixels_at_scale) ** 0.5
        if width * scale < 1 or height * scale < 1:
            raise AnalysisFailed(f"a PDF page of {width:.0f} x {height:.0f} points cannot be rendered")
        image = page.render(scale=scale).to_pil().convert("RGB")
        read = self.tesseract.read_page(np.asarray(image, dtype=np.uint8))
        return read if coverage is None else _with_layer(read, lines, coverage, scale)


@dataclass(frozen=True)
class InkCoverage:
    """How much of a PDF page's ink its text layer explains, measured at INK_DPI."""

    ink: float  # share of the page's pixels that are ink
    explained: float  # share of the ink inside the layer's character boxes
    layer_mask: np.ndarray  # the character boxes (padded), True inside, at `scale`
    scale: float  # mask pixels per point (INK_DPI / 72, less for a huge page)

    @property
    def explains_page(self) -> bool:
        """Whether the layer is the page's text: it explains most of the ink, or the rest is too little to read."""
        return self.explained >= MIN_EXPLAINED_INK or self.ink * (1.0 - self.explained) < MIN_UNEXPLAINED_INK

    def to_dict(self) -> dict[str, Any]:
        return {"ink_share": round(self.ink, 4), "ink_explained": round(self.explained, 4),
                "ink_dpi": INK_DPI, "min_explained": MIN_EXPLAINED_INK}


def _ink_coverage(page: Any, textpage: Any, page_height: float) -> InkCoverage:
    """The page's ink at INK_DPI and the share of it inside the text layer's character boxes."""
    width, _ = page.get_size()
    scale = min(INK_DPI / 72.0, (MAX_INK_PIXELS / max(1e-6, width * page_height)) ** 0.5)
    if width * scale < 1 or page_height * scale < 1:  # nothing to measure: the layer is all there is
        return InkCoverage(ink=0.0, explained=1.0, layer_mask=np.zeros((0, 0), dtype=bool), scale=scale)
    grey = np.asarray(page.render(scale=scale, grayscale=True).to_numpy())
    if grey.ndim == 3:
        grey = grey[..., :3].mean(axis=2) if grey.shape[2] >= 3 else grey[..., 0]
    ink = grey < INK_LEVEL
    rows, columns = ink.shape
    mask = np.zeros_like(ink)
    for index in range(textpage.count_chars()):
        left, bottom, right, top = textpage.get_charbox(index, loose=True)
        x1, x2 = int(left * scale) - CHAR_BOX_PAD, int(np.ceil(right * scale)) + CHAR_BOX_PAD
        y1 = int((page_height - top) * scale) - CHAR_BOX_PAD
        y2 = int(np.ceil((page_height - bottom) * scale)) + CHAR_BOX_PAD
        mask[max(0, y1):min(rows, y2), max(0, x1):min(columns, x2)] = True
    total = int(ink.sum())
    explained = float((ink & mask).sum()) / total if total else 1.0
    return InkCoverage(ink=total / max(1, ink.size), explained=explained, layer_mask=mask, scale=scale)


def _with_layer(read: OcrPage, layer: list[OcrLine], coverage: InkCoverage, scale: float) -> OcrPage:
    """A page OCR'd at `scale` whose text layer is partial: the layer's lines (exact, boxes scaled to the render's
    pixels) in place of the OCR lines they cover, Tesseract's lines everywhere else, in Tesseract's reading order."""
    from models.langid import identify_language

    to_mask = coverage.scale / scale  # render pixels -> mask pixels
    rows, columns = coverage.layer_mask.shape

    def covered(line: OcrLine) -> bool:
        x1, y1 = max(0, int(line.box[0] * to_mask)), max(0, int(line.box[1] * to_mask))
        x2, y2 = min(columns, int(np.ceil(line.box[2] * to_mask))), min(rows, int(np.ceil(line.box[3] * to_mask)))
        window = coverage.layer_mask[y1:y2, x1:x2]
        return window.size > 0 and float(window.mean()) >= LAYER_COVERED

    pending = sorted((OcrLine(text=line.text, box=(line.box[0] * scale, line.box[1] * scale, line.box[2] * scale,
                                                   line.box[3] * scale), confidence=1.0, words=())
                      for line in layer), key=lambda line: (line.box[1], line.box[0]))
    merged: list[OcrLine] = []
    for line in read.lines:
        if covered(line):
            continue
        while pending and pending[0].box[1] <= line.box[1]:
            merged.append(pending.pop(0))
        merged.append(line)
    merged += pending
    text = "\n".join(line.text for line in merged)
    language, probability = identify_language(text)
    mean = float(np.mean([line.confidence for line in merged])) if merged else 0.0
    return replace(read, text=text, lines=tuple(merged), language=language, language_confidence=probability,
                   mean_confidence=mean, passes=("text-layer", *read.passes),
                   extra={**read.extra, "text_layer": {**coverage.to_dict(), "lines": len(layer)}})


def _is_document(scene: OcrPage) -> bool:
    """Whether the text PP-OCR found on a photo makes it a photographed page (then Tesseract reads it)."""
    characters = sum(len(line.text) for line in scene.lines)
    covered = sum((line.box[2] - line.box[0]) * (line.box[3] - line.box[1]) for line in scene.lines)
    share = covered / max(1, scene.width * scene.height)
    many_lines = len(scene.lines) >= DOCUMENT_MIN_AREA_LINES
    return characters >= DOCUMENT_MIN_CHARS or (share >= DOCUMENT_MIN_AREA and many_lines)


def _selected(total: int, limits: AnalysisLimits) -> PageRange:
    """The pages this job reads: its range (within the document), or the first MAX_PAGES."""
    if limits.pages is None:
        return PageRange(1, max(1, min(total, MAX_PAGES)))
    if limits.pages.first > max(total, 1):
        raise AnalysisFailed(f"pages {limits.pages.first}-{limits.pages.last} are past the end of the document "
                             f"({total} pages)")
    return PageRange(limits.pages.first, min(limits.pages.last, max(total, 1)))


def _open_pdf(path: Path) -> Any:
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        reason = "it is encrypted (password protected)" if "password" in str(exc).lower() else str(exc)
        raise BadInput(f"the PDF cannot be opened: {reason}") from exc


def _frame_count(path: Path, limits: AnalysisLimits) -> int:
    with imaging.open_image_limited(path, limits.max_image_pixels) as image:
        try:
            return int(getattr(image, "n_frames", 1))
        except imaging.DECODE_ERRORS as exc:
            raise BadInput(f"the file could not be read as a TIFF image: its pages cannot be counted ({exc})") from exc


def _tiff_pages(path: Path, pages: PageRange, limits: AnalysisLimits) -> list[tuple[int, np.ndarray]]:
    """The decoded, upright RGB pixels of pages `pages` of a multi-page TIFF, seeking past the others."""
    read = []
    with imaging.open_image_limited(path, limits.max_image_pixels) as image:
        for number in range(pages.first, pages.last + 1):
            try:
                image.seek(number - 1)
            except imaging.DECODE_ERRORS as exc:
                raise BadInput(f"the file could not be read as a TIFF image: page {number} ({exc})") from exc
            imaging.decode(image)
            read.append((number, np.ascontiguousarray(np.asarray(imaging.to_rgb(imaging.upright(image)),
                                                                 dtype=np.uint8))))
    return read


def _layer_lines(textpage: Any, page_height: float) -> list[OcrLine]:
    """The text layer's rectangles as lines, boxes in points from the page's top-left corner."""
    lines = []
    for index in range(textpage.count_rects()):
        left, bottom, right, top = textpage.get_rect(index)
        content = " ".join(textpage.get_text_bounded(left, bottom, right, top).split())
        if content:
            lines.append(OcrLine(text=content, box=(left, page_height - top, right, page_height - bottom),
                                 confidence=1.0, words=()))
    return lines


def _page_finding(page: PageText) -> FindingData:
    result = page.page
    text = result.text[:MAX_PAGE_TEXT]
    words = [{"text": word.text, "box": [round(v, 1) for v in word.box], "confidence": round(word.confidence, 3)}
             for line in result.lines for word in line.words]
    data: dict[str, Any] = {
        "page": page.number, "engine": result.engine, "language": result.language,
        "language_confidence": round(result.language_confidence, 3), "rotation": result.rotation,
        "orientation_confidence": round(result.orientation_confidence, 2),
        "mean_confidence": round(result.mean_confidence, 3), "width": result.width, "height": result.height,
        "passes": list(result.passes), "characters": len(result.text), "text": text,
        "lines": [{"text": line.text, "box": [round(v, 1) for v in line.box], "confidence": round(line.confidence, 3)}
                  for line in result.lines],
    }
    if "low_confidence_lines" in result.extra:  # scene text read below the floor: for an examiner, not the text
        data["low_confidence_lines"] = [{"text": line["text"], "box": [round(v, 1) for v in line["box"]],
                                          "confidence": round(line["confidence"], 3)}
                                         for line in result.extra["low_confidence_lines"]]
        data["min_line_confidence"] = result.extra.get("min_line_confidence")
    if "text_layer" in result.extra:
        data["text_layer"] = result.extra["text_layer"]
    held: HeldText | None = None  # an empty page has nothing to search
    if text.strip():
        held = HeldText(text=text, page=page.number, language=result.language, engine=result.engine)
    artifacts = [Artifact(f"words-p{page.number}.json", "application/json",
                          json.dumps(words, ensure_ascii=False).encode())] if words else []
    label = f"page {page.number}: {len(result.text)} characters" + (f" ({result.language})" if result.language else "")
    return FindingData(kind=PAGE_KIND, label=label, confidence=round(result.mean_confidence, 3), data=data,
                       artifacts=artifacts, held=held)


def _pdfium_version() -> dict[str, Any]:
    from pypdfium2 import version

    return {"name": "pypdfium2", "version": str(version.PYPDFIUM_INFO), "pdfium": str(version.PDFIUM_INFO)}
