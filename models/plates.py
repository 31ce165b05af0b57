"""Licence plates: a YOLOv8n plate detector, and two readers for a plate crop (PP-OCR recognition, Tesseract).

* `PlateDetector` runs safelicensing's `best.pt` (one class, "License_Plate") through ultralytics on the CPU.
* `PlateReader` runs only the text-recognition model of rapidocr (PP-OCRv6 small, multilingual Latin) on a
  crop, with no text detection or orientation step. rapidocr is pointed at the verified file it ships
  (`Rec.model_path`), so it never resolves a model URL or downloads anything; the ONNX file carries its own
  character list, so no dictionary is fetched either.
* `TesseractPlateReader` is a second opinion from a different engine: the local `tesseract` binary on the
  crop (binarised, EU band removed) sent through stdin, one text line, A-Z, 0-9 and '-' only. It is a system
  binary, so its provenance is its version and the SHA-256 of the language data it uses.

Every reader takes an RGB crop (H x W x 3, uint8) and returns a `PlateReading`. Heavy libraries (ultralytics,
torch, rapidocr, cv2) are imported in `load`/`predict` only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Model, ModelError
from models.specs import PLATE_DETECTOR, PPOCR_REC
from models.tesseract import TesseractBinary, TesseractModel

DETECTOR_CONFIDENCE = 0.25
DETECTOR_IOU = 0.5
DETECTOR_MAX_PLATES = 50
TESSERACT_WHITELIST = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789- "  # the space keeps Tesseract's word confidences
TESSERACT_TIMEOUT_S = 20.0
TESSERACT_TEXT_HEIGHT = 140  # pixels: the crop is scaled to this height before binarising
TESSERACT_BORDER = 20
MIN_GLYPH_HEIGHT = 0.5  # of the tallest glyph: smaller marks (dashes, the band's stars, screws) are dropped


@dataclass(frozen=True)
class PlateBox:
    """A detected plate: box (x1, y1, x2, y2) in the pixels of the image given, and the detector's confidence."""

    box: tuple[float, float, float, float]
    confidence: float


@dataclass(frozen=True)
class PlateReading:
    """What a reader read on one plate crop, and its own confidence (0-1)."""

    text: str
    confidence: float


def _rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got shape {image.shape} {image.dtype}")
    return image


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(_rgb(image)[..., ::-1])


class PlateDetector(Model[np.ndarray, list[PlateBox]]):
    """YOLOv8n licence-plate detector (safelicensing `best.pt`) through ultralytics, on the CPU.

    Input: an RGB image (H x W x 3, uint8); output: plates with confidence >= `conf`, most confident first.
    """

    spec = PLATE_DETECTOR

    def __init__(self, *, conf: float = DETECTOR_CONFIDENCE, iou: float = DETECTOR_IOU, imgsz: int = 640,
                 max_det: int = DETECTOR_MAX_PLATES) -> None:
        super().__init__()
        if not 0.0 < conf < 1.0:
            raise ValueError("conf must be between 0 and 1")
        self.conf, self.iou, self.imgsz, self.max_det = conf, iou, imgsz, max_det
        self._yolo: Any = None

    def _load(self, weights: Path) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        from ultralytics import YOLO

        self._yolo = YOLO(str(weights), task="detect")
        names = dict(self._yolo.names)
        if len(names) != 1:
            raise ModelError(f"{self.spec.name}: expected one class (licence plate), got {names}")

    def _warm_up(self) -> None:
        self._predict(np.full((480, 640, 3), 114, dtype=np.uint8))

    def _predict(self, inputs: np.ndarray) -> list[PlateBox]:
        return self._detect(inputs, self.imgsz)

    def detect(self, image: np.ndarray, *, imgsz: int) -> list[PlateBox]:
        """Like `predict`, at another network input size (a multiple of 32): larger finds smaller plates."""
        if not self.loaded:
            raise ModelError(f"{self.spec.name} is not loaded; call load() first (once per worker)")
        if imgsz < 32 or imgsz % 32:
            raise ValueError(f"imgsz must be a positive multiple of 32, got {imgsz}")
        return self._detect(image, imgsz)

    def _detect(self, image: np.ndarray, imgsz: int) -> list[PlateBox]:
        result = self._yolo.predict(_bgr(image), conf=self.conf, iou=self.iou, imgsz=imgsz,
                                    max_det=self.max_det, device="cpu", verbose=False)[0]
        boxes = result.boxes.xyxy.cpu().numpy().astype(float)
        scores = result.boxes.conf.cpu().numpy().astype(float)
        plates = [PlateBox((float(b[0]), float(b[1]), float(b[2]), float(b[3])), float(s))
                  for b, s in zip(boxes, scores, strict=True)]
        return sorted(plates, key=lambda plate: -plate.confidence)

    def provenance(self) -> dict[str, Any]:
        """The weights, the ultralytics and torch versions, and the thresholds used."""
        import torch
        import ultralytics

        return {**self.spec.provenance(), "ultralytics": ultralytics.__version__, "torch": torch.__version__,
                "device": "cpu", "conf": self.conf, "iou": self.iou, "imgsz": self.imgsz}


class PlateReader(Model[np.ndarray, PlateReading]):
    """Text recognition of a plate crop with rapidocr's shipped PP-OCRv6 small recognition model only."""

    spec = PPOCR_REC

    def __init__(self, *, threads: int = 1) -> None:
        super().__init__()
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.threads = threads
        self._engine: Any = None

    def _load(self, weights: Path) -> None:
        from rapidocr import RapidOCR

        self._engine = RapidOCR(params={
            "Global.use_det": False, "Global.use_cls": False, "Global.use_rec": True,
            "Global.log_level": "warning", "Rec.model_path": str(weights),
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1})

    def _warm_up(self) -> None:
        self._predict(np.full((48, 192, 3), 255, dtype=np.uint8))

    def _predict(self, inputs: np.ndarray) -> PlateReading:
        output = self._engine(_bgr(inputs), use_det=False, use_cls=False, use_rec=True)
        texts = [str(text) for text in (getattr(output, "txts", None) or ())]
        scores = [float(score) for score in (getattr(output, "scores", None) or ())][:len(texts)]
        text = " ".join(t.strip() for t in texts if t.strip())
        return PlateReading(text, float(np.mean(scores)) if text and scores else 0.0)

    def provenance(self) -> dict[str, Any]:
        """The recognition weights, and how rapidocr runs them."""
        return {**self.spec.provenance(), "engine": "rapidocr", "mode": "recognition only (no det, no cls)",
                "threads": self.threads}


def binarise_plate(crop: np.ndarray) -> np.ndarray:
    """A black-on-white rendering of a plate crop for Tesseract.

    The EU band (saturated blue) is painted white, the crop is scaled to TESSERACT_TEXT_HEIGHT and binarised
    with Otsu's threshold; dark blobs touching the edge (the plate's frame, the car around it) and marks much
    smaller than the glyphs are removed, and a white border is added.
    """
    import cv2

    pixels = _rgb(crop).astype(np.int16)
    red, green, blue = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    gray[(blue > red + 40) & (blue > green + 15)] = 255
    scale = TESSERACT_TEXT_HEIGHT / gray.shape[0]
    gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), TESSERACT_TEXT_HEIGHT),
                      interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    _, binary = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(255 - binary, connectivity=8)
    height, width = binary.shape
    inner = []
    for label in range(1, count):
        x, y, w, h = stats[label, :4]
        if x == 0 or y == 0 or x + w >= width or y + h >= height:
            binary[labels == label] = 255
        else:
            inner.append(label)
    tallest = max((int(stats[label, 3]) for label in inner), default=0)
    for label in inner:
        if stats[label, 3] < MIN_GLYPH_HEIGHT * tallest:
            binary[labels == label] = 255
    return cv2.copyMakeBorder(binary, TESSERACT_BORDER, TESSERACT_BORDER, TESSERACT_BORDER, TESSERACT_BORDER,
                              cv2.BORDER_CONSTANT, value=255)


def parse_tsv(tsv: str) -> PlateReading:
    """Words (level 5) of Tesseract's TSV output, joined by spaces, with their mean confidence (0-1)."""
    words: list[tuple[str, float]] = []
    for line in tsv.splitlines()[1:]:
        columns = line.split("\t")
        if len(columns) < 12 or columns[0] != "5":
            continue
        text, confidence = columns[11].strip(), float(columns[10])
        if text and confidence >= 0:
            words.append((text, confidence / 100.0))
    if not words:
        return PlateReading("", 0.0)
    return PlateReading(" ".join(word for word, _ in words), float(np.mean([conf for _, conf in words])))


class TesseractPlateReader(TesseractModel[np.ndarray, PlateReading]):
    """A second reading of a plate crop by the Tesseract CLI (`--psm 7`, one line, A-Z 0-9 '-'), via stdin.

    `load()` finds the binary, records its version and hashes the language data; `predict()` runs it with
    OMP_THREAD_LIMIT=1 (Tesseract's OpenMP threads only slow a single short line down).
    """

    def __init__(self, *, binary: str = "tesseract", language: str = "eng",
                 timeout_s: float = TESSERACT_TIMEOUT_S) -> None:
        super().__init__()
        self.binary, self.language, self.timeout_s = binary, language, timeout_s
        self.tesseract = TesseractBinary(binary=binary, languages=(language,), timeout_s=timeout_s)

    def _predict(self, inputs: np.ndarray) -> PlateReading:
        """Read one RGB plate crop."""
        import cv2

        encoded, png = cv2.imencode(".png", binarise_plate(inputs))
        if not encoded:
            raise ModelError("the plate crop could not be encoded for Tesseract")
        result = self.tesseract.run("stdin", "stdout", "--psm", "7", "-l", self.language,
                                    "-c", f"tessedit_char_whitelist={TESSERACT_WHITELIST}", "tsv",
                                    stdin=png.tobytes())
        return parse_tsv(result.stdout.decode(errors="replace"))

    def provenance(self) -> dict[str, Any]:
        """Binary, version, language data (path and SHA-256) and the options used."""
        language = self.tesseract.traineddata.get(self.language, {})
        return {**self.tesseract.provenance(), "language": self.language,
                "traineddata": language.get("path"), "traineddata_sha256": language.get("sha256", ""),
                "options": {"psm": 7, "whitelist": TESSERACT_WHITELIST, "OMP_THREAD_LIMIT": 1}}
