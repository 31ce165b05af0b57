"""Objects: the 80 COCO classes (people, vehicles, bags, phones, knives, ...) found with YOLOv8n.

Every decoded frame (upright, 8-bit RGB; animations sampled to 8 frames; images over 4096 px on their longest
side downscaled, and nothing decoded beyond the pixel limit) goes through the detector. Each detection is one
"objects.detection" finding whose box is in the upright pixel coordinates of the evidence (EXIF orientation
applied, downscaling undone), with a JPEG crop of the box for the 50 most confident detections whose crop is
at least 8 px on each side. An image without objects is a successful run with no findings.

Default backend: onnxruntime, chosen by measurement (`python -m evaluation.bench_detection`, written to
`evaluation/results/detection.json`): a 1920x1080 photo, 30 timed runs each after 5 warm-up runs, side by side
in one process, on a 2-vCPU shared Intel Xeon VM (load average 1.0 during the run):

================================================  ===========  ========  =========  =============
contender                                         median (ms)  p95 (ms)  load (s)   worker RSS
================================================  ===========  ========  =========  =============
onnxruntime, 1 intra-op thread                    119.2        122.7     0.21       216 MiB
onnxruntime, 2 intra-op threads                   77.0         84.1      0.12
ultralytics on the ONNX file, torch + ORT 1 thr.  123.0        127.7     4.53       1164 MiB
analyzer end to end (JPEG decode, detect, crops)  142.9        150.3     0.39
================================================  ===========  ========  =========  =============

Both backends return the same detections (identical pre- and post-processing, see `models.yolo`), and nearly
all of the time is the network itself (~115 ms on one core), so they are equally fast (onnxruntime /
ultralytics = 0.97). The direct path loads 20x faster and a worker holding it needs a fifth of the memory,
because it never imports torch: it is the default. `ObjectsAnalyzer(backend="ultralytics")` selects the
other; `threads` sets the onnxruntime intra-op threads (one per actor: Ray scales with actors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from models.yolo import Detection, YoloDetector, YoloOnnxDetector, YoloUltralyticsDetector
from workers import imaging
from workers.analyzers.base import AnalysisLimits, Analyzer, Artifact, EvidenceFile, FindingData
from workers.analyzers.registry import register

BACKENDS: dict[str, type[YoloDetector]] = {"onnxruntime": YoloOnnxDetector, "ultralytics": YoloUltralyticsDetector}
DEFAULT_BACKEND = "onnxruntime"
KIND = "objects.detection"
MAX_FRAMES = 8
MAX_SIDE = 4096
MAX_CROPS = 50
MIN_CROP_SIDE = 8
CROP_JPEG_QUALITY = 90


@dataclass(frozen=True)
class Found:
    """One detection on one frame: `number` is its rank by confidence within the frame."""

    frame: imaging.Frame
    number: int
    detection: Detection

    def crop_box(self) -> tuple[int, int, int, int]:
        """The detection's box in the frame's pixels, widened to whole pixels and clipped to the frame."""
        height, width = self.frame.pixels.shape[:2]
        x1, y1, x2, y2 = self.detection.box
        return (max(0, math.floor(x1)), max(0, math.floor(y1)), min(width, math.ceil(x2)),
                min(height, math.ceil(y2)))

    def crop_side(self) -> int:
        """The shorter side of the crop, in pixels."""
        x1, y1, x2, y2 = self.crop_box()
        return min(x2 - x1, y2 - y1)


def choose_crops(found: list[Found], limit: int = MAX_CROPS, min_side: int = MIN_CROP_SIDE) -> set[int]:
    """Positions in `found` of the detections that get a crop: the `limit` most confident of those whose crop
    is at least `min_side` pixels wide and high."""
    eligible = [position for position, item in enumerate(found) if item.crop_side() >= min_side]
    eligible.sort(key=lambda position: -found[position].detection.confidence)
    return set(eligible[:limit])


def crop_jpeg(item: Found) -> bytes:
    """The detection's box cut from its frame, as a JPEG."""
    x1, y1, x2, y2 = item.crop_box()
    return imaging.jpeg_bytes(item.frame.pixels[y1:y2, x1:x2], CROP_JPEG_QUALITY)


def upright_box(item: Found) -> list[float]:
    """The box in the upright evidence image's pixels (frame downscaling undone), rounded to 0.1 px."""
    width, height = item.frame.upright_size
    x1, y1, x2, y2 = (value / item.frame.scale for value in item.detection.box)
    return [round(min(max(x1, 0.0), width), 1), round(min(max(y1, 0.0), height), 1),
            round(min(max(x2, 0.0), width), 1), round(min(max(y2, 0.0), height), 1)]


@register
class ObjectsAnalyzer(Analyzer):
    """COCO object detection (YOLOv8n) on every frame of an image, with a crop of each object."""

    name = "objects"
    version = "1.0.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({KIND})
    num_cpus = 1.0

    def __init__(self, backend: str = DEFAULT_BACKEND, threads: int = 1) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; known: {', '.join(sorted(BACKENDS))}")
        self.backend = backend
        self.threads = threads
        self._detector: YoloDetector | None = None

    @property
    def detector(self) -> YoloDetector:
        """The loaded detector; `load()` must have run."""
        if self._detector is None:
            raise RuntimeError("ObjectsAnalyzer is not loaded; call load() first (once per worker)")
        return self._detector

    def load(self) -> None:
        """Register the HEIC/HEIF opener, then load the detector (weights verified) and warm it up."""
        imaging.register_heif_opener()
        if self._detector is None:
            detector = BACKENDS[self.backend](intra_op_num_threads=self.threads)
            detector.load()
            self._detector = detector

    def provenance(self) -> dict[str, Any]:
        """The detector: weights (sha256, licence), backend and runtime versions, thresholds."""
        return {"detector": self.detector.provenance()}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One "objects.detection" finding per object on each (sampled) frame; none when there are none."""
        detector = self.detector
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES, max_side=MAX_SIDE)
        found: list[Found] = []
        for frame in frames:
            detections = sorted(detector.predict(frame.pixels), key=lambda d: -d.confidence)
            found.extend(Found(frame, number, detection) for number, detection in enumerate(detections))
        cropped = choose_crops(found)
        model = detector.provenance()
        findings: list[FindingData] = []
        for position, entry in enumerate(found):
            detection = entry.detection
            artifacts = ([Artifact(f"crop-{entry.frame.index}-{entry.number}.jpg", "image/jpeg", crop_jpeg(entry))]
                         if position in cropped else [])
            data = {"class": detection.label, "class_id": detection.class_id, "box": upright_box(entry),
                    "frame": entry.frame.index, "model": dict(model)}
            findings.append(FindingData(KIND, data, label=f"{detection.label} {detection.confidence:.2f}",
                                        confidence=round(detection.confidence, 4), artifacts=artifacts))
        return findings
