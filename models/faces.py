"""Faces: MTCNN detection with five landmarks, alignment, a quality assessment, and two embedders.

* `FaceDetector`: facenet-pytorch's MTCNN (P-, R- and O-net; all three weight files verified) finds every face
  with its box, five landmarks and detection probability.
* `aligned_crop`: a similarity transform maps the five landmarks onto ArcFace's canonical template.
* `face_quality`: size, sharpness, pose and exposure of a face, and an overall score in 0..1.
* `DlibFaceEmbedder`: dlib's 128-d ResNet on chips aligned on MTCNN's landmarks (Euclidean distance; dlib
  documents 0.6 as the same-person threshold).
* `FacenetEmbedder`: facenet-pytorch's InceptionResnetV1 (512-d, unit length) with weights an operator supplies
  (`FacenetEmbedder.from_file`), since none ship in a package.

A similarity score between two faces is investigative information, never an identification.
"""

from __future__ import annotations

import math
import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np

from models.base import Model, ModelError, ModelSpec
from models.face_chips import dlib_chip
from models.specs import DLIB_FACE_EMBEDDING, MTCNN_ONET, MTCNN_PNET, MTCNN_RNET

# ArcFace's (insightface) five reference points in a 112x112 crop: left eye, right eye (as seen in the image),
# nose tip, left and right mouth corners; scaled to the crop size wanted.
ARCFACE_TEMPLATE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                                 [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
ALIGNED_SIZE = 160
DLIB_SAME_PERSON_THRESHOLD = 0.6  # dlib: Euclidean distance < 0.6 "same person" (99.38% on LFW)
DLIB_DIMENSIONS, FACENET_DIMENSIONS = 128, 512

# Quality thresholds; each component score is 0 at or beyond its "poor" limit and 1 at its "good" limit,
# linear in between, and the overall score is their geometric mean (any component at 0 makes the face poor).
MIN_INTER_OCULAR_PX, GOOD_INTER_OCULAR_PX = 20.0, 40.0  # eye centre to eye centre, in the analysed pixels
MIN_SHARPNESS, GOOD_SHARPNESS = 15.0, 100.0  # variance of the Laplacian over the face in the aligned grey crop
GOOD_YAW_DEGREES, MAX_YAW_DEGREES = 15.0, 45.0
DARK_LIMITS, GOOD_BRIGHTNESS = (15.0, 240.0), (50.0, 205.0)  # mean grey level of the face
MIN_CONTRAST, GOOD_CONTRAST = 5.0, 25.0  # standard deviation of the grey levels of the face
GOOD_SCORE, FAIR_SCORE = 0.6, 0.3
# Depth of the nose tip in front of the eyes, relative to the inter-ocular distance (adult anthropometry, about
# 24 mm for 63 mm): a head turned by yaw moves the nose sideways by depth x sin(yaw) while the eyes close up by
# cos(yaw), so the nose offset over the eye distance is NOSE_DEPTH x tan(yaw).
NOSE_DEPTH = 0.375


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """`pixels` checked to be an H x W x 3 uint8 RGB image, C-contiguous."""
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {pixels.dtype} {pixels.shape}")
    return np.ascontiguousarray(pixels)


@dataclass(frozen=True)
class DetectedFace:
    """One face found by MTCNN: box (x1, y1, x2, y2), five landmarks (x, y) and the detection probability.

    Landmarks are in MTCNN's order: left eye, right eye (as seen in the image), nose tip, left and right mouth
    corners. Coordinates are in the pixels of the image the face was found in.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    probability: float

    def scaled(self, factor: float) -> DetectedFace:
        """The same face with every coordinate multiplied by `factor` (1 / Frame.scale maps back to evidence)."""
        x1, y1, x2, y2 = self.box
        return DetectedFace((x1 * factor, y1 * factor, x2 * factor, y2 * factor),
                            tuple((x * factor, y * factor) for x, y in self.landmarks), self.probability)

    def shifted(self, dx: float, dy: float) -> DetectedFace:
        """The same face moved by (`dx`, `dy`): from a crop's pixels to those of the image it was cut from."""
        x1, y1, x2, y2 = self.box
        return DetectedFace((x1 + dx, y1 + dy, x2 + dx, y2 + dy),
                            tuple((x + dx, y + dy) for x, y in self.landmarks), self.probability)

    def area(self) -> float:
        """The box's area in pixels."""
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _device() -> Any:
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class FaceDetector(Model[np.ndarray, list[DetectedFace]]):
    """facenet-pytorch's MTCNN (keep all faces): boxes, five landmarks and probabilities in an RGB image.

    `spec` is the O-net; the P- and R-net files are verified as well, and all three are loaded from the verified
    paths (facenet-pytorch reads the very same package files, and downloads nothing, for MTCNN).
    """

    spec = MTCNN_ONET
    components: tuple[ModelSpec, ...] = (MTCNN_PNET, MTCNN_RNET, MTCNN_ONET)
    min_face_size = 20  # pixels: MTCNN's default smallest face
    # Ratio between the scales of MTCNN's image pyramid: facenet-pytorch's default, 0.709 (each level half the
    # pixels of the one before). 0.6 was measured and not adopted: 26% less CPU time (zidane.jpg at 1080p: 160 ->
    # 119 ms in its person regions), the same faces in astronaut, camera, grace_hopper, zidane and bus each at
    # ten scales from 0.3 to 1.5, but it loses the turned head of zidane.jpg shrunk to 0.6, rotated and saved at
    # JPEG quality 40 (tests/test_faces.py; 0.709 finds it at 0.94, 0.68 misses it too): recall comes first.
    pyramid_factor = 0.709

    def _load(self, weights: Path) -> None:
        import torch
        from facenet_pytorch import MTCNN

        torch.set_num_threads(1)
        paths = {"pnet": MTCNN_PNET.verify(), "rnet": MTCNN_RNET.verify(), "onet": weights}
        device = _device()
        detector = MTCNN(keep_all=True, post_process=False, min_face_size=self.min_face_size,
                         factor=self.pyramid_factor, device=device)
        for attribute, path in paths.items():
            state = torch.load(path, map_location=device, weights_only=True)
            getattr(detector, attribute).load_state_dict(state, strict=True)
        # R- and O-net run on batches of candidate crops, where PyTorch's CPU max-pooling is slow in the default
        # (NCHW) layout and 7x faster channels-last: MTCNN takes 39% less CPU time over 18 photo scales, with the
        # same faces and boxes, landmarks and probabilities within 2e-4 (floating-point summation order).
        for network in (detector.rnet, detector.onet):
            network.to(memory_format=torch.channels_last)
        self._mtcnn = detector.eval()

    def _warm_up(self) -> None:
        ramp = np.linspace(0, 255, 160 * 160 * 3).reshape(160, 160, 3)
        self._predict(ramp.astype(np.uint8))

    def _predict(self, inputs: np.ndarray) -> list[DetectedFace]:
        """Every face MTCNN finds, largest first; boxes are clipped to the image."""
        image = _rgb(inputs)
        height, width = image.shape[:2]
        if min(height, width) < self.min_face_size:
            return []
        import torch

        with torch.inference_mode():
            boxes, probabilities, points = self._mtcnn.detect(image, landmarks=True)
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        points = np.asarray(points, dtype=np.float64)
        faces = []
        for box, probability, landmarks in zip(boxes, probabilities, points, strict=True):
            x1, x2 = np.clip(box[[0, 2]], 0, width)
            y1, y2 = np.clip(box[[1, 3]], 0, height)
            faces.append(DetectedFace((float(x1), float(y1), float(x2), float(y2)),
                                      tuple((float(x), float(y)) for x, y in landmarks), float(probability)))
        return faces

    def provenance(self) -> dict[str, Any]:
        """All three networks of MTCNN, and the settings that decide which faces it can find."""
        return {"name": "mtcnn", "package": self.spec.package, "version": self.spec.package_version(),
                "licence": self.spec.licence, "runtime": self.spec.runtime,
                "min_face_size": self.min_face_size, "pyramid_factor": self.pyramid_factor,
                "networks": [spec.provenance() for spec in self.components]}


def alignment_matrix(face: DetectedFace, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The 2 x 3 similarity transform from the image onto ArcFace's template scaled to `size` x `size`."""
    import cv2

    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    source = np.asarray(face.landmarks, dtype=np.float32)
    matrix, _ = cv2.estimateAffinePartial2D(source, template, method=cv2.LMEDS)
    if matrix is None:  # OpenCV found no consensus: the similarity that maps the two eyes exactly
        return _eye_similarity(source[:2], template[:2])
    return np.asarray(matrix, dtype=np.float64)


def _eye_similarity(eyes: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity (rotation, uniform scale, shift) taking `eyes[0]`, `eyes[1]` onto `target`."""
    source_line = complex(*(eyes[1] - eyes[0])) or complex(1e-6, 0)
    rotation_scale = complex(*(target[1] - target[0])) / source_line
    shift = complex(*target[0]) - rotation_scale * complex(*eyes[0])
    a, b = rotation_scale.real, rotation_scale.imag
    return np.array([[a, -b, shift.real], [b, a, shift.imag]], dtype=np.float64)


def aligned_crop(pixels: np.ndarray, face: DetectedFace, size: int = ALIGNED_SIZE) -> np.ndarray:
    """The face as a `size` x `size` RGB crop, eyes, nose and mouth on ArcFace's template (black outside)."""
    import cv2

    return cv2.warpAffine(_rgb(pixels), alignment_matrix(face, size), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


def _ramp(value: float, poor: float, good: float) -> float:
    """0 at `poor`, 1 at `good`, linear in between (either direction)."""
    if good == poor:
        return 1.0 if value >= good else 0.0
    return float(min(1.0, max(0.0, (value - poor) / (good - poor))))


def face_quality(pixels: np.ndarray, face: DetectedFace, aligned: np.ndarray | None = None) -> dict[str, Any]:
    """How usable a face is for comparison: measures, component scores, an overall score 0..1 and a grade.

    * size: inter-ocular distance (below 20 px: poor; 40 px and more: good) and the box's shorter side;
    * sharpness: variance of the Laplacian over the face region of the aligned grey crop (160 x 160);
    * pose: yaw from the nose's offset to the eye midpoint along the eye line, roll from the eye line's angle
      (alignment removes roll, so only yaw counts: up to 15 degrees good, 45 and more poor);
    * exposure: mean grey level (good 50-205, poor below 15 or above 240) and contrast (grey standard deviation,
      good from 25, poor at 5 and below).

    The score is the geometric mean of the size, sharpness, pose and exposure scores; grade "good" from 0.6,
    "fair" from 0.3, else "poor". `aligned` may pass the crop from `aligned_crop(pixels, face)` to reuse it.
    """
    import cv2

    crop = aligned if aligned is not None else aligned_crop(pixels, face)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    side = grey.shape[0]
    region = grey[round(side * 0.2):round(side * 0.9), round(side * 0.2):round(side * 0.8)]  # eyes to chin
    sharpness = float(cv2.Laplacian(region, cv2.CV_64F).var())
    brightness, contrast = float(region.mean()), float(region.std())

    left, right, nose = (np.asarray(point, dtype=np.float64) for point in face.landmarks[:3])
    eye_line = right - left
    inter_ocular = float(np.hypot(*eye_line))
    yaw_ratio = float(np.dot(nose - (left + right) / 2, eye_line) / inter_ocular ** 2) if inter_ocular else 0.0
    yaw = math.degrees(math.atan(yaw_ratio / NOSE_DEPTH))
    roll = math.degrees(math.atan2(eye_line[1], eye_line[0]))
    x1, y1, x2, y2 = face.box

    components = {
        "size": _ramp(inter_ocular, MIN_INTER_OCULAR_PX, GOOD_INTER_OCULAR_PX),
        "sharpness": _ramp(sharpness, MIN_SHARPNESS, GOOD_SHARPNESS),
        "pose": _ramp(-abs(yaw), -MAX_YAW_DEGREES, -GOOD_YAW_DEGREES),
        "exposure": min(_ramp(brightness, DARK_LIMITS[0], GOOD_BRIGHTNESS[0]),
                        _ramp(brightness, DARK_LIMITS[1], GOOD_BRIGHTNESS[1]),
                        _ramp(contrast, MIN_CONTRAST, GOOD_CONTRAST)),
    }
    score = float(np.prod(list(components.values())) ** (1 / len(components)))
    measures = {
        "size": f"inter-ocular distance {inter_ocular:.1f} px (poor below {MIN_INTER_OCULAR_PX:.0f}, good from "
                f"{GOOD_INTER_OCULAR_PX:.0f})",
        "sharpness": f"Laplacian variance {sharpness:.1f} (poor below {MIN_SHARPNESS:.0f}, good from "
                     f"{GOOD_SHARPNESS:.0f})",
        "pose": f"yaw about {yaw:.0f} degrees (good up to {GOOD_YAW_DEGREES:.0f}, poor from {MAX_YAW_DEGREES:.0f})",
        "exposure": f"brightness {brightness:.0f}, contrast {contrast:.0f} (good {GOOD_BRIGHTNESS[0]:.0f}-"
                    f"{GOOD_BRIGHTNESS[1]:.0f} and from {GOOD_CONTRAST:.0f})",
    }
    issues = [f"{name}: {measures[name]}" for name, value in components.items() if value < 1.0]
    grade = "good" if score >= GOOD_SCORE else "fair" if score >= FAIR_SCORE else "poor"
    return {"inter_ocular_px": round(inter_ocular, 2), "box_min_side_px": round(min(x2 - x1, y2 - y1), 2),
            "sharpness": round(sharpness, 2), "yaw_ratio": round(yaw_ratio, 4), "yaw_degrees": round(yaw, 1),
            "roll_degrees": round(roll, 1), "brightness": round(brightness, 1), "contrast": round(contrast, 1),
            "components": {name: round(value, 3) for name, value in components.items()},
            "score": round(score, 3), "grade": grade, "issues": issues}


def euclidean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two embeddings (dlib: below DLIB_SAME_PERSON_THRESHOLD suggests one person)."""
    return float(np.linalg.norm(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))


FaceBatch = tuple[np.ndarray, Sequence[DetectedFace]]


class DlibFaceEmbedder(Model[FaceBatch, np.ndarray]):
    """dlib's ResNet face descriptor: (RGB image, faces) -> one 128-d vector per face (N x 128).

    Each face's 150 x 150 chip is aligned on MTCNN's five landmarks (`models.face_chips`), not on points a
    shape predictor places inside MTCNN's box, so that the embedding does not move with the scale the face was
    detected at. Distances are Euclidean; dlib documents 0.6 as its same-person threshold.
    """

    spec = DLIB_FACE_EMBEDDING
    alignment = "mtcnn-5-point-similarity"

    def _load(self, weights: Path) -> None:
        import dlib

        self._net = dlib.face_recognition_model_v1(str(weights))

    def _warm_up(self) -> None:
        ramp = np.linspace(0, 255, 200 * 200 * 3).reshape(200, 200, 3).astype(np.uint8)
        landmarks = ((70.0, 85.0), (130.0, 85.0), (100.0, 115.0), (75.0, 145.0), (125.0, 145.0))
        self._predict((ramp, [DetectedFace((40.0, 40.0, 160.0, 170.0), landmarks, 1.0)]))

    def _predict(self, inputs: FaceBatch) -> np.ndarray:
        pixels, faces = inputs
        image = _rgb(pixels)
        if not faces:
            return np.zeros((0, DLIB_DIMENSIONS), dtype=np.float64)
        chips = [dlib_chip(image, face.landmarks) for face in faces]
        descriptors = self._net.compute_face_descriptor(chips, num_jitters=1)
        return np.asarray([np.asarray(descriptor, dtype=np.float64) for descriptor in descriptors])

    def provenance(self) -> dict[str, Any]:
        """The descriptor network and how its chips are aligned (on the detector's landmarks)."""
        return {**self.spec.provenance(), "alignment": self.alignment}


class FacenetEmbedder(Model[np.ndarray, np.ndarray]):
    """FaceNet (facenet-pytorch's InceptionResnetV1): aligned 160 x 160 RGB crops -> unit 512-d vectors (N x 512).

    No weights ship in a package, so an operator configures a state dict file and its SHA-256:
    `FacenetEmbedder.from_file(path, sha256)`. It is read with `torch.load(weights_only=True)` (no code runs)
    and must match the architecture exactly (`strict=True`); only the classification head of the published
    checkpoints (`logits.*`), which embeddings do not use, is set aside.
    """

    HEAD_KEYS = frozenset({"logits.weight", "logits.bias"})
    DEFAULT_NAME = "facenet-inception-resnet-v1"
    DEFAULT_LICENCE = "operator-supplied weights (facenet-pytorch code MIT)"

    def __init__(self) -> None:
        if not hasattr(type(self), "spec"):
            raise ModelError("FaceNet weights are configured by the operator: use FacenetEmbedder.from_file()")
        super().__init__()

    @classmethod
    def from_file(cls, path: Path, sha256: str, name: str = DEFAULT_NAME,
                  licence: str = DEFAULT_LICENCE) -> FacenetEmbedder:
        """An embedder for the state dict at `path`, which must hash to `sha256` when loaded."""
        digest = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ModelError(f"{name}: the expected SHA-256 must be 64 hex digits, got {sha256!r}")
        weights = Path(path).expanduser().resolve()
        spec = ModelSpec(name=name, package="facenet-pytorch", module="facenet_pytorch", resource=weights.name,
                         path=str(weights), sha256=digest, licence=licence, runtime="torch",
                         input_size=(ALIGNED_SIZE, ALIGNED_SIZE),
                         description="FaceNet InceptionResnetV1 (facenet-pytorch) with operator-configured weights")
        configured = type(cls.__name__, (cls,), {"spec": spec, "__module__": cls.__module__, "__doc__": cls.__doc__})
        return cast(FacenetEmbedder, configured())

    def _load(self, weights: Path) -> None:
        import torch
        from facenet_pytorch import InceptionResnetV1

        torch.set_num_threads(1)
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
            raise ModelError(f"{self.spec.name}: {weights} is not a loadable PyTorch state dict: {exc}") from exc
        if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
            raise ModelError(f"{self.spec.name}: {weights} does not hold a state dict of tensors")
        network = InceptionResnetV1(pretrained=None, classify=False)
        try:
            network.load_state_dict({key: value for key, value in state.items() if key not in self.HEAD_KEYS},
                                    strict=True)
        except RuntimeError as exc:
            raise ModelError(f"{self.spec.name}: {weights} does not match InceptionResnetV1: {exc}") from exc
        self._device = _device()
        self._net = network.eval().to(self._device)

    def _warm_up(self) -> None:
        self._predict(np.full((1, ALIGNED_SIZE, ALIGNED_SIZE, 3), 128, dtype=np.uint8))

    def _predict(self, inputs: np.ndarray) -> np.ndarray:
        """Embeddings of one crop (160 x 160 x 3) or a batch (N x 160 x 160 x 3) of uint8 RGB crops."""
        import torch
        from facenet_pytorch import fixed_image_standardization

        batch = inputs[None] if inputs.ndim == 3 else inputs
        if batch.ndim != 4 or batch.shape[1:] != (ALIGNED_SIZE, ALIGNED_SIZE, 3) or batch.dtype != np.uint8:
            raise ValueError(f"expected N x {ALIGNED_SIZE} x {ALIGNED_SIZE} x 3 uint8 crops, got {batch.dtype} "
                             f"{batch.shape}")
        if not len(batch):
            return np.zeros((0, FACENET_DIMENSIONS), dtype=np.float32)
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float()
        with torch.inference_mode():
            vectors = self._net(fixed_image_standardization(tensor).to(self._device)).cpu().numpy()
        return np.asarray(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), dtype=np.float32)
