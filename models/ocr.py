"""Page OCR: Tesseract for documents (orientation, four languages, a single-language second pass) and
rapidocr's PP-OCR pipeline for scene text in photos.

* `TesseractOcr.read_page` reads a scanned page or a photo of a document. The page is made grey, its
  lighting flattened (divided by a blurred background, so photos with uneven light binarise cleanly) and
  scaled up when its glyphs are too small for Tesseract. Tesseract's orientation detection (`--psm 0`, on
  a copy no larger than OSD_MAX_SIDE) turns the page upright when it is confident; then the page is read
  with Dutch, French, German and English combined (`--psm 3`, TSV). The recognised text's language is
  identified (py3langid); when Dutch, French or German dominates, the page is read again with that model
  alone and the pass with the higher mean word confidence is kept. Every pass that ran is listed in the result.
* `models.scenetext.SceneTextReader` runs rapidocr's detection, orientation-classification and recognition
  models, all shipped in the rapidocr package and verified by SHA-256 before use (nothing is downloaded).

Both return an `OcrPage` (defined here) whose boxes are in the pixels of the image given (before any rotation
or scaling).
Heavy libraries (cv2, rapidocr, py3langid) are imported in `load`/`predict` only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import numpy as np

from models.base import ModelError
from models.langid import identify_language
from models.tesseract import TesseractBinary, TesseractModel

__all__ = ["OcrLine", "OcrPage", "OcrWord", "TesseractOcr", "character_error_rate", "identify_language"]

Box = tuple[float, float, float, float]
DEFAULT_LANGUAGES = ("nld", "fra", "deu", "eng")
TESSERACT_TIMEOUT_S = 120.0
TESSERACT_PSM = 3  # fully automatic page segmentation, no OSD (orientation is a pass of its own)
OSD_MIN_CONFIDENCE = 2.0  # Tesseract's orientation confidence below which the page is left as given
OSD_GLYPH_HEIGHT = 24.0  # pixels: orientation runs on a copy shrunk until glyphs are this tall (never enlarged)
SECOND_PASS_MIN_PROBABILITY = 0.9  # language probability above which a single-language pass is tried
SECOND_PASS_MIN_LETTERS = 60
# Languages whose single model is tried again: `eng` alone never lowered the CER in evaluation/bench_ocr.py
# (it lacks the accents of loan words such as café, naïve) while its higher confidences made it win.
SECOND_PASS_LANGUAGES = ("nld", "fra", "deu")
TARGET_GLYPH_HEIGHT = 24.0  # pixels: median glyph height the page is scaled up to (never down)
MAX_UPSCALE = 4.0
BORDER = 16  # pixels of white added around the page: Tesseract misses text touching the edge
MIN_SIDE = 32


@dataclass(frozen=True)
class OcrWord:
    """One recognised word: box (x1, y1, x2, y2) in the pixels of the image given, confidence 0-1."""

    text: str
    box: Box
    confidence: float


@dataclass(frozen=True)
class OcrLine:
    """One text line: its words, their text joined by spaces, the line's box and mean word confidence."""

    text: str
    box: Box
    confidence: float
    words: tuple[OcrWord, ...]


@dataclass(frozen=True)
class OcrPage:
    """Everything read on one page, and how: orientation, language, engine and the passes that ran."""

    text: str
    lines: tuple[OcrLine, ...]
    language: str | None
    language_confidence: float
    rotation: int
    orientation_confidence: float
    engine: Literal["tesseract", "rapidocr", "pdf-text-layer"]  # the last: a PDF's own text, built by a caller
    mean_confidence: float
    width: int
    height: int
    passes: tuple[str, ...]
    kept_run: str = ""  # the recognition pass whose words are reported
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe data (tuples become lists, floats rounded to 4 decimals)."""
        return _json_safe(asdict(self))


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float | np.floating):
        return round(float(value), 4)
    if isinstance(value, np.integer):
        return int(value)
    return value


def character_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance between the whitespace-normalised texts, divided by the reference's length.

    An empty reference gives 0.0 for an empty hypothesis and 1.0 otherwise.
    """
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    if not ref:
        return 0.0 if not hyp else 1.0
    if not hyp:
        return 1.0
    hyp_codes = np.frombuffer(hyp.encode("utf-32-le"), dtype=np.uint32)
    steps = np.arange(len(hyp) + 1, dtype=np.int64)
    previous = steps.copy()
    for i, character in enumerate(ref, start=1):
        substitution = previous[:-1] + (hyp_codes != ord(character))
        best = np.minimum(substitution, previous[1:] + 1)  # deletion of the reference character
        # insertions run along the row: current[j] = min(best[j], current[j-1] + 1), a cumulative minimum
        row = np.concatenate(([i], best))
        previous = np.minimum.accumulate(row - steps) + steps
    return float(previous[-1]) / len(ref)


# --- image preparation and coordinates -------------------------------------------------------------------


def _gray(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"expected an H x W x 3 RGB or H x W grey uint8 image, got {image.shape} {image.dtype}")
    if min(image.shape[:2]) < 1:
        raise ValueError(f"empty image {image.shape}")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def flatten_lighting(gray: np.ndarray) -> np.ndarray:
    """The page divided by its background (a closing with a kernel wider than strokes, blurred): uneven
    lighting of a photo becomes white paper, dark ink stays dark."""
    import cv2

    kernel = max(15, (min(gray.shape) // 40) | 1)
    background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (kernel, kernel)))
    background = cv2.GaussianBlur(background, (0, 0), kernel / 2)
    flat = gray.astype(np.float32) / np.maximum(background.astype(np.float32), 1.0) * 255.0
    return np.clip(flat, 0, 255).astype(np.uint8)


def glyph_height(gray: np.ndarray) -> float | None:
    """Median height of the dark connected components that look like glyphs, or None without any."""
    import cv2

    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    count, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    heights = stats[1:, 3]
    widths = stats[1:, 2]
    glyphs = heights[(heights >= 4) & (heights <= gray.shape[0] / 4) & (widths <= heights * 3)]
    return float(np.median(glyphs)) if count > 1 and glyphs.size >= 5 else None


@dataclass(frozen=True)
class _Frame:
    """How the prepared image relates to the given one: scale, white border, then a clockwise rotation."""

    width: int
    height: int
    scale: float
    border: int
    glyph_height: float | None = None  # median glyph height in the prepared image
    rotation: int = 0

    def to_given(self, box: Box) -> Box:
        """A box in the prepared (scaled, bordered, rotated) image, in the pixels of the image given."""
        inner_w = self.width * self.scale + 2 * self.border
        inner_h = self.height * self.scale + 2 * self.border
        x1, y1, x2, y2 = box
        corners = [_unrotate(x, y, self.rotation, inner_w, inner_h) for x, y in ((x1, y1), (x2, y2))]
        xs = [(x - self.border) / self.scale for x, _ in corners]
        ys = [(y - self.border) / self.scale for _, y in corners]
        return (_clip(min(xs), self.width), _clip(min(ys), self.height),
                _clip(max(xs), self.width), _clip(max(ys), self.height))


def _unrotate(x: float, y: float, rotation: int, width: float, height: float) -> tuple[float, float]:
    """A point of the image turned clockwise by `rotation`, in the image (width x height) before turning."""
    if rotation == 90:
        return y, height - x
    if rotation == 180:
        return width - x, height - y
    if rotation == 270:
        return width - y, x
    return x, y


def _clip(value: float, limit: int) -> float:
    return round(min(max(value, 0.0), float(limit)), 1)


def _turn(image: np.ndarray, rotation: int) -> np.ndarray:
    """The image turned clockwise by `rotation` degrees."""
    return np.ascontiguousarray(np.rot90(image, k=-(rotation // 90) % 4))


def prepare_page(image: np.ndarray, *, flatten: bool = True) -> tuple[np.ndarray, _Frame]:
    """Grey, lighting flattened, scaled up to TARGET_GLYPH_HEIGHT if its glyphs are smaller, white border."""
    import cv2

    gray = _gray(image)
    flat = flatten_lighting(gray) if flatten and min(gray.shape) >= MIN_SIDE else gray
    height = glyph_height(flat) if min(gray.shape) >= MIN_SIDE else None
    scale = 1.0 if height is None else float(np.clip(TARGET_GLYPH_HEIGHT / height, 1.0, MAX_UPSCALE))
    if scale > 1.05:
        size = (round(gray.shape[1] * scale), round(gray.shape[0] * scale))
        flat = cv2.resize(flat, size, interpolation=cv2.INTER_CUBIC)
    else:
        scale = 1.0
    border = max(BORDER, (MIN_SIDE - min(flat.shape)) // 2 + 1)
    padded = cv2.copyMakeBorder(flat, border, border, border, border, cv2.BORDER_CONSTANT, value=255)
    glyph = None if height is None else height * scale
    return padded, _Frame(gray.shape[1], gray.shape[0], scale, border, glyph)


# --- Tesseract TSV ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Recognition:
    """The words of one Tesseract pass, grouped into paragraphs of lines (boxes in the prepared image)."""

    paragraphs: tuple[tuple[tuple[OcrWord, ...], ...], ...]

    @property
    def words(self) -> list[OcrWord]:
        return [word for paragraph in self.paragraphs for line in paragraph for word in line]

    @property
    def mean_confidence(self) -> float:
        words = self.words
        return float(np.mean([word.confidence for word in words])) if words else 0.0

    @property
    def text(self) -> str:
        return "\n\n".join("\n".join(" ".join(w.text for w in line) for line in paragraph)
                           for paragraph in self.paragraphs)


def parse_page_tsv(tsv: str) -> _Recognition:
    """Tesseract's TSV: word rows (level 5) with a confidence, grouped by block, paragraph and line."""
    groups: dict[tuple[int, int], dict[int, list[OcrWord]]] = {}
    for row in tsv.splitlines()[1:]:
        columns = row.split("\t")
        if len(columns) < 12 or columns[0] != "5":
            continue
        text, confidence = columns[11].strip(), float(columns[10])
        if not text or confidence < 0:
            continue
        left, top, width, height = (float(value) for value in columns[6:10])
        word = OcrWord(text, (left, top, left + width, top + height), round(confidence / 100.0, 4))
        block, paragraph, line = int(columns[2]), int(columns[3]), int(columns[4])
        groups.setdefault((block, paragraph), {}).setdefault(line, []).append(word)
    return _Recognition(tuple(tuple(tuple(words) for _, words in sorted(lines.items()))
                              for _, lines in sorted(groups.items())))


def _line(words: Sequence[OcrWord], to_given: Callable[[Box], Box]) -> OcrLine:
    mapped = tuple(OcrWord(word.text, to_given(word.box), word.confidence) for word in words)
    boxes = np.array([word.box for word in mapped])
    box = (float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max()))
    confidence = round(float(np.mean([word.confidence for word in mapped])), 4)
    return OcrLine(" ".join(word.text for word in mapped), box, confidence, mapped)


def _parse_osd(output: str) -> tuple[int, float] | None:
    rotate = re.search(r"Rotate:\s*(\d+)", output)
    confidence = re.search(r"Orientation confidence:\s*([\d.]+)", output)
    if rotate is None or confidence is None:
        return None
    return int(rotate.group(1)) % 360, float(confidence.group(1))


class TesseractOcr(TesseractModel[np.ndarray, OcrPage]):
    """Document OCR with the Tesseract CLI: orientation, four languages combined, a single-language pass.

    `load()` finds the binary, records its version and Leptonica's, and the SHA-256 of every language file
    it uses (the reading languages and `osd`); it refuses to load when one is missing. Every run goes through
    stdin as PNG, with OMP_THREAD_LIMIT=1 and a timeout. `predict(image)` is `read_page(image)`.
    """

    def __init__(self, *, binary: str = "tesseract", languages: Sequence[str] = DEFAULT_LANGUAGES,
                 timeout_s: float = TESSERACT_TIMEOUT_S, psm: int = TESSERACT_PSM,
                 osd_min_confidence: float = OSD_MIN_CONFIDENCE, osd_glyph_height: float | None = OSD_GLYPH_HEIGHT,
                 second_pass_languages: Sequence[str] = SECOND_PASS_LANGUAGES) -> None:
        if not languages:
            raise ValueError("at least one language is needed")
        super().__init__()
        self.binary, self.languages, self.timeout_s, self.psm = binary, tuple(languages), timeout_s, psm
        self.osd_min_confidence, self.osd_glyph_height = osd_min_confidence, osd_glyph_height
        self.second_pass_languages = tuple(second_pass_languages)
        self.tesseract = TesseractBinary(binary=binary, languages=(*self.languages, "osd"), timeout_s=timeout_s)

    def _predict(self, inputs: np.ndarray) -> OcrPage:
        return self.read_page(inputs)

    def _png(self, gray: np.ndarray) -> bytes:
        import cv2

        encoded, png = cv2.imencode(".png", gray)
        if not encoded:
            raise ModelError("the page could not be encoded as PNG for Tesseract")
        return bytes(png.tobytes())

    def detect_orientation(self, gray: np.ndarray, glyph_height: float | None = None) -> tuple[int, float]:
        """Clockwise degrees that turn the page upright and Tesseract's confidence; (0, 0.0) when OSD finds
        too little text. With the page's glyph height known, OSD runs on a copy whose glyphs are
        `osd_glyph_height` tall (shrinking further makes OSD confidently wrong)."""
        import cv2

        scale = 1.0
        if glyph_height and self.osd_glyph_height:
            scale = min(1.0, self.osd_glyph_height / glyph_height)
        if scale < 0.95:
            gray = cv2.resize(gray, (round(gray.shape[1] * scale), round(gray.shape[0] * scale)),
                              interpolation=cv2.INTER_AREA)
        done = self.tesseract.run("stdin", "stdout", "--psm", "0", "--dpi", "300", stdin=self._png(gray), check=False)
        found = _parse_osd((done.stdout + done.stderr).decode(errors="replace"))
        return found if found is not None else (0, 0.0)

    def recognise(self, gray: np.ndarray, languages: Sequence[str]) -> _Recognition:
        """One recognition pass over a prepared page (boxes in its pixels)."""
        done = self.tesseract.run("stdin", "stdout", "--psm", str(self.psm), "--dpi", "300", "-l", "+".join(languages),
                         "tsv", stdin=self._png(gray))
        return parse_page_tsv(done.stdout.decode(errors="replace"))

    def read_page(self, image: np.ndarray, *, languages: Sequence[str] | None = None) -> OcrPage:
        """Read one page (H x W x 3 RGB or H x W grey, uint8): orientation, recognition, language."""
        if not self.loaded:
            raise ModelError("tesseract is not loaded; call load() first")
        languages = tuple(languages or self.languages)
        if unknown := sorted(set(languages) - set(self.tesseract.traineddata)):
            raise ValueError(f"languages {unknown} were not loaded (loaded: {sorted(self.tesseract.traineddata)})")
        prepared, frame = prepare_page(image)
        rotation, orientation_confidence = self.detect_orientation(prepared, frame.glyph_height)
        if orientation_confidence < self.osd_min_confidence:
            rotation = 0
        prepared = _turn(prepared, rotation)
        frame = replace(frame, rotation=rotation)
        combined = "+".join(languages)
        passes = ["osd", combined]
        kept, kept_name = self.recognise(prepared, languages), combined
        language, probability = identify_language(kept.text)
        if self._wants_second_pass(kept, language, probability, languages):
            assert language is not None
            passes.append(language)
            single = self.recognise(prepared, (language,))
            if single.mean_confidence > kept.mean_confidence:
                kept, kept_name = single, language
                language, probability = identify_language(kept.text)
        return self._page(kept, frame, language, probability, orientation_confidence, passes, kept_name)

    def _wants_second_pass(self, recognition: _Recognition, language: str | None, probability: float,
                           languages: Sequence[str]) -> bool:
        letters = sum(character.isalpha() for character in recognition.text)
        return (language in self.second_pass_languages and len(languages) > 1 and language in languages
                and probability >= SECOND_PASS_MIN_PROBABILITY and letters >= SECOND_PASS_MIN_LETTERS)

    def _page(self, recognition: _Recognition, frame: _Frame, language: str | None, probability: float,
              orientation_confidence: float, passes: list[str], kept: str) -> OcrPage:
        paragraphs = [[_line(words, frame.to_given) for words in paragraph] for paragraph in recognition.paragraphs]
        text = "\n\n".join("\n".join(line.text for line in paragraph) for paragraph in paragraphs)
        return OcrPage(text=text, lines=tuple(line for paragraph in paragraphs for line in paragraph),
                       language=language, language_confidence=round(probability, 4), rotation=frame.rotation,
                       orientation_confidence=round(orientation_confidence, 2), engine="tesseract",
                       mean_confidence=round(recognition.mean_confidence, 4), width=frame.width,
                       height=frame.height, passes=tuple(passes), kept_run=kept,
                       extra={"scale": round(frame.scale, 3)})

    def provenance(self) -> dict[str, Any]:
        """Binary, versions, language data (paths and SHA-256) and the options used."""
        return {**self.tesseract.provenance(),
                "options": {"psm": self.psm, "languages": list(self.languages), "OMP_THREAD_LIMIT": 1,
                            "osd_min_confidence": self.osd_min_confidence, "osd_glyph_height": self.osd_glyph_height,
                            "second_pass_languages": list(self.second_pass_languages),
                            "second_pass_min_probability": SECOND_PASS_MIN_PROBABILITY}}
