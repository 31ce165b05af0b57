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
   `workers.plate_reading.second_opinion_reason`); each reading goes through
   `workers.plate_registration.read_registration`, so the reported `text` keeps every character read (format
   "unknown" when no format takes it as read), `country` is named only when the plate says so (a band code
   read before the text) or a single format fits, else the fitting `candidate_countries` are listed, and OCR
   repairs are only `alternatives` (for register matching); a registration both readers support scores higher
   (noisy-or of their scores), and the best one is reported. `raw_readings` holds the readers that ran,
   `second_opinion` whether Tesseract did and `second_opinion_reason` why. Before reading,
   `workers.plate_origin` measures the plate's colours on the frame: an EU band at its left end (`band`:
   present, and its country code when read confidently, which names the country), the background colour
   (`plate_colours`), and the countries these rule out (`ruled_out`: CH, AR, US for a band; NL, LU for a
   white plate), which are then no candidates;
5. a detection is a "plates.plate" finding (`matchable`) only when it passes the detector and reader
   confidence floors and reads as a plausible plate (`workers.plate_reading.rejections`); otherwise it is a
   "plates.candidate" finding labelled "unconfirmed plate candidate", kept for the examiner and never matched.

A finding's confidence is the detector's confidence times the reading's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from models.base import ModelError
from models.plates import PlateDetector, PlateReader, TesseractPlateReader
from storage.messages import UpstreamFinding
from workers import imaging
from workers.analyzers.base import AnalysisLimits, Analyzer, Artifact, EvidenceFile, FindingData
from workers.analyzers.objects import KIND as OBJECTS_KIND
from workers.analyzers.objects import MAX_FRAMES as OBJECTS_MAX_FRAMES
from workers.analyzers.registry import register
from workers.plate_origin import PlateOrigin, plate_origin
from workers.plate_reading import (
    DETECTION_FLOOR,
    READING_FLOOR,
    SECOND_OPINION_BELOW,
    SECOND_OPINION_FORMAT_BELOW,
    SECOND_OPINION_RUNNER_UP,
    choose_reading,
    label,
    rejections,
    second_opinion_reason,
)

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
TOP_CANDIDATES = 3
PLATE_KIND = "plates.plate"  # a plate to match against registers: it passed the floors of workers.plate_reading
CANDIDATE_KIND = "plates.candidate"  # an unconfirmed plate candidate: shown to the examiner, never matched
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
    """Greedy, most confident first: a plate that is the same as one kept adds its source, and its box when
    larger (a fragment must not cut characters off the plate it belongs to)."""
    kept: list[FoundPlate] = []
    for plate in sorted(found, key=lambda p: -p.confidence):
        for index, other in enumerate(kept):
            if same_plate(plate.box, other.box):
                sources = tuple(dict.fromkeys(other.sources + plate.sources))
                box = plate.box if _area(plate.box) > _area(other.box) else other.box
                kept[index] = FoundPlate(box, other.confidence, sources)
                break
        else:
            kept.append(plate)
    return kept


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


@register
class PlatesAnalyzer(Analyzer):
    """Licence plates of any country found by a YOLOv8n detector and read by PP-OCR and Tesseract."""

    name = "plates"
    version = "2.1.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({PLATE_KIND, CANDIDATE_KIND})
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
                "floors": {"detector_confidence": DETECTION_FLOOR, "reader_confidence": READING_FLOOR,
                           "plausible_plate": True},
                "second_opinion": {"rapidocr_confidence_below": SECOND_OPINION_BELOW,
                                   "format_confidence_below": SECOND_OPINION_FORMAT_BELOW,
                                   "runner_up_share": SECOND_OPINION_RUNNER_UP},
                "vehicle_sources": {"objects": {"analyzer": "objects", "kind": OBJECTS_KIND,
                                                "classes": sorted(VEHICLE_LABELS),
                                                "min_confidence": VEHICLE_MIN_CONFIDENCE},
                                    "own-detector": vehicles},
                "vehicle_detector": vehicles, "vehicle_pass": self.vehicle_status}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One PLATE_KIND or CANDIDATE_KIND finding per detection in each analysed frame, with its crop."""
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

    def read_plate(self, crop: np.ndarray, origin: PlateOrigin | None = None) -> dict[str, Any]:
        """The readings of a plate crop (Tesseract's only when rapidocr's is not conclusive) and the
        registration chosen from them: `text` keeps every character read; `country` only when the plate says
        so (a band code read before the text, or on the band by `origin`) or a single format fits, else
        `candidate_countries` (less the countries `origin`, the plate's colours, rules out); OCR repairs are
        `alternatives`, for register matching, never the reported text."""
        origin = origin or PlateOrigin(None, why="not measured")
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
        opinion = {"raw_readings": raw, "second_opinion": reason is not None, "second_opinion_reason": reason,
                   **origin.as_dict()}
        candidates = choose_reading(readings, band_code=origin.band_code, ruled_out=origin.ruled_out)
        if not candidates:
            return {"text": "", "text_read": "", "country": None, "country_source": None, "candidate_countries": [],
                    "format": None, "alternatives": [], "reading_confidence": 0.0, "reader_confidence": 0.0,
                    **opinion, "candidates": []}
        best = candidates[0]
        return {"text": best["text_normalised"], "text_read": best["text_read"], "country": best["country"],
                "country_source": best["country_source"], "candidate_countries": best["candidate_countries"],
                "format": best["format_name"], "alternatives": best["alternatives"],
                "reading_confidence": best["confidence"], "reader_confidence": best["reader_confidence"],
                **opinion, "candidates": candidates[:TOP_CANDIDATES]}

    def _finding(self, frame: imaging.Frame, number: int, plate: FoundPlate,
                 vehicle_source: VehicleSource | None) -> FindingData:
        """A PLATE_KIND finding when the detection passes the floors and reads as a plausible plate, else a
        CANDIDATE_KIND finding (`matchable` false, `rejected_because` says why), kept for the examiner."""
        height, width = frame.pixels.shape[:2]
        x1, y1, x2, y2 = plate.box
        mx, my = (x2 - x1) * CROP_MARGIN_X, (y2 - y1) * CROP_MARGIN_Y
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
        crop = np.ascontiguousarray(frame.pixels[top:bottom, left:right])
        reading = self.read_plate(crop, plate_origin(frame.pixels, plate.box, self.reader.predict))
        rejected = rejections(plate.confidence, reading["candidates"][0] if reading["candidates"] else None)
        if rejected:
            kind, text = CANDIDATE_KIND, f": {reading['text']}" if reading["text"] else " (unreadable)"
            name = f"unconfirmed plate candidate{text}"
        else:
            kind = PLATE_KIND
            name = label(reading["text"], reading["country"], reading["format"], reading["candidate_countries"])
        confidence = round(plate.confidence * reading["reading_confidence"], 4)
        data = {**reading, "matchable": not rejected, "rejected_because": rejected,
                "box": [round(v / frame.scale, 1) for v in plate.box], "frame": frame.index,
                "detector_confidence": round(plate.confidence, 4), "detected_by": list(plate.sources),
                "vehicle_source": vehicle_source}
        artifact = Artifact(f"plate-{frame.index}-{number}.jpg", "image/jpeg", imaging.jpeg_bytes(crop, JPEG_QUALITY))
        return FindingData(kind, data, label=name, confidence=confidence, artifacts=[artifact])


def _inside(plate: tuple[float, float, float, float], vehicle: tuple[int, int, int, int]) -> bool:
    """Whether a plate box's centre lies within a vehicle box."""
    cx, cy = (plate[0] + plate[2]) / 2, (plate[1] + plate[3]) / 2
    return vehicle[0] <= cx <= vehicle[2] and vehicle[1] <= cy <= vehicle[3]
