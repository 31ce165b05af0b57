"""Licence plates: find plates in images, read them (twice when unsure), and match the readings to national formats.

Runs after the `objects` analyzer (`requires`), whose vehicles it reuses. For each frame (at most 4, longest
side at most 4096 px):

1. the plate detector (YOLOv8n, `models.plates.PlateDetector`) runs on the whole frame;
2. the vehicle pass: cars, buses, trucks and motorcycles (confidence VEHICLE_MIN_CONFIDENCE or more) are
   taken from the `objects` findings in `item.upstream` (boxes in upright evidence pixels, times
   `frame.scale` to be in the frame's), and the plate detector runs again on each vehicle's crop, scaled up
   to VEHICLE_CROP_SIDE when smaller, else at the crop's own size (up to VEHICLE_MAX_IMGSZ), when that shows
   the vehicle at MIN_VEHICLE_GAIN times the whole-frame resolution or more; this finds plates too small for
   the whole-frame pass (the detector sees every frame at 640 px). `objects` having run and found no vehicle
   means no vehicle pass. Only when `objects` did not succeed (no "objects" key in `item.upstream`), or did
   not sample the frame (animations over its 8 frames), does this analyzer run its own COCO detector
   (`models.yolo.YoloOnnxDetector`, loaded in `load()` when that module exists; without it the vehicle pass
   is skipped for such frames). Each finding's `vehicle_source` says which: "objects", "own-detector", None;
3. detections of the same plate (IoU over 0.5, or one box mostly inside another) are merged;
4. each plate is cropped with a small margin and read by PP-OCR recognition (rapidocr). Tesseract, the
   second opinion (160-190 ms a plate), reads it only when that reading is not conclusive (see
   `second_opinion_reason`); each reading goes through `workers.plate_formats.normalise_plate`; a
   registration both readers support scores higher (noisy-or of their scores), and the best one is reported.
   `raw_readings` holds the readers that ran, `second_opinion` whether Tesseract did and
   `second_opinion_reason` why.

A finding's confidence is the detector's confidence times the reading's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.base import ModelError
from models.plates import PlateDetector, PlateReader, PlateReading, TesseractPlateReader
from storage.messages import UpstreamFinding
from workers import imaging
from workers.analyzers.base import AnalysisLimits, Analyzer, Artifact, EvidenceFile, FindingData
from workers.analyzers.objects import KIND as OBJECTS_KIND
from workers.analyzers.objects import MAX_FRAMES as OBJECTS_MAX_FRAMES
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
# When the rapidocr reading alone is conclusive, so that Tesseract is not asked (see `second_opinion_reason`).
# Rendered and real plates that PP-OCR reads right score 0.95-1.0; its misreads score lower.
SECOND_OPINION_BELOW = 0.9  # rapidocr's own confidence
# The best registration's format fit (normalise_plate): a well-separated reading of a common format scores
# 0.9-1.0, an unseparated one 0.81-0.86; one OCR letter/digit swap (x0.75) or a dropped stray character (x0.8)
# brings it under 0.8.
SECOND_OPINION_FORMAT_BELOW = 0.8
# Another registration fitting nearly as well (its fit at least this share of the best one's): the same
# characters read as two countries' formats (AB1234: NL AB-12-34 0.81, DE A-B 1234 0.68).
SECOND_OPINION_RUNNER_UP = 0.8
UNMATCHED_FACTOR = 0.3  # reading confidence when the text fits no known plate format
TOP_CANDIDATES = 3
JPEG_QUALITY = 90

Box = tuple[float, float, float, float]
VehicleSource = Literal["objects", "own-detector"]


@dataclass(frozen=True)
class FoundPlate:
    """A plate box on a frame (frame pixels), its best detector confidence and which passes found it."""

    box: Box
    confidence: float
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Vehicle:
    """A COCO detection on a frame: class, confidence, box (x1, y1, x2, y2) in the frame's pixels."""

    label: str
    confidence: float
    box: Box


def _area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def same_plate(a: Box, b: Box) -> bool:
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


def second_opinion_reason(reading: PlateReading) -> str | None:
    """Why the rapidocr reading alone is not conclusive (so Tesseract reads the plate too), or None when it is:
    its confidence is under SECOND_OPINION_BELOW, its text fits no plate format, its best registration fits
    under SECOND_OPINION_FORMAT_BELOW, or another registration fits nearly as well (SECOND_OPINION_RUNNER_UP).
    """
    if reading.confidence < SECOND_OPINION_BELOW:
        return f"rapidocr confidence {reading.confidence:.3f} < {SECOND_OPINION_BELOW}"
    candidates = normalise_plate(reading.text)
    if not candidates:
        return "the rapidocr text fits no known plate format"
    best = candidates[0]
    if best.confidence < SECOND_OPINION_FORMAT_BELOW:
        return f"best format fit {best.confidence:.3f} < {SECOND_OPINION_FORMAT_BELOW}"
    for other in candidates[1:]:
        if (other.text_normalised, other.country) != (best.text_normalised, best.country):
            if other.confidence >= SECOND_OPINION_RUNNER_UP * best.confidence:
                return (f"{other.text_normalised} ({other.country}) fits {other.confidence:.3f}, nearly as well "
                        f"as {best.text_normalised} ({best.country}) {best.confidence:.3f}")
            break
    return None


def upstream_vehicles(findings: Iterable[UpstreamFinding], frame: imaging.Frame) -> list[Vehicle]:
    """The detections of the `objects` analyzer on `frame` (findings as the dispatcher passes them), their boxes
    moved from upright evidence pixels to the frame's (times `frame.scale`). Entries not in that shape are
    skipped; the class and confidence filter is `vehicle_boxes`'.
    """
    vehicles = []
    for finding in findings:
        data, confidence = finding.data, finding.confidence
        if finding.kind != OBJECTS_KIND or not isinstance(data, dict) or data.get("frame") != frame.index:
            continue
        box = data.get("box")
        if (not isinstance(confidence, int | float) or not isinstance(box, list | tuple) or len(box) != 4
                or not all(isinstance(value, int | float) for value in box)):
            logger.warning("plates: skipped a malformed objects finding: %r", finding)
            continue
        x1, y1, x2, y2 = (float(value) * frame.scale for value in box)
        vehicles.append(Vehicle(str(data.get("class")), float(confidence), (x1, y1, x2, y2)))
    return vehicles


def _vehicle_view(side: int) -> tuple[int, float]:
    """For a vehicle crop whose longest side is `side`: the detector's input size, and its scale (network pixels
    per frame pixel). Small crops are scaled up to VEHICLE_CROP_SIDE; larger ones run at their own size
    (rounded up to a multiple of 32), up to VEHICLE_MAX_IMGSZ.
    """
    if side <= VEHICLE_CROP_SIDE:
        return VEHICLE_CROP_SIDE, VEHICLE_CROP_SIDE / side
    imgsz = min(VEHICLE_MAX_IMGSZ, -(-side // 32) * 32)
    return imgsz, min(1.0, imgsz / side)


def vehicle_boxes(vehicles: Iterable[Vehicle], width: int, height: int,
                  whole_frame_scale: float) -> list[tuple[int, int, int, int]]:
    """Crops (frame pixels, widened by VEHICLE_MARGIN) of the vehicles worth a second plate search: vehicle
    classes of VEHICLE_MIN_CONFIDENCE or more, at least VEHICLE_MIN_SIDE px, that the detector would see at
    MIN_VEHICLE_GAIN times `whole_frame_scale` (its scale on the whole frame) or more; the MAX_VEHICLES largest.
    """
    boxes = []
    for vehicle in vehicles:
        x1, y1, x2, y2 = vehicle.box
        mx, my = (x2 - x1) * VEHICLE_MARGIN, (y2 - y1) * VEHICLE_MARGIN
        box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(x2 + mx) + 1),
               min(height, int(y2 + my) + 1))
        side = max(box[2] - box[0], box[3] - box[1])
        if (vehicle.label in VEHICLE_LABELS and vehicle.confidence >= VEHICLE_MIN_CONFIDENCE
                and min(x2 - x1, y2 - y1) >= VEHICLE_MIN_SIDE
                and _vehicle_view(side)[1] >= MIN_VEHICLE_GAIN * whole_frame_scale):
            boxes.append(box)
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))[:MAX_VEHICLES]


def _clean(text: str) -> str:
    return " ".join("".join(ch for ch in text.upper() if ch.isalnum() or ch in " -").split())


@register
class PlatesAnalyzer(Analyzer):
    """Licence plates (BE, NL, FR, DE, LU formats) found by a YOLOv8n detector and read by PP-OCR and Tesseract."""

    name = "plates"
    version = "1.1.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({"plates.plate"})
    num_cpus = 1.0
    requires = ("objects",)

    def __init__(self) -> None:
        self.detector = PlateDetector()
        self.reader = PlateReader()
        self.tesseract = TesseractPlateReader()
        self.vehicles: Any | None = None
        self.vehicle_status = "not loaded"

    def load(self) -> None:
        """Load the plate detector, the PP-OCR reader, check Tesseract, and the fallback COCO detector."""
        imaging.register_heif_opener()
        self.detector.load()
        self.reader.load()
        self.tesseract.load()
        try:
            from models.yolo import YoloOnnxDetector
        except ImportError as exc:
            self.vehicles = None
            self.vehicle_status = f"objects findings; without them skipped: no COCO detector ({exc})"
            logger.warning("plates: vehicle pass %s", self.vehicle_status)
            return
        vehicles = YoloOnnxDetector()
        vehicles.load()
        self.vehicles = vehicles
        self.vehicle_status = "objects findings; without them the own COCO detector (vehicle_detector)"

    def provenance(self) -> dict[str, Any]:
        """The plate detector, both readers, when Tesseract is asked, and where vehicle boxes come from: the
        `objects` findings, or the fallback detector (or why there is none); each finding's `vehicle_source`
        says which one it used.
        """
        vehicles = self.vehicles.provenance() if self.vehicles is not None else None
        return {"plate_detector": self.detector.provenance(), "plate_reader": self.reader.provenance(),
                "tesseract": self.tesseract.provenance(),
                "second_opinion": {"rapidocr_confidence_below": SECOND_OPINION_BELOW,
                                   "format_confidence_below": SECOND_OPINION_FORMAT_BELOW,
                                   "runner_up_share": SECOND_OPINION_RUNNER_UP},
                "vehicle_sources": {"objects": {"analyzer": "objects", "kind": OBJECTS_KIND,
                                                "classes": sorted(VEHICLE_LABELS),
                                                "min_confidence": VEHICLE_MIN_CONFIDENCE},
                                    "own-detector": vehicles},
                "vehicle_detector": vehicles, "vehicle_pass": self.vehicle_status}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One "plates.plate" finding per plate in each analysed frame, with its crop as an artifact."""
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES, max_side=MAX_SIDE)
        objects = item.upstream.get("objects")
        # Which frames `objects` analysed: the last frame sampled is always the file's last one.
        sampled = set(imaging.frame_indices(frames[-1].index + 1, OBJECTS_MAX_FRAMES)) if frames else set()
        findings: list[FindingData] = []
        for frame in frames:
            upstream = objects if objects is not None and frame.index in sampled else None
            vehicles, source = self.frame_vehicles(frame, upstream)
            for number, plate in enumerate(self.find_plates(frame.pixels, vehicles)):
                findings.append(self._finding(frame, number, plate, source))
        return findings

    def frame_vehicles(self, frame: imaging.Frame,
                       upstream: Sequence[UpstreamFinding] | None) -> tuple[list[Vehicle], VehicleSource | None]:
        """The vehicles on `frame` and where they come from: the `objects` findings when given (an empty list is
        "none"), else the own COCO detector when loaded, else none (source None: no vehicle pass)."""
        if upstream is not None:
            return upstream_vehicles(upstream, frame), "objects"
        if self.vehicles is None:
            return [], None
        return [Vehicle(d.label, d.confidence, d.box) for d in self.vehicles.predict(frame.pixels)], "own-detector"

    def find_plates(self, pixels: np.ndarray, vehicles: list[Vehicle]) -> list[FoundPlate]:
        """Plates on an RGB frame, from the whole-frame pass and the pass over `vehicles` (frame pixels), merged."""
        found = [FoundPlate(p.box, p.confidence, ("frame",)) for p in self.detector.predict(pixels)]
        height, width = pixels.shape[:2]
        for box in vehicle_boxes(vehicles, width, height, self.detector.imgsz / max(height, width)):
            if any(_inside(plate.box, box) for plate in found):
                continue  # the whole-frame pass already found this vehicle's plate: no closer look needed
            found += self._plates_in_vehicle(pixels, box)
        return merge_plates(found)

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
        """The readings of a plate crop (Tesseract's only when rapidocr's is not conclusive) and the
        registration chosen from them."""
        readings = {"rapidocr": self.reader.predict(crop)}
        raw: dict[str, Any] = {"rapidocr": [readings["rapidocr"].text, round(readings["rapidocr"].confidence, 4)]}
        reason = second_opinion_reason(readings["rapidocr"])
        if reason is not None:
            try:
                readings["tesseract"] = self.tesseract.predict(crop)
                raw["tesseract"] = [readings["tesseract"].text, round(readings["tesseract"].confidence, 4)]
            except ModelError as exc:  # a second opinion failing does not lose the plate
                raw["tesseract"] = [None, 0.0]
                raw["tesseract_error"] = str(exc)
        opinion = {"raw_readings": raw, "second_opinion": reason is not None, "second_opinion_reason": reason}
        candidates = choose_reading(readings)
        if candidates:
            best = candidates[0]
            return {"text": best["text_normalised"], "country": best["country"], "format": best["format_name"],
                    "reading_confidence": best["confidence"], **opinion, "candidates": candidates[:TOP_CANDIDATES]}
        reader, reading = max(readings.items(), key=lambda item: item[1].confidence)
        text = _clean(reading.text)
        return {"text": text, "country": None, "format": None,
                "reading_confidence": round(reading.confidence * UNMATCHED_FACTOR, 4) if text else 0.0,
                **opinion, "candidates": [], "read_by": reader}

    def _finding(self, frame: imaging.Frame, number: int, plate: FoundPlate,
                 vehicle_source: VehicleSource | None) -> FindingData:
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
                "detector_confidence": round(plate.confidence, 4), "detected_by": list(plate.sources),
                "vehicle_source": vehicle_source}
        artifact = Artifact(f"plate-{frame.index}-{number}.jpg", "image/jpeg", imaging.jpeg_bytes(crop, JPEG_QUALITY))
        return FindingData("plates.plate", data, label=label, confidence=confidence, artifacts=[artifact])


def _inside(plate: tuple[float, float, float, float], vehicle: tuple[int, int, int, int]) -> bool:
    """Whether a plate box's centre lies within a vehicle box."""
    cx, cy = (plate[0] + plate[2]) / 2, (plate[1] + plate[3]) / 2
    return vehicle[0] <= cx <= vehicle[2] and vehicle[1] <= cy <= vehicle[3]
