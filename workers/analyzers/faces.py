"""Faces: every face in an image, with landmarks, a quality assessment, embeddings and an aligned crop.

MTCNN finds faces; each one found with probability 0.9 or more becomes a "faces.face" finding with its box and
landmarks in the upright coordinates of the evidence, its quality (size, sharpness, pose, exposure), dlib's
128-d embedding and, when an operator has configured FaceNet weights, FaceNet's 512-d embedding too.
Embeddings let an examiner search a case for similar faces; a distance is investigative information, never an
identification.

Where MTCNN looks (`workers.face_regions`): a person-then-face cascade. The analyzer `requires` the `objects`
analyzer and searches the region of each person it found confidently (`PERSON_FLOOR`, 0.5) at the scale a face
of that person needs, then the rest of the frame in one coarse pass (faces on a poster, a screen, someone YOLO
did not box or boxed only weakly); where `objects` found nobody confidently, or gave nothing for the frame, the
whole frame.

Each finding records the path that found it in "search" ("person-regions" or "whole-frame") and, wherever
`objects` gave confident person boxes for the frame, in "person" the position in `upstream["objects"]` of the
confident person box holding the most of the face (null when it overlaps none); on the person-regions path,
"found_in" says which pass kept it ("person-region", or "rest-of-frame" for a face no person's region found).

FaceNet weights do not ship in any package; set both `LOCARD_FACENET_WEIGHTS` (an absolute path to an
InceptionResnetV1 state dict) and `LOCARD_FACENET_SHA256` (its SHA-256), and optionally
`LOCARD_FACENET_LICENCE`, in the worker's environment.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
from workers.face_regions import (
    NO_PERSON_SIDE,
    OBJECTS,
    PERSON_REGIONS,
    Box,
    Person,
    Region,
    box_area,
    intersection,
    iou,
    person_boxes,
    plan_search,
)

__all__ = ["NO_PERSON_SIDE", "FacesAnalyzer", "Region", "iou", "person_boxes", "plan_search"]

MIN_PROBABILITY = 0.9
# Faces turned further than this (profiles) get no embedding: dlib's and FaceNet's models are trained on
# near-frontal faces, and in our tests a profile's dlib embedding came within 0.59 of another man (dlib's
# same-person threshold is 0.6). The face is still reported, with its box, landmarks, quality and crop.
MAX_EMBEDDING_YAW = 45.0
MAX_FRAMES = 4
MAX_SIDE = 2048  # larger images are downscaled; coordinates are mapped back to the evidence
DUPLICATE_IOU = 0.5
VECTOR_DECIMALS = 6
CROP_JPEG_QUALITY = 92
FACENET_WEIGHTS_ENV, FACENET_SHA256_ENV, FACENET_LICENCE_ENV = (
    "LOCARD_FACENET_WEIGHTS", "LOCARD_FACENET_SHA256", "LOCARD_FACENET_LICENCE")


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
    return cut and intersection(face.box, kept.box) > DUPLICATE_IOU * face.area()


def owner(face: DetectedFace, people: Sequence[Person]) -> int | None:
    """The position of the person box holding the most of `face` (the smaller box on a tie), or None."""
    best = max(people, key=lambda person: (intersection(face.box, person[1]), -box_area(person[1])), default=None)
    return best[0] if best is not None and intersection(face.box, best[1]) > 0 else None


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
    version = "1.2.1"
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
            found = self.detect(frame.pixels, regions)
            if not found:
                continue
            faces = [face for face, _ in found]
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
                if search == PERSON_REGIONS:
                    where["found_in"] = "rest-of-frame" if found[number][1] else "person-region"
                extra = None if facenet is None or number not in facenet[1] else \
                    _embedding(facenet[0], facenet[1][number])
                findings.append(self._finding(frame, number, face, crop, qualities[number], vectors.get(number),
                                              extra, where))
        return findings

    def detect(self, pixels: np.ndarray, regions: Sequence[Region]) -> list[tuple[DetectedFace, bool]]:
        """The faces (probability >= MIN_PROBABILITY) MTCNN finds in `regions` of a frame, in the frame's pixels,
        largest first, each with whether only the rest-of-frame pass found it; a face found in two regions once:
        the detection no crop's edge cuts, then one from a person's region (searched finer), then the more
        probable (see `workers.face_regions`)."""
        height, width = pixels.shape[:2]
        found: list[tuple[bool, bool, DetectedFace]] = []
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
                found.append((cut, region.rest, face))
        kept: list[tuple[DetectedFace, bool]] = []
        for cut, rest, face in sorted(found, key=lambda entry: (entry[0], entry[1], -entry[2].probability)):
            if not any(_duplicate(face, cut, other) for other, _ in kept):
                kept.append((face, rest))
        return sorted(kept, key=lambda entry: -entry[0].area())

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
