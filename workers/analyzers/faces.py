"""Faces: every face in an image, with landmarks, a quality assessment, embeddings and an aligned crop.

MTCNN finds faces; each one found with probability 0.9 or more becomes a "faces.face" finding with its box and
landmarks in the upright coordinates of the evidence, its quality (size, sharpness, pose, exposure), dlib's
128-d embedding and, when an operator has configured FaceNet weights, FaceNet's 512-d embedding too.
Embeddings let an examiner search a case for similar faces; a distance is investigative information, never an
identification.

Where MTCNN looks: a person-then-face cascade. MTCNN's cost grows with the pixels it searches (about 0.3 us a
pixel on one core), so the analyzer `requires` the `objects` analyzer and searches where its "person" boxes
(upright evidence coordinates, any confidence) say people are, at the scale their faces need:

* People found in the frame: each person box, widened by 10% of its size on every side, is a region. A face is
  taken to be at least 1/25 of its person box's longer side (an adult's face is about 1/9 of their height; 1/25
  leaves a factor of over two for children, raised arms, a person lying down or a box holding two people), so
  a region is searched at the scale that makes such a face MTCNN's 20 px minimum: at full resolution for a
  small, distant person, coarser for a near one (never above the frame's resolution, nor over DETECT_SIDE on
  its longer side). Overlapping regions are merged where one crop costs less than both; a face found twice
  (IoU > 0.5, or a crop's edge cut it and it lies mostly inside the other) is kept once: the detection no
  crop's edge cuts, then the more probable. When the regions would cost more than 60% of a whole-frame search
  (people filling the frame; more than 32 person boxes), the whole frame is searched instead, at DETECT_SIDE:
  for little more, every face in the frame is looked for. Not searched on the person-regions path: faces
  outside every person's region (a poster, a screen, someone YOLO did not box) and faces under 1/25 of the
  person box they lie in (an ID photo held up).
* `objects` ran but found nobody in the frame: the whole frame is still searched, at NO_PERSON_SIDE (960) on its
  longer side. COCO's detector misses people whose face is all there is to see (a close-up, a face on a poster
  or an ID photo), and a forensic lab prefers recall. The cost: on zidane.jpg at 1920x1080, one core, MTCNN
  takes ~0.17 s at 960, against ~0.16 s for its two person regions and ~0.26 s for the whole frame at
  DETECT_SIDE; faces are found from about 40 px high in 1080p (30 px at DETECT_SIDE).
* `objects` failed or is not deployed (no "objects" key in `upstream`), or it did not sample this frame of an
  animation: the whole frame at DETECT_SIDE, as without the cascade.

Each finding records the path that found it in "search" ("person-regions" or "whole-frame") and, wherever
`objects` gave person boxes for the frame, in "person" the position in `upstream["objects"]` of the person box
holding the most of the face (null when it overlaps none).

FaceNet weights do not ship in any package; set both `LOCARD_FACENET_WEIGHTS` (an absolute path to an
InceptionResnetV1 state dict) and `LOCARD_FACENET_SHA256` (its SHA-256), and optionally
`LOCARD_FACENET_LICENCE`, in the worker's environment.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from models.base import ModelError
from models.faces import (
    DetectedFace,
    DlibFaceEmbedder,
    FaceDetector,
    FacenetEmbedder,
    aligned_crop,
    face_quality,
)
from storage.messages import UpstreamFinding
from workers import imaging
from workers.analyzers import objects
from workers.analyzers.base import (
    AnalysisLimits,
    Analyzer,
    Artifact,
    EvidenceFile,
    FindingData,
)
from workers.analyzers.registry import register

MIN_PROBABILITY = 0.9
# Faces turned further than this (profiles) get no embedding: dlib's and FaceNet's models are trained on
# near-frontal faces, and in our tests a profile's dlib embedding came within 0.59 of another man (dlib's
# same-person threshold is 0.6). The face is still reported, with its box, landmarks, quality and crop.
MAX_EMBEDDING_YAW = 45.0
MAX_FRAMES = 4
MAX_SIDE = 2048  # larger images are downscaled; coordinates are mapped back to the evidence
# MTCNN looks for faces on a copy at most this large (its cost grows with the pixels; 1080p is ~0.5 s on one
# core, 1280x720 ~0.26 s); alignment, quality and embeddings use the frame at up to MAX_SIDE. With MTCNN's
# 20 px minimum, faces from about 30 px high in a 1080p frame are found.
DETECT_SIDE = 1280
NO_PERSON_SIDE = 960  # the whole-frame search when `objects` found nobody (see the module's docstring)
MIN_FACE = FaceDetector.min_face_size
PERSON, OBJECTS = "person", objects.ObjectsAnalyzer.name
REGION_MARGIN = 0.10  # of the person box's width (height), added on the left and right (top and bottom)
FACE_TO_PERSON = 1 / 25  # the smallest face searched for in a person's region, over the box's longer side
WHOLE_FRAME_SHARE = 0.6  # regions costing more than this share of a whole-frame search: search the whole frame
MAX_PERSON_REGIONS = 32  # a crowd: beyond, the whole frame is searched (merging is cubic in the boxes)
CALL_PIXELS = 4_000  # the fixed cost of one MTCNN call (~1 ms), in pixels searched
DUPLICATE_IOU = 0.5
PERSON_REGIONS, WHOLE_FRAME = "person-regions", "whole-frame"
VECTOR_DECIMALS = 6
CROP_JPEG_QUALITY = 92
FACENET_WEIGHTS_ENV, FACENET_SHA256_ENV, FACENET_LICENCE_ENV = (
    "LOCARD_FACENET_WEIGHTS", "LOCARD_FACENET_SHA256", "LOCARD_FACENET_LICENCE")

Box = tuple[float, float, float, float]
Person = tuple[int, Box]  # position of the finding in upstream["objects"], box (x1, y1, x2, y2)


@dataclass(frozen=True)
class Region:
    """A part of a frame that MTCNN searches: its box in whole frame pixels, the smallest face (frame pixels)
    it is searched for, the longest side it may be searched at, and the person boxes it was made from."""

    box: tuple[int, int, int, int]
    min_face: float
    max_side: int
    people: tuple[int, ...] = ()

    @property
    def scale(self) -> float:
        """Detection pixels per frame pixel: a `min_face` face becomes MTCNN's minimum, within `max_side`."""
        x1, y1, x2, y2 = self.box
        return min(1.0, self.max_side / max(x2 - x1, y2 - y1, 1), MIN_FACE / self.min_face)

    def cost(self) -> float:
        """What searching it costs, in pixels searched (pyramid levels and R/O-net grow with them)."""
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1) * self.scale ** 2 + CALL_PIXELS

    def merged(self, other: Region) -> Region:
        """One region holding both, searched for the smaller of their smallest faces."""
        a, b = self.box, other.box
        return Region((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])),
                      min(self.min_face, other.min_face), self.max_side, self.people + other.people)


def _intersection(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def person_boxes(findings: Sequence[UpstreamFinding]) -> dict[int, list[Person]]:
    """The "person" boxes among `objects` findings, by frame: (position in `findings`, upright box).

    A finding without a usable box (missing, not four finite numbers, empty) cannot guide the search: skipped.
    """
    people: dict[int, list[Person]] = {}
    for position, finding in enumerate(findings):
        data = finding.data
        if finding.kind != objects.KIND or not isinstance(data, dict) or data.get("class") != PERSON:
            continue
        try:
            x1, y1, x2, y2 = (float(value) for value in data["box"])
            frame = int(data.get("frame", 0))
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(value) for value in (x1, y1, x2, y2)) and x2 > x1 and y2 > y1:
            people.setdefault(frame, []).append((position, (x1, y1, x2, y2)))
    return people


def person_region(person: Person, height: int, width: int) -> Region | None:
    """The region searched for `person`'s face (box in frame pixels), or None when it lies outside the frame."""
    position, (x1, y1, x2, y2) = person
    dx, dy = REGION_MARGIN * (x2 - x1), REGION_MARGIN * (y2 - y1)
    box = (max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy)), min(width, math.ceil(x2 + dx)),
           min(height, math.ceil(y2 + dy)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return Region(box, max(float(MIN_FACE), FACE_TO_PERSON * max(x2 - x1, y2 - y1)), DETECT_SIDE, (position,))


def merge_regions(regions: Sequence[Region]) -> list[Region]:
    """Overlapping regions merged, the most saving pair first, while one crop costs no more than two and is
    searched at no coarser a scale than either."""
    merged = list(regions)
    while True:
        best: tuple[float, int, int, Region] | None = None
        for i, a in enumerate(merged):
            for j in range(i + 1, len(merged)):
                b = merged[j]
                if _intersection(a.box, b.box) <= 0:
                    continue
                union = a.merged(b)
                saving = a.cost() + b.cost() - union.cost()
                if saving >= 0 and union.scale >= max(a.scale, b.scale) - 1e-9 and (best is None or saving > best[0]):
                    best = (saving, i, j, union)
        if best is None:
            return merged
        _, i, j, union = best
        merged = [region for k, region in enumerate(merged) if k not in (i, j)] + [union]


def plan_search(height: int, width: int, people: Sequence[Person] | None) -> tuple[str, list[Region]]:
    """Where MTCNN looks in a `height` x `width` frame, given the person boxes (frame pixels) found in it, or
    None when `objects` gave nothing for the frame: the path's name and its regions (see the module docstring)."""
    whole = Region((0, 0, width, height), MIN_FACE, DETECT_SIDE)
    if people is None:
        return WHOLE_FRAME, [whole]
    if not people:
        return WHOLE_FRAME, [Region((0, 0, width, height), MIN_FACE, NO_PERSON_SIDE)]
    if len(people) > MAX_PERSON_REGIONS:
        return WHOLE_FRAME, [whole]
    regions = merge_regions([region for person in people
                             if (region := person_region(person, height, width)) is not None])
    if not regions or sum(region.cost() for region in regions) > WHOLE_FRAME_SHARE * whole.cost():
        return WHOLE_FRAME, [whole]
    return PERSON_REGIONS, regions


def downscaled(pixels: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """`pixels` resized by `scale` (when below 1), and the factor actually applied."""
    height, width = pixels.shape[:2]
    if scale >= 1.0:
        return pixels, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = Image.fromarray(np.ascontiguousarray(pixels)).resize(size, Image.Resampling.BILINEAR,
                                                                  reducing_gap=2.0)
    return np.asarray(small), size[0] / width


def _duplicate(face: DetectedFace, cut: bool, kept: DetectedFace) -> bool:
    """Whether `face` is `kept` found again: IoU over DUPLICATE_IOU or, for a face a crop's edge cut, mostly
    inside it (a fragment's IoU with the whole face can be small)."""
    if iou(face.box, kept.box) > DUPLICATE_IOU:
        return True
    return cut and _intersection(face.box, kept.box) > DUPLICATE_IOU * face.area()


def owner(face: DetectedFace, people: Sequence[Person]) -> int | None:
    """The position of the person box holding the most of `face` (the smaller box on a tie), or None."""
    best = max(people, key=lambda person: (_intersection(face.box, person[1]), -_area(person[1])), default=None)
    return best[0] if best is not None and _intersection(face.box, best[1]) > 0 else None


def embeddable_pose(quality: dict[str, Any]) -> bool:
    """Whether a face is frontal enough for an embedding (|yaw| up to MAX_EMBEDDING_YAW degrees).

    Size and sharpness do not gate: small CCTV faces are still embedded, and their quality travels with them.
    """
    return abs(float(quality.get("yaw_degrees", 0.0))) <= MAX_EMBEDDING_YAW


def facenet_from_environment() -> FacenetEmbedder | None:
    """The FaceNet embedder the operator configured, or None when neither variable is set."""
    weights, sha256 = os.environ.get(FACENET_WEIGHTS_ENV, "").strip(), os.environ.get(FACENET_SHA256_ENV, "").strip()
    if not weights and not sha256:
        return None
    if not weights or not sha256:
        raise ModelError(f"FaceNet needs both {FACENET_WEIGHTS_ENV} and {FACENET_SHA256_ENV}; only "
                         f"{FACENET_WEIGHTS_ENV if weights else FACENET_SHA256_ENV} is set")
    licence = os.environ.get(FACENET_LICENCE_ENV, "").strip() or FacenetEmbedder.DEFAULT_LICENCE
    return FacenetEmbedder.from_file(Path(weights), sha256, licence=licence)


def _scaled(box: Box, factor: float) -> Box:
    x1, y1, x2, y2 = box
    return x1 * factor, y1 * factor, x2 * factor, y2 * factor


def _point(x: float, y: float) -> list[float]:
    return [round(x, 2), round(y, 2)]


def _embedding(model: str, vector: np.ndarray) -> dict[str, Any]:
    return {"model": model, "dimensions": len(vector),
            "vector": [round(float(value), VECTOR_DECIMALS) for value in vector]}


def _jpeg(pixels: np.ndarray) -> bytes:
    return imaging.jpeg_bytes(pixels, CROP_JPEG_QUALITY)


@register
class FacesAnalyzer(Analyzer):
    """Faces (MTCNN) with landmarks, quality, dlib embeddings (and FaceNet's when configured), aligned crops."""

    name = "faces"
    version = "1.1.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({"faces.face"})
    sensitive_fields = frozenset({"embedding", "vector"})  # dlib's embedding; FaceNet's vectors in "embeddings"
    num_cpus = 1.0
    requires = (OBJECTS,)  # person boxes: where to look for faces, and how large they are at least

    def __init__(self) -> None:
        self.detector = FaceDetector()
        self.embedder = DlibFaceEmbedder()
        self.facenet: FacenetEmbedder | None = None

    def load(self) -> None:
        """Load MTCNN and dlib's embedder, and FaceNet when the environment configures its weights."""
        imaging.register_heif_opener()
        self.facenet = facenet_from_environment()
        for model in (self.detector, self.embedder, self.facenet):
            if model is not None:
                model.load()

    def provenance(self) -> dict[str, Any]:
        """Every model a finding depends on: MTCNN's three networks, dlib's embedder and landmarks, FaceNet."""
        models = {"face_detector": self.detector.provenance(), "face_embedding": self.embedder.provenance()}
        if self.facenet is not None:
            models["face_embedding_facenet"] = self.facenet.provenance()
        return models

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """One "faces.face" finding per face detected with probability >= 0.9 (none is a valid result)."""
        frames = imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES, max_side=MAX_SIDE)
        people = person_boxes(item.upstream[OBJECTS]) if OBJECTS in item.upstream else None
        # `objects` samples up to its own MAX_FRAMES of the same frames; the last frame's index + 1 is the count.
        looked = set(imaging.frame_indices(frames[-1].index + 1, objects.MAX_FRAMES)) if frames else set()
        findings: list[FindingData] = []
        for frame in frames:
            in_frame = None
            if people is not None and frame.index in looked:
                in_frame = [(position, _scaled(box, frame.scale)) for position, box in people.get(frame.index, [])]
            search, regions = plan_search(frame.pixels.shape[0], frame.pixels.shape[1], in_frame)
            faces = self.detect(frame.pixels, regions)
            if not faces:
                continue
            crops = [aligned_crop(frame.pixels, face) for face in faces]
            qualities = [face_quality(frame.pixels, face, aligned=crop)
                         for face, crop in zip(faces, crops, strict=True)]
            embeddable = [i for i, quality in enumerate(qualities) if embeddable_pose(quality)]
            vectors = dict(zip(embeddable, self.embedder.predict((frame.pixels, [faces[i] for i in embeddable])),
                               strict=True)) if embeddable else {}
            facenet = None
            if self.facenet is not None and embeddable:
                batch = self.facenet.predict(np.stack([crops[i] for i in embeddable]))
                facenet = (self.facenet.spec.name, dict(zip(embeddable, batch, strict=True)))
            for number, (face, crop) in enumerate(zip(faces, crops, strict=True)):
                where: dict[str, Any] = {"search": search}
                if in_frame:
                    where["person"] = owner(face, in_frame)
                extra = None if facenet is None or number not in facenet[1] else \
                    _embedding(facenet[0], facenet[1][number])
                findings.append(self._finding(frame, number, face, crop, qualities[number], vectors.get(number),
                                              extra, where))
        return findings

    def detect(self, pixels: np.ndarray, regions: Sequence[Region]) -> list[DetectedFace]:
        """The faces (probability >= MIN_PROBABILITY) MTCNN finds in `regions` of a frame, in the frame's pixels,
        largest first; a face found in two overlapping regions once (see the module's docstring)."""
        height, width = pixels.shape[:2]
        found: list[tuple[bool, DetectedFace]] = []
        for region in regions:
            x1, y1, x2, y2 = region.box
            small, factor = downscaled(pixels[y1:y2, x1:x2], region.scale)
            edge = 1.0 / factor  # one detection pixel, in frame pixels
            for detected in self.detector.predict(small):
                if detected.probability < MIN_PROBABILITY:
                    continue
                face = detected.scaled(1 / factor).shifted(x1, y1)
                left, top, right, bottom = face.box
                cut = ((x1 > 0 and left <= x1 + edge) or (y1 > 0 and top <= y1 + edge)
                       or (x2 < width and right >= x2 - edge) or (y2 < height and bottom >= y2 - edge))
                found.append((cut, face))
        kept: list[DetectedFace] = []
        for cut, face in sorted(found, key=lambda entry: (entry[0], -entry[1].probability)):
            if not any(_duplicate(face, cut, other) for other in kept):
                kept.append(face)
        return sorted(kept, key=lambda face: -face.area())

    def _finding(self, frame: imaging.Frame, number: int, face: DetectedFace, crop: np.ndarray,
                 quality: dict[str, Any], vector: np.ndarray | None, facenet: dict[str, Any] | None,
                 where: dict[str, Any]) -> FindingData:
        quality["measured_at_scale"] = round(frame.scale, 6)  # pixel measures are in the analysed frame
        upright = face.scaled(1 / frame.scale)
        data: dict[str, Any] = {
            "box": [round(value, 2) for value in upright.box],
            "landmarks": {name: _point(*point) for name, point in
                          zip(("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"), upright.landmarks,
                              strict=True)},
            "frame": frame.index,
            "probability": round(face.probability, 6),
            "quality": quality,
            "embedding": None if vector is None else _embedding(self.embedder.spec.name, vector),
            **where,
        }
        if vector is None:
            data["embedding_skipped"] = (f"yaw about {abs(quality['yaw_degrees']):.0f} degrees, beyond "
                                         f"{MAX_EMBEDDING_YAW:.0f}: the embedding models are trained on near-frontal "
                                         "faces, and a profile's embedding would mislead a face search")
        if facenet is not None:
            data["embeddings"] = [facenet]
        label = f"face {face.probability:.2f} (quality {quality['score']:.2f})"
        crop_name = f"face-{frame.index}-{number}.jpg"
        return FindingData("faces.face", data, label=label, confidence=round(face.probability, 6),
                           artifacts=[Artifact(crop_name, "image/jpeg", _jpeg(crop))])
