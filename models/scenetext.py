"""Scene text in photos (shop signs, screens, plates): rapidocr's PP-OCR detection, direction classifier and
recognition, every model shipped in the rapidocr package and verified by SHA-256 (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.base import Model
from models.langid import identify_language
from models.ocr import OcrLine, OcrPage, OcrWord
from models.specs import PPOCR_CLS, PPOCR_DET, PPOCR_REC

MIN_SIDE, MAX_ASPECT = 32, 16  # what PP-OCR is given at least: thinner images are padded (see `_padded`)


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
