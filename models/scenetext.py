"""Scene text in photos (shop signs, screens, plates): rapidocr's PP-OCR detection, direction classifier and
recognition, every model shipped in the rapidocr package and verified by SHA-256 (nothing is downloaded).

PP-OCR reads something on almost every photo. `SceneTextReader` reports every line it recognised (what decides
whether a photo is a photographed page needs them all); `confident_scene_text` keeps the lines at or above
MIN_LINE_CONFIDENCE, which alone become the page's text, its index entry and the input of entity extraction,
and marks the language UNDETERMINED unless langid is sure of it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Model
from models.langid import identify_language
from models.ocr import OcrLine, OcrPage, OcrWord
from models.specs import PPOCR_CLS, PPOCR_DET, PPOCR_REC

MIN_SIDE, MAX_ASPECT = 32, 16  # what PP-OCR is given at least: thinner images are padded (see `_padded`)
# Line confidence at or above which scene text is kept. Measured with PP-OCRv6 small (rapidocr), recognition
# score per line: on photos without text of their own (ultralytics zidane.jpg; scikit-image astronaut, coffee,
# chelsea, camera, rocket, brick, grass, gravel, hubble_deep_field, retina) and on bus.jpg's small or occluded
# lettering, the garbage read scored 0.27-0.904 (bus.jpg: "Un minihs o% cléetrieo sres plan" 0.77-0.86,
# "M15OL/SEUILLA" 0.82-0.84, "3A0O0" 0.38, "MEMIDY" 0.50-0.60; coffee "8" 0.904, camera "0000" 0.77); 20 signs
# in Dutch, French, German and English rendered on seven of those photos at 22-48 px, plain, rotated 4 degrees
# and blurred, or JPEG q60, scored 0.977-1.000 (lowest: "Open 7/7" at 22 px rotated and blurred), and the
# bus's own "MADRID", "cero", "emisiones" 0.988-1.000. 0.94 lies midway, 0.036 from either side.
MIN_LINE_CONFIDENCE = 0.94
# Langid probability (normalised over nld, fra, deu, eng) below which a scene text's language is UNDETERMINED.
# Measured on the same lines: Spanish and garbage came out "fra" at 0.59-0.86 (bus.jpg's whole text: fra 0.825);
# correct answers on sign texts ranged 0.60-0.999 (nld 0.94-0.98, deu 0.97-0.99, "Pharmacie du Centre" fra 0.88).
# Above every wrong answer seen; a short true sign may then be undetermined, never wrongly named.
MIN_LANGUAGE_PROBABILITY = 0.9
UNDETERMINED = "und"  # ISO 639-2 for "undetermined"


class SceneTextReader(Model[np.ndarray, OcrPage]):
    """Scene text (signs, screens, plates) with rapidocr's PP-OCR detection, direction classifier and
    recognition models, each verified by SHA-256 and passed to rapidocr by path (no downloads).

    Input: an RGB image (H x W x 3, uint8). Output: an OcrPage with one line per detected text box (the
    quadrilateral's axis-aligned bounds); word boxes split the line box in proportion to character counts.
    """

    spec = PPOCR_DET

    def __init__(self, *, threads: int = 1, min_score: float = 0.5) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads, self.min_score = threads, min_score
        self._engine: Any = None

    def _load(self, weights: Path) -> None:
        from rapidocr import RapidOCR

        self._engine = RapidOCR(params={
            "Global.use_det": True, "Global.use_cls": True, "Global.use_rec": True,
            "Global.log_level": "error", "Global.text_score": self.min_score,
            "Det.model_path": str(weights), "Cls.model_path": str(PPOCR_CLS.verify()),
            "Rec.model_path": str(PPOCR_REC.verify()),
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1})

    def _warm_up(self) -> None:
        self._predict(np.full((240, 320, 3), 255, dtype=np.uint8))

    def _predict(self, inputs: np.ndarray) -> OcrPage:
        if inputs.ndim != 3 or inputs.shape[2] != 3 or inputs.dtype != np.uint8 or min(inputs.shape[:2]) < 1:
            raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {inputs.shape} {inputs.dtype}")
        height, width = inputs.shape[:2]
        output = self._engine(np.ascontiguousarray(_padded(inputs)[..., ::-1]))
        boxes = getattr(output, "boxes", None)
        texts = [str(text) for text in (getattr(output, "txts", None) or ())]
        scores = [float(score) for score in (getattr(output, "scores", None) or ())]
        lines = [] if boxes is None else [
            _scene_line(text.strip(), np.asarray(quad, dtype=float), score, width, height)
            for quad, text, score in zip(boxes, texts, scores, strict=False) if text.strip()]
        lines.sort(key=lambda line: (line.box[1], line.box[0]))
        text = "\n".join(line.text for line in lines)
        language, probability = identify_language(text)
        words = [word for line in lines for word in line.words]
        mean = float(np.mean([line.confidence for line in lines])) if lines else 0.0
        return OcrPage(text=text, lines=tuple(lines), language=language, language_confidence=round(probability, 4),
                       rotation=0, orientation_confidence=0.0, engine="rapidocr", mean_confidence=round(mean, 4),
                       width=width, height=height, passes=("det", "cls", "rec"), kept_run="rec",
                       extra={"words": len(words)})

    def provenance(self) -> dict[str, Any]:
        """The three models (name, SHA-256) and how rapidocr runs them."""
        return {**self.spec.provenance(), "engine": "rapidocr", "models": [PPOCR_DET.provenance(),
                PPOCR_CLS.provenance(), PPOCR_REC.provenance()], "threads": self.threads,
                "min_score": self.min_score}


def confident_scene_text(page: OcrPage, *, min_confidence: float = MIN_LINE_CONFIDENCE,
                         min_language_probability: float = MIN_LANGUAGE_PROBABILITY) -> OcrPage:
    """`page` (as `SceneTextReader` read it) with only its lines of at least `min_confidence`.

    The text, language and mean confidence are those of the lines kept. The language is UNDETERMINED when
    text was kept but langid names no language with `min_language_probability` (or the text is too short to
    identify); a page with nothing kept has no language. The lines dropped stay visible to an examiner in
    `extra["low_confidence_lines"]` (text, box, confidence), never in the text.
    """
    kept = tuple(line for line in page.lines if line.confidence >= min_confidence)
    dropped = [{"text": line.text, "box": list(line.box), "confidence": line.confidence}
               for line in page.lines if line.confidence < min_confidence]
    text = "\n".join(line.text for line in kept)
    language, probability = identify_language(text) if kept else (None, 0.0)
    if kept and (language is None or probability < min_language_probability):
        language = UNDETERMINED
    mean = float(np.mean([line.confidence for line in kept])) if kept else 0.0
    extra = {**page.extra, "words": sum(len(line.words) for line in kept), "min_line_confidence": min_confidence,
             "low_confidence_lines": dropped}
    return replace(page, text=text, lines=kept, language=language, language_confidence=round(probability, 4),
                   mean_confidence=round(mean, 4), extra=extra)


def _padded(image: np.ndarray) -> np.ndarray:
    """The image padded with white at the bottom or right to at most MAX_ASPECT:1 and at least MIN_SIDE pixels.

    PP-OCR's detector scales the short side up to 736 pixels: a 1 x 256 image became 736 x 188,416 (2.9 GiB as
    float64, 192 s). Padding keeps every box where it was, since the image stays at the top left.
    """
    height, width = image.shape[:2]
    target_height = max(height, MIN_SIDE, -(-width // MAX_ASPECT))
    target_width = max(width, MIN_SIDE, -(-height // MAX_ASPECT))
    if (target_height, target_width) == (height, width):
        return image
    padded = np.full((target_height, target_width, 3), 255, dtype=np.uint8)
    padded[:height, :width] = image
    return padded


def _scene_line(text: str, quad: np.ndarray, score: float, width: int, height: int) -> OcrLine:
    x1, y1 = max(0.0, float(quad[:, 0].min())), max(0.0, float(quad[:, 1].min()))
    x2, y2 = min(float(width), float(quad[:, 0].max())), min(float(height), float(quad[:, 1].max()))
    box = (round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1))
    tokens = text.split()
    total = max(1, len(text))
    words, start = [], 0
    for token in tokens:
        begin = text.index(token, start)
        start = begin + len(token)
        left, right = x1 + (x2 - x1) * begin / total, x1 + (x2 - x1) * start / total
        words.append(OcrWord(token, (round(left, 1), box[1], round(right, 1), box[3]), round(score, 4)))
    return OcrLine(text, box, round(score, 4), tuple(words))
