"""Faces: every face in an image, with landmarks, a quality assessment, embeddings and an aligned crop.

MTCNN finds faces; each one found with probability 0.9 or more becomes a "faces.face" finding with its box and
landmarks in the upright coordinates of the evidence, its quality (size, sharpness, pose, exposure), dlib's
128-d embedding and, when an operator has configured FaceNet weights, FaceNet's 512-d embedding too.
Embeddings let an examiner search a case for similar faces; a distance is investigative information, never an
identification.

FaceNet weights do not ship in any package; set both `LOCARD_FACENET_WEIGHTS` (an absolute path to an
InceptionResnetV1 state dict) and `LOCARD_FACENET_SHA256` (its SHA-256), and optionally
`LOCARD_FACENET_LICENCE`, in the worker's environment.
"""

from __future__ import annotations

import io
import os
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
from workers.analyzers.base import (
    AnalysisLimits,
    Analyzer,
    Artifact,
    EvidenceFile,
    FindingData,
)
from workers.analyzers.registry import register

MIN_PROBABILITY = 0.9
MAX_FRAMES = 4
MAX_SIDE = 2048  # larger images are downscaled; coordinates are mapped back to the evidence
# MTCNN looks for faces on a copy at most this large (its cost grows with the pixels; 1080p is ~0.95 s on one
# core, 1280x720 ~0.45 s); alignment, quality and embeddings use the frame at up to MAX_SIDE. With MTCNN's
# 20 px minimum, faces from about 30 px high in a 1080p frame are found.
DETECT_SIDE = 1280
VECTOR_DECIMALS = 6
CROP_JPEG_QUALITY = 92
FACENET_WEIGHTS_ENV, FACENET_SHA256_ENV, FACENET_LICENCE_ENV = (
    "LOCARD_FACENET_WEIGHTS", "LOCARD_FACENET_SHA256", "LOCARD_FACENET_LICENCE")


def _for_detection(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """The frame scaled down so that its longest side is at most DETECT_SIDE, and the factor applied."""
    height, width = pixels.shape[:2]
    factor = min(1.0, DETECT_SIDE / max(height, width))
    if factor == 1.0:
        return pixels, 1.0
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    small = Image.fromarray(pixels).resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(small), size[0] / width


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


def _point(x: float, y: float) -> list[float]:
    return [round(x, 2), round(y, 2)]


def _embedding(model: str, vector: np.ndarray) -> dict[str, Any]:
    return {"model": model, "dimensions": len(vector),
            "vector": [round(float(value), VECTOR_DECIMALS) for value in vector]}


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=CROP_JPEG_QUALITY)
    return buffer.getvalue()


@register
class FacesAnalyzer(Analyzer):
    """Faces (MTCNN) with landmarks, quality, dlib embeddings (and FaceNet's when configured), aligned crops."""

    name = "faces"
    version = "1.0.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({"faces.face"})
    num_cpus = 1.0

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
        findings: list[FindingData] = []
        for frame in imaging.load_frames(item.path, limits.max_image_pixels, max_frames=MAX_FRAMES,
                                         max_side=MAX_SIDE):
            small, factor = _for_detection(frame.pixels)
            faces = [face.scaled(1 / factor) for face in self.detector.predict(small)
                     if face.probability >= MIN_PROBABILITY]
            if not faces:
                continue
            crops = [aligned_crop(frame.pixels, face) for face in faces]
            vectors = self.embedder.predict((frame.pixels, faces))
            facenet = None
            if self.facenet is not None:
                facenet = (self.facenet.spec.name, self.facenet.predict(np.stack(crops)))
            for number, (face, crop) in enumerate(zip(faces, crops, strict=True)):
                extra = None if facenet is None else _embedding(facenet[0], facenet[1][number])
                findings.append(self._finding(frame, number, face, crop, vectors[number], extra))
        return findings

    def _finding(self, frame: imaging.Frame, number: int, face: DetectedFace, crop: np.ndarray,
                 vector: np.ndarray, facenet: dict[str, Any] | None) -> FindingData:
        quality = face_quality(frame.pixels, face, aligned=crop)
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
            "embedding": _embedding(self.embedder.spec.name, vector),
        }
        if facenet is not None:
            data["embeddings"] = [facenet]
        label = f"face {face.probability:.2f} (quality {quality['score']:.2f})"
        crop_name = f"face-{frame.index}-{number}.jpg"
        return FindingData("faces.face", data, label=label, confidence=round(face.probability, 6),
                           artifacts=[Artifact(crop_name, "image/jpeg", _jpeg(crop))])
