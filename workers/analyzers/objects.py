"""Objects: the 80 COCO classes (people, vehicles, bags, phones, knives, ...) found with YOLOv8n.

Every decoded frame (upright, 8-bit RGB; animations sampled to 8 frames; images over 4096 px on their longest
side downscaled, and nothing decoded beyond the pixel limit) goes through the detector. Each detection is one
"objects.detection" finding whose box is in the upright pixel coordinates of the evidence (EXIF orientation
applied, downscaling undone), with a JPEG crop of the box for the 50 most confident detections whose crop is
at least 8 px on each side. An image without objects is a successful run with no findings.

Small objects in large images (the SAHI approach, `models.slicing`): a frame whose longest side is over 1.5
network inputs (960 px) is also cut into 512-px tiles overlapping by 20 %, each run at the network's 640 px (so
objects are seen 1.25x larger than in the tile, and far larger than in the whole frame shrunk to 640); the
whole-frame pass is kept for objects larger than a tile, and the passes are merged greedily (SAHI's GREEDYNMM:
a box absorbs those of its kind that cover it by intersection over the smaller box > 0.5, one per pass, and
grows to their union; the unions are merged again, so that the parts of an object cut by two tiles join).
512 px was chosen by measurement on `tests.scene_samples.car_park_scene` (1,600 x 1,000, five real vehicles
90-120 px long): whole frame 0 of 5 found (IoU >= 0.5, a vehicle class), 640-px tiles 2 of 5, 512-px tiles 4
of 5 with class-aware merging and 5 of 5 with the vehicle classes merged as one. A huge frame would take many
tiles: the tile grows (by 32 px) until the frame takes at most 24 (25 passes with the whole frame: ~2 s a frame
on one core, measured 1.9 s on a 2,430 x 3,240 photo against 0.07 s whole; 8 frames of an animation stay well
within the 300 s budget), so a 4,096 x 3,072 frame is cut into 24 tiles of 928 px instead of 80 of 512 px.
Each tile is one more chance for the detector to err, on a view without context, so an object only tiles saw
must pass `drop_reason` (a higher confidence floor; not seen cut by every tile that saw it; not lying inside a
whole-frame box of another class unless worn or carried); vehicles, what slicing is for, face the floor alone.
Measured with `python -m evaluation.eval_accuracy` (real photos: bus.jpg, zidane.jpg and hubble_deep_field are
sliced): objects on the real set went from precision 0.50 to 0.875 (false positives 14 to 2, recall 0.875
both), the car park keeping 5 of 5 vehicles; on real photos upscaled to be sliced (not labelled for the
evaluation) false positives fell from 30 to 6, recall unchanged. Each finding of a sliced frame says so in
`data["slicing"]` (tile size, overlap, tile count, merge rule); on other frames it is None and the detections
are exactly the detector's.

Vehicles (car, bus, truck, motorcycle: the classes `plates` reads) carry `data["category"] = "vehicle"`. On
views from above the detector's vehicle class is not to be trusted (it was trained on ground-level photos; the
issue saw an aerial car park whose cars were all called trucks; on rotated real vehicle crops it names them
nothing, a bicycle, a suitcase or a phone), so when passes are merged the vehicle classes merge as one kind: a
vehicle one tile calls a car and another a truck is one finding, whose `class` is the most confident pass's
and whose `class_hints` lists every vehicle class the passes gave (most confident first).

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

import numpy as np

from models import slicing
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
SLICE_TILE_SIZE = 512  # upscaled 1.25x into the 640-px input; see the module docstring for the measurement
SLICE_OVERLAP = slicing.OVERLAP_RATIO
SLICE_MAX_TILES = slicing.MAX_TILES
SLICE_METRIC: slicing.Metric = "ios"
SLICE_MATCH = slicing.MATCH_THRESHOLD
SLICE_MERGE = f"greedy-nmm {SLICE_METRIC}>{SLICE_MATCH}, class-aware, vehicle classes as one"
VEHICLE = "vehicle"
PASS_KEY = 1000  # merge source of a detection: pass number * PASS_KEY + class id (more than the 80 COCO classes)
VEHICLE_CLASSES = frozenset({"car", "bus", "truck", "motorcycle"})  # the classes `plates` reads as vehicles
EDGE_MARGIN = 0.01  # of the tile's side: a box within this of an inner tile edge is cut (see `drop_reason`)
FRAGMENT_INSIDE = 0.8  # a tile-only box this much inside a whole-pass box of another class is a part of it
# Worn, carried or riding: found inside a person's (or a vehicle's) box in their own right, never fragments.
CARRIED = frozenset({"person", "backpack", "umbrella", "handbag", "tie", "suitcase", "cell phone"})
TILE_ONLY_FLOOR = 0.4  # the confidence a detection only tiles made needs (not a vehicle)
TILE_ONLY_VEHICLE_FLOOR = 0.3  # the same for a vehicle, what slicing is for


@dataclass(frozen=True)
class Sliced:
    """How a frame was sliced: tile size and overlap, and how many tiles (the whole-frame pass not counted)."""

    tile_size: int
    overlap_ratio: float
    tiles: int

    def record(self) -> dict[str, Any]:
        return {"tile_size": self.tile_size, "overlap_ratio": self.overlap_ratio, "tiles": self.tiles,
                "whole_image_pass": True, "merge": SLICE_MERGE}


@dataclass(frozen=True)
class Merged:
    """A detection on a frame, with the vehicle classes the merged passes gave it (most confident first)."""

    detection: Detection
    class_hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Found:
    """One detection on one frame: `number` is its rank by confidence within the frame."""

    frame: imaging.Frame
    number: int
    detection: Detection
    class_hints: tuple[str, ...] = ()
    sliced: Sliced | None = None

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


def input_side(detector: YoloDetector) -> int:
    """The longest side of the detector's input, in pixels."""
    return max(detector.spec.input_size or (640, 640))


def _merge_key(detection: Detection) -> int:
    return -1 if detection.label in VEHICLE_CLASSES else detection.class_id


def _inside(box: tuple[float, float, float, float], others: np.ndarray) -> float:
    """The largest share of `box`'s area that lies inside one of `others` (N x 4); 0 when there are none."""
    if not len(others):
        return 0.0
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)
    return float((width * height).max() / area)


def drop_reason(detection: Detection, cut: list[bool], whole_pass: list[Detection]) -> str | None:
    """Why an object that only tiles saw (no whole-frame box in its group) is not reported, or None to keep it.

    Each tile is one more chance for the detector to be wrong, on a view that lacks the context around it
    (a person's arm alone, a bus's wheel alone); a tile-only object is dropped when

    * "floor": it is less confident than `TILE_ONLY_FLOOR` (`TILE_ONLY_VEHICLE_FLOOR` for a vehicle): with
      6-24 tiles a frame, the detector's own 0.25 would let through many times the whole-frame pass's errors;
    * "cut" (not a vehicle): every tile that saw it saw it cut (`cut`: its box touches an inner tile edge). The
      tiles overlap, so a tile holds whole what its neighbour cuts, and the whole-frame pass holds anything
      larger than the overlap: a cut view no other view confirms is a piece of something, named as a whole;
    * "fragment" (not a vehicle, not `CARRIED`): it lies mostly inside (`FRAGMENT_INSIDE`) a whole-frame box of
      another class: a hydrant in a bus, a skateboard in a person's legs, a donut in a cup. Things worn or
      carried (a tie, a handbag, a phone) and people (passengers, riders) are inside other boxes in their own
      right and are kept.

    Vehicles keep only the floor: on views from above, what slicing is for, the whole-frame pass names small
    vehicles anything (a phone), and a vehicle cut by a tile's edge may be seen by no other view.
    """
    vehicle = detection.label in VEHICLE_CLASSES
    if detection.confidence < (TILE_ONLY_VEHICLE_FLOOR if vehicle else TILE_ONLY_FLOOR):
        return "floor"
    if vehicle:
        return None
    if cut and all(cut):
        return "cut"
    others = np.array([d.box for d in whole_pass if d.label != detection.label], dtype=np.float64).reshape(-1, 4)
    if detection.label not in CARRIED and _inside(detection.box, others) >= FRAGMENT_INSIDE:
        return "fragment"
    return None


def merge_passes(passes: list[Detection], sources: list[int], cut: list[bool] | None = None) -> list[Merged]:
    """Detections of several passes over one frame (boxes in frame pixels; `sources`: the pass of each; `cut`:
    whether its tile saw it cut, False for the whole-frame pass) merged into one per object
    (`slicing.merge_members`, vehicle classes as one kind, never two boxes of one pass and class), most
    confident first; an object the whole-frame pass found keeps that pass's box, one only tiles saw is kept
    unless `drop_reason` says otherwise."""
    if not passes:
        return []
    cut = cut if cut is not None else [False] * len(passes)
    whole_pass = [d for d, source in zip(passes, sources, strict=True) if source < PASS_KEY]
    boxes = np.array([d.box for d in passes], dtype=np.float64)
    scores = np.array([d.confidence for d in passes], dtype=np.float64)
    keys = np.array([_merge_key(d) for d in passes], dtype=np.int64)
    merged = []
    for group in slicing.merge_members(boxes, scores, keys, metric=SLICE_METRIC, threshold=SLICE_MATCH,
                                       sources=np.array(sources, dtype=np.int64)):
        best = passes[group[0]]
        # The whole-frame pass saw the object whole: its box stands. Only an object the tiles alone saw, cut at
        # their edges, gets the union of its pieces.
        whole = [i for i in group if sources[i] < PASS_KEY]
        x1, y1, x2, y2 = boxes[whole[0]] if whole else slicing.union_box(boxes[group])
        detection = Detection(best.class_id, best.label, best.confidence, (x1, y1, x2, y2))
        if not whole and drop_reason(detection, [cut[i] for i in group], whole_pass):
            continue
        hints = tuple(dict.fromkeys(passes[i].label for i in group)) if best.label in VEHICLE_CLASSES else ()
        merged.append(Merged(detection, hints))
    return merged


def detect_frame(detector: YoloDetector, pixels: np.ndarray) -> tuple[list[Merged], Sliced | None]:
    """The detections on one frame: the detector's own on a frame up to 1.5 inputs on its longest side; on a
    larger one, the whole-frame pass and the tiles' merged (`merge_passes`), and how it was sliced."""
    height, width = pixels.shape[:2]
    if not slicing.needs_slicing(width, height, input_side(detector)):
        return [Merged(d, (d.label,) if d.label in VEHICLE_CLASSES else ()) for d in detector.predict(pixels)], None
    size = slicing.slicing_tile_size(width, height, tile_size=SLICE_TILE_SIZE, overlap_ratio=SLICE_OVERLAP,
                                     max_tiles=SLICE_MAX_TILES)
    windows = slicing.tiles(width, height, tile_size=size, overlap_ratio=SLICE_OVERLAP)
    passes = list(detector.predict(pixels))
    # The detector's NMS is class-aware: two boxes of one class from one pass are two objects, never merged.
    sources, cut = [d.class_id for d in passes], [False] * len(passes)
    for number, tile in enumerate(windows, start=1):
        found = [Detection(d.class_id, d.label, d.confidence, (d.box[0] + tile.x, d.box[1] + tile.y,
                                                              d.box[2] + tile.x, d.box[3] + tile.y))
                 for d in detector.predict(np.ascontiguousarray(tile.window(pixels)))]
        passes += found
        sources += [number * PASS_KEY + d.class_id for d in found]
        cut += slicing.cut_at_inner_edge(np.array([d.box for d in found], dtype=np.float64), tile, width, height,
                                         margin=EDGE_MARGIN * size).tolist()
    return merge_passes(passes, sources, cut), Sliced(size, SLICE_OVERLAP, len(windows))


@register
class ObjectsAnalyzer(Analyzer):
    """COCO object detection (YOLOv8n) on every frame of an image, with a crop of each object."""

    name = "objects"
    version = "1.2.0"
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
        """The detector (weights' sha256 and licence, backend and runtime versions, thresholds) and when and how
        large frames are sliced."""
        return {"detector": self.detector.provenance(),
                "slicing": {"above_side": slicing.SLICE_ABOVE * input_side(self.detector),
                            "tile_size": SLICE_TILE_SIZE, "overlap_ratio": SLICE_OVERLAP,
                            "max_tiles": SLICE_MAX_TILES, "whole_image_pass": True, "merge": SLICE_MERGE,
                            "tile_only": {"floor": TILE_ONLY_FLOOR, "vehicle_floor": TILE_ONLY_VEHICLE_FLOOR,
                                          "edge_margin": EDGE_MARGIN, "fragment_inside": FRAGMENT_INSIDE,
                                          "carried": sorted(CARRIED)}}}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One "objects.detection" finding per object on each (sampled) frame; none when there are none."""
        detector = self.detector
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES, max_side=MAX_SIDE)
        found: list[Found] = []
        for frame in frames:
            merged, sliced = detect_frame(detector, frame.pixels)
            merged.sort(key=lambda m: -m.detection.confidence)
            found.extend(Found(frame, number, m.detection, m.class_hints, sliced) for number, m in enumerate(merged))
        cropped = choose_crops(found)
        model = detector.provenance()
        findings: list[FindingData] = []
        for position, entry in enumerate(found):
            detection = entry.detection
            artifacts = ([Artifact(f"crop-{entry.frame.index}-{entry.number}.jpg", "image/jpeg", crop_jpeg(entry))]
                         if position in cropped else [])
            data = {"class": detection.label, "class_id": detection.class_id, "box": upright_box(entry),
                    "frame": entry.frame.index, "model": dict(model),
                    "slicing": entry.sliced.record() if entry.sliced else None}
            if detection.label in VEHICLE_CLASSES:
                data |= {"category": VEHICLE, "class_hints": list(entry.class_hints)}
            findings.append(FindingData(KIND, data, label=f"{detection.label} {detection.confidence:.2f}",
                                        confidence=round(detection.confidence, 4), artifacts=artifacts))
        return findings
