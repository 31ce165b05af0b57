"""Licence plates: find plates in images, read them twice, and match the readings to national formats.

For each frame (at most 4, longest side at most 4096 px):

1. the plate detector (YOLOv8n, `models.plates.PlateDetector`) runs on the whole frame;
2. the vehicle pass: when `models.yolo.YoloOnnxDetector` (the COCO detector) is installed, cars, buses,
   trucks and motorcycles are found and the plate detector runs again on each vehicle's crop, scaled up to
   VEHICLE_CROP_SIDE when smaller, else at the crop's own size (up to VEHICLE_MAX_IMGSZ), when that shows
   the vehicle at MIN_VEHICLE_GAIN times the whole-frame resolution or more; this finds plates too small
   for the whole-frame pass (the detector sees every frame at 640 px). The COCO
   detector is imported in `load()` only, and when that module or class does not exist the vehicle pass is
   skipped (and `provenance()` says so), so this analyzer does not depend on it;
3. detections of the same plate (IoU over 0.5, or one box mostly inside another) are merged;
4. each plate is cropped with a small margin and read by PP-OCR recognition (rapidocr) and by Tesseract;
   both readings go through `workers.plate_formats.normalise_plate`; a registration both readers support
   scores higher (noisy-or of their scores), and the best one is reported.

A finding's confidence is the detector's confidence times the reading's.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from models.base import ModelError
from models.plates import PlateDetector, PlateReader, PlateReading, TesseractPlateReader
from workers import imaging
from workers.analyzers.base import AnalysisLimits, Analyzer, Artifact, EvidenceFile, FindingData
from workers.analyzers.registry import register
from workers.plate_formats import PlateCandidate, normalise_plate

logger = logging.getLogger(__name__)

MAX_FRAMES = 4
MAX_SIDE = 4096
VEHICLE_LABELS = frozenset({"car", "bus", "truck", "motorcycle"})
VEHICLE_MIN_CONFIDENCE = 0.3
MAX_VEHICLES = 8  # per frame, the largest
VEHICLE_MIN_SIDE = 24  # pixels
VEHICLE_CROP_SIDE = 640  # smaller vehicle crops are scaled up to this
VEHICLE_MAX_IMGSZ = 1280  # larger ones are detected at their own size, up to this
MIN_VEHICLE_GAIN = 1.5  # skip a vehicle the detector would see at less than 1.5x the whole-frame resolution
VEHICLE_MARGIN = 0.05
MERGE_IOU = 0.5
MERGE_CONTAINED = 0.8  # a box this much inside another is a fragment of the same plate
CROP_MARGIN_X, CROP_MARGIN_Y = 0.08, 0.15
# How much a reader's score counts: Tesseract is the second opinion, and misreads plate digits more often.
READER_WEIGHTS = {"rapidocr": 1.0, "tesseract": 0.8}
UNMATCHED_FACTOR = 0.3  # reading confidence when the text fits no known plate format
TOP_CANDIDATES = 3
JPEG_QUALITY = 90


@dataclass(frozen=True)
class FoundPlate:
    """A plate box on a frame (frame pixels), its best detector confidence and which passes found it."""

    box: tuple[float, float, float, float]
    confidence: float
    sources: tuple[str, ...]


def _area(box: tuple[float, float, float, float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def same_plate(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """IoU over MERGE_IOU, or the smaller box lying mostly (MERGE_CONTAINED) inside the larger."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return False
    overlap = width * height
    union = _area(a) + _area(b) - overlap
    smaller = min(_area(a), _area(b))
    return (union > 0 and overlap / union > MERGE_IOU) or (smaller > 0 and overlap / smaller > MERGE_CONTAINED)


def merge_plates(found: list[FoundPlate]) -> list[FoundPlate]:
    """Greedy, most confident first: a plate that is the same as one kept adds only its source."""
    kept: list[FoundPlate] = []
    for plate in sorted(found, key=lambda p: -p.confidence):
        for index, other in enumerate(kept):
            if same_plate(plate.box, other.box):
                sources = tuple(dict.fromkeys(other.sources + plate.sources))
                kept[index] = FoundPlate(other.box, other.confidence, sources)
                break
        else:
            kept.append(plate)
    return kept


def choose_reading(readings: dict[str, PlateReading]) -> list[dict[str, Any]]:
    """Registrations the readers support, best first: each reader scores a candidate by its format confidence
    times the reader's confidence (and READER_WEIGHTS); readers that agree combine as a noisy-or
    (1 - prod(1 - score)), so agreement raises the confidence.
    """
    support: dict[tuple[str, str, str], tuple[PlateCandidate, dict[str, float]]] = {}
    for reader, reading in readings.items():
        for candidate in normalise_plate(reading.text):
            key = (candidate.text_normalised, candidate.country, candidate.format_name)
            best, scores = support.setdefault(key, (candidate, {}))
            score = candidate.confidence * reading.confidence * READER_WEIGHTS.get(reader, 1.0)
            if score > scores.get(reader, -1.0):
                scores[reader] = score
            if candidate.substitutions < best.substitutions:
                support[key] = (candidate, scores)
    ranked = []
    for candidate, scores in support.values():
        combined = 1.0 - float(np.prod([1.0 - s for s in scores.values()]))
        ranked.append({**candidate.as_dict(), "confidence": round(combined, 4),
                       "format_confidence": candidate.confidence, "readers": sorted(scores)})
    return sorted(ranked, key=lambda c: (-c["confidence"], c["text_normalised"]))


def _vehicle_view(side: int) -> tuple[int, float]:
    """For a vehicle crop whose longest side is `side`: the detector's input size, and its scale (network pixels
    per frame pixel). Small crops are scaled up to VEHICLE_CROP_SIDE; larger ones run at their own size
    (rounded up to a multiple of 32), up to VEHICLE_MAX_IMGSZ.
    """
    if side <= VEHICLE_CROP_SIDE:
        return VEHICLE_CROP_SIDE, VEHICLE_CROP_SIDE / side
    imgsz = min(VEHICLE_MAX_IMGSZ, -(-side // 32) * 32)
    return imgsz, min(1.0, imgsz / side)


def _clean(text: str) -> str:
    return " ".join("".join(ch for ch in text.upper() if ch.isalnum() or ch in " -").split())


@register
class PlatesAnalyzer(Analyzer):
    """Licence plates (BE, NL, FR, DE, LU formats) found by a YOLOv8n detector and read by PP-OCR and Tesseract."""

    name = "plates"
    version = "1.0.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({"plates.plate"})
    num_cpus = 1.0

    def __init__(self) -> None:
        self.detector = PlateDetector()
        self.reader = PlateReader()
        self.tesseract = TesseractPlateReader()
        self.vehicles: Any | None = None
        self.vehicle_status = "not loaded"

    def load(self) -> None:
        """Load the plate detector, the PP-OCR reader, check Tesseract, and the COCO detector when present."""
        imaging.register_heif_opener()
        self.detector.load()
        self.reader.load()
        self.tesseract.load()
        try:
            from models.yolo import YoloOnnxDetector
        except ImportError as exc:
            self.vehicles, self.vehicle_status = None, f"skipped: no COCO detector ({exc})"
            logger.warning("plates: vehicle pass %s", self.vehicle_status)
            return
        vehicles = YoloOnnxDetector()
        vehicles.load()
        self.vehicles, self.vehicle_status = vehicles, "on"

    def provenance(self) -> dict[str, Any]:
        """The plate detector, both readers, and the vehicle detector (or why the vehicle pass is off)."""
        vehicles = self.vehicles.provenance() if self.vehicles is not None else None
        return {"plate_detector": self.detector.provenance(), "plate_reader": self.reader.provenance(),
                "tesseract": self.tesseract.provenance(),
                "vehicle_detector": vehicles, "vehicle_pass": self.vehicle_status}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One "plates.plate" finding per plate in each analysed frame, with its crop as an artifact."""
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES, max_side=MAX_SIDE)
        findings: list[FindingData] = []
        for frame in frames:
            for number, plate in enumerate(self.find_plates(frame.pixels)):
                findings.append(self._finding(frame, number, plate))
        return findings

    def find_plates(self, pixels: np.ndarray) -> list[FoundPlate]:
        """Plates on an RGB frame, from the whole-frame pass and the vehicle pass, merged."""
        found = [FoundPlate(p.box, p.confidence, ("frame",)) for p in self.detector.predict(pixels)]
        for box in self._vehicle_boxes(pixels):
            found += self._plates_in_vehicle(pixels, box)
        return merge_plates(found)

    def _vehicle_boxes(self, pixels: np.ndarray) -> list[tuple[int, int, int, int]]:
        if self.vehicles is None:
            return []
        height, width = pixels.shape[:2]
        frame_scale = self.detector.imgsz / max(height, width)
        boxes = []
        for detection in self.vehicles.predict(pixels):
            x1, y1, x2, y2 = detection.box
            mx, my = (x2 - x1) * VEHICLE_MARGIN, (y2 - y1) * VEHICLE_MARGIN
            box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(x2 + mx) + 1),
                   min(height, int(y2 + my) + 1))
            side = max(box[2] - box[0], box[3] - box[1])
            if (detection.label in VEHICLE_LABELS and detection.confidence >= VEHICLE_MIN_CONFIDENCE
                    and min(x2 - x1, y2 - y1) >= VEHICLE_MIN_SIDE
                    and _vehicle_view(side)[1] >= MIN_VEHICLE_GAIN * frame_scale):
                boxes.append(box)
        return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[:MAX_VEHICLES]

    def _plates_in_vehicle(self, pixels: np.ndarray, box: tuple[int, int, int, int]) -> list[FoundPlate]:
        import cv2

        x1, y1, x2, y2 = box
        crop = pixels[y1:y2, x1:x2]
        imgsz, _ = _vehicle_view(max(crop.shape[:2]))
        resize = VEHICLE_CROP_SIDE / max(crop.shape[:2])
        if resize > 1:
            crop = cv2.resize(crop, (round(crop.shape[1] * resize), round(crop.shape[0] * resize)),
                              interpolation=cv2.INTER_CUBIC)
        else:
            resize = 1.0
        return [FoundPlate((x1 + p.box[0] / resize, y1 + p.box[1] / resize, x1 + p.box[2] / resize,
                            y1 + p.box[3] / resize), p.confidence, ("vehicle",))
                for p in self.detector.detect(np.ascontiguousarray(crop), imgsz=imgsz)]

    def read_plate(self, crop: np.ndarray) -> dict[str, Any]:
        """Both readings of a plate crop and the registration chosen from them."""
        readings = {"rapidocr": self.reader.predict(crop)}
        raw: dict[str, Any] = {"rapidocr": [readings["rapidocr"].text, round(readings["rapidocr"].confidence, 4)]}
        try:
            readings["tesseract"] = self.tesseract.predict(crop)
            raw["tesseract"] = [readings["tesseract"].text, round(readings["tesseract"].confidence, 4)]
        except ModelError as exc:  # a second opinion failing does not lose the plate
            raw["tesseract"] = [None, 0.0]
            raw["tesseract_error"] = str(exc)
        candidates = choose_reading(readings)
        if candidates:
            best = candidates[0]
            return {"text": best["text_normalised"], "country": best["country"], "format": best["format_name"],
                    "reading_confidence": best["confidence"], "raw_readings": raw,
                    "candidates": candidates[:TOP_CANDIDATES]}
        reader, reading = max(readings.items(), key=lambda item: item[1].confidence)
        text = _clean(reading.text)
        return {"text": text, "country": None, "format": None,
                "reading_confidence": round(reading.confidence * UNMATCHED_FACTOR, 4) if text else 0.0,
                "raw_readings": raw, "candidates": [], "read_by": reader}

    def _finding(self, frame: imaging.Frame, number: int, plate: FoundPlate) -> FindingData:
        height, width = frame.pixels.shape[:2]
        x1, y1, x2, y2 = plate.box
        mx, my = (x2 - x1) * CROP_MARGIN_X, (y2 - y1) * CROP_MARGIN_Y
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
        crop = np.ascontiguousarray(frame.pixels[top:bottom, left:right])
        reading = self.read_plate(crop)
        if reading["text"]:
            label = f"{reading['text']} ({reading['country']})" if reading["country"] else (
                f"{reading['text']} (unknown format)")
        else:
            label = "unreadable plate"
        confidence = round(plate.confidence * reading["reading_confidence"], 4)
        data = {**reading, "box": [round(v / frame.scale, 1) for v in plate.box], "frame": frame.index,
                "detector_confidence": round(plate.confidence, 4), "detected_by": list(plate.sources)}
        buffer = io.BytesIO()
        Image.fromarray(crop).save(buffer, "JPEG", quality=JPEG_QUALITY)
        artifact = Artifact(f"plate-{frame.index}-{number}.jpg", "image/jpeg", buffer.getvalue())
        return FindingData("plates.plate", data, label=label, confidence=confidence, artifacts=[artifact])
