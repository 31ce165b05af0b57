"""Local-feature keypoints and geometric verification: is picture B the same picture as A, or a part of it?

Perceptual hashes (PDQ) compare whole pictures, so a crop, a rotation or a copy pasted into a larger image
defeats them. Local features survive all three: `extract_keypoints` finds ORB keypoints (the default) or SIFT
keypoints (patent expired in 2020; in OpenCV's main package since 4.4) on a grey copy of the image no larger
than `MAX_ANALYSIS_SIDE` (1024) pixels, and `verify` matches two sets (exact brute-force k-nearest-neighbour search with
Lowe's ratio test), then fits a similarity transform (rotation, uniform scale, translation) with RANSAC, and
a homography too when there are enough matches (a re-photographed print or screen). Both fits are
deterministic: OpenCV seeds its RANSAC generator with a constant, and brute-force matching is exact.

The decision rule (`same_image`): at least `MIN_INLIERS` (25) matches agree with one geometric model, and
they are at least `MIN_INLIER_RATIO` (25 %) of the ratio-test matches. Unrelated photos give a handful of
chance matches that no single transform explains; the same picture, even cropped, rotated, rescaled and
re-encoded, gives dozens to hundreds of consistent ones.

Why ORB at 1024 px: the whole vision pipeline has about 600 ms per 1080p photo per core, so extraction must
stay near 150 ms. Measured on one core of a 2-core shared Intel Xeon (`taskset`, `cv2.setNumThreads(1)`,
median of 10 after a warm-up, two runs on a busy machine: the range of the two medians), for two
1920 x 1080 JPEGs (ultralytics' bus.jpg and zidane.jpg resized), 2000 features:

=========================  ===============  ===============  ==================================
detector, longest side     bus 1080p (ms)   zidane (ms)      verify(), same / unrelated (ms)
=========================  ===============  ===============  ==================================
SIFT, 1600 (former)        468-674          383-541          111-138 / 71-114
SIFT, 1024                 237-252          176-181          85-98 / 40-44
ORB, 1600                  73-106           48-77            43-48 / 36-45
ORB, 1024 (default)        47-53            32-37            29-34 / 29-41
=========================  ===============  ===============  ==================================

(OpenCV's SIFT doubles the image before its first octave, so it stays slow even at 1024 px.) Both detectors
at 1024 px pass every test of `tests/test_similarity.py` (a 60 % crop rotated 17 degrees, x 0.7, JPEG q60;
35 % corner crops; a perspective view; a 2x enlargement; three unrelated photos rejected with at most 4
inliers). A harder sweep shows where SIFT is still better: 35 % and 25 % crops at 9 positions of 4 photos
(bus, zidane, astronaut, coffee; JPEG q85) plus the 12 unrelated pairs, 84 decisions. Errors: SIFT 14, ORB
with OpenCV's defaults 38, ORB as configured here 20 (all on small crops of quiet regions, e.g. 25 % of a
512 px photo; no unrelated pair was ever accepted). ORB's plain top-N keeps the strongest corners, which
cluster on the most textured parts, so a crop of a quiet region finds nothing of its own in the original;
here ORB detects `ORB_OVERSAMPLE` (4) times more candidates with a lower FAST threshold (10, not 20) and
keeps them spatially balanced over an 8 x 8 grid (`_balanced`). Oversampling 1/2/3/4/6 gave 38/29/25/20/20
errors; FAST 20 instead of 10 gave 27. Pass `detector="SIFT"` where recall on small partial copies matters
more than time.

This is not a weights-based model: OpenCV's version is the provenance (`provenance()`), recorded in every
`KeypointSet` too. OpenCV is imported lazily.
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Detector = Literal["SIFT", "ORB"]
DETECTORS: tuple[Detector, ...] = ("SIFT", "ORB")
DESCRIPTOR_WIDTH: dict[str, int] = {"SIFT": 128, "ORB": 32}
DEFAULT_DETECTOR: Detector = "ORB"
MAX_ANALYSIS_SIDE = 1024  # keypoints are found on a grey copy whose longest side is at most this
MIN_DETECTION_SIDE = 16  # below this neither detector finds keypoints (ORB keeps 31 px from the border)
ORB_OVERSAMPLE = 4  # ORB detects this many times `max_features` candidates, then keeps a spatially balanced set
ORB_FAST_THRESHOLD = 10  # OpenCV's default is 20; 10 also finds corners in low-contrast regions
ORB_GRID = 8  # the analysed image is cut into ORB_GRID x ORB_GRID cells for the balanced selection
RATIO = 0.75  # Lowe's ratio test: best match distance < RATIO x second best
MIN_INLIERS = 25
MIN_INLIER_RATIO = 0.25
RANSAC_THRESHOLD_PX = 4.0  # reprojection error allowed, in pixels of B's analysed (grey, downscaled) copy
HOMOGRAPHY_MIN_MATCHES = 30  # below this a homography (8 degrees of freedom) fits chance matches too easily
FORMAT_VERSION = 1
MAX_SERIALISED_BYTES = 64 << 20  # refuse npz files that would decompress to more than this
_ARRAYS = ("points", "sizes", "angles", "descriptors", "meta")


def provenance() -> dict[str, Any]:
    """What a finding records about the implementation: OpenCV's version and the verification rule."""
    import cv2

    return {"name": "opencv-local-features", "library": "opencv", "version": cv2.__version__,
            "licence": "Apache-2.0", "ratio": RATIO, "min_inliers": MIN_INLIERS,
            "min_inlier_ratio": MIN_INLIER_RATIO, "max_analysis_side": MAX_ANALYSIS_SIDE,
            "default_detector": DEFAULT_DETECTOR,
            "orb": {"oversample": ORB_OVERSAMPLE, "fast_threshold": ORB_FAST_THRESHOLD, "grid": ORB_GRID}}


@dataclass(frozen=True, eq=False)
class KeypointSet:
    """Keypoints of one image with their descriptors, in the pixel coordinates of the image they came from.

    `points` are (x, y) in the image given to `extract_keypoints` (float32), `sizes` their diameters in the
    same pixels and `angles` their orientations in degrees (float16, -1 where the detector gives none);
    `descriptors` are uint8 (SIFT: 128 values, integers in OpenCV already; ORB: 32 bytes). `scale` is the
    factor from that image to the grey copy the detector saw (1.0 when it was small enough).
    """

    detector: Detector
    points: np.ndarray
    sizes: np.ndarray
    angles: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]  # (width, height) of the image given to extract_keypoints
    scale: float
    opencv_version: str

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"unknown detector {self.detector!r}; known: {', '.join(DETECTORS)}")
        count = self.points.shape[0]
        expected = {"points": (count, 2), "sizes": (count,), "angles": (count,),
                    "descriptors": (count, DESCRIPTOR_WIDTH[self.detector])}
        for name, shape in expected.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")
        if self.descriptors.dtype != np.uint8:
            raise ValueError(f"descriptors must be uint8, not {self.descriptors.dtype}")
        if not (0 < self.scale <= 1) or min(self.image_size) < 1:
            raise ValueError(f"invalid scale {self.scale} or image size {self.image_size}")

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def to_bytes(self) -> bytes:
        """A compressed npz: the four arrays, and the metadata as UTF-8 JSON in a uint8 array (no pickle)."""
        meta = {"format": FORMAT_VERSION, "detector": self.detector, "image_size": list(self.image_size),
                "scale": self.scale, "opencv_version": self.opencv_version}
        buffer = io.BytesIO()
        np.savez_compressed(buffer, points=self.points.astype(np.float32), sizes=self.sizes.astype(np.float16),
                            angles=self.angles.astype(np.float16), descriptors=self.descriptors,
                            meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8))
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> KeypointSet:
        """Read what `to_bytes` wrote; anything else (or anything too large) is a `ValueError`."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                total = sum(info.file_size for info in archive.infolist())
            if total > MAX_SERIALISED_BYTES:
                raise ValueError(f"keypoint file would decompress to {total:,} bytes, over the limit")
            with np.load(io.BytesIO(data), allow_pickle=False) as archive:
                missing = sorted(set(_ARRAYS) - set(archive.files))
                if missing:
                    raise ValueError(f"not a keypoint file: missing {', '.join(missing)}")
                arrays = {name: archive[name] for name in _ARRAYS}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (zipfile.BadZipFile, OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a keypoint file: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise ValueError(f"unsupported keypoint file format {found!r}")
        try:
            width, height = (int(value) for value in meta["image_size"])
            return cls(detector=meta["detector"], points=arrays["points"].astype(np.float32),
                       sizes=arrays["sizes"].astype(np.float16), angles=arrays["angles"].astype(np.float16),
                       descriptors=arrays["descriptors"], image_size=(width, height), scale=float(meta["scale"]),
                       opencv_version=str(meta["opencv_version"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a keypoint file: bad metadata ({exc!r})") from exc


@dataclass(frozen=True)
class Verification:
    """The outcome of matching two keypoint sets and fitting one geometric transform from A to B.

    `rotation_deg` is counter-clockwise as displayed (Pillow's `Image.rotate` convention) and `scale` is B's
    size over A's, both from the similarity transform, and None unless at least `MIN_INLIERS` matches support
    it; `model` names the transform that explains the most matches ("similarity" or "homography"), whose
    inlier count decides.
    """

    matches: int  # ratio-test matches, one per keypoint of B at most
    inliers: int
    inlier_ratio: float
    rotation_deg: float | None
    scale: float | None
    model: str | None
    same_image: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the rule that decided."""
        return {"matches": self.matches, "inliers": self.inliers, "inlier_ratio": round(self.inlier_ratio, 4),
                "rotation_deg": None if self.rotation_deg is None else round(self.rotation_deg, 3),
                "scale": None if self.scale is None else round(self.scale, 5), "model": self.model,
                "same_image": self.same_image,
                "rule": f"inliers >= {MIN_INLIERS} and inlier_ratio >= {MIN_INLIER_RATIO}"}


def _balanced(keypoints: list[Any], count: int, shape: tuple[int, int]) -> list[Any]:
    """`count` of the keypoints, spread over the image: the strongest of every grid cell first, then the
    second strongest of every cell, and so on (ties by response, then by detection order: deterministic)."""
    if len(keypoints) <= count:
        return keypoints
    height, width = shape
    points = np.array([keypoint.pt for keypoint in keypoints], dtype=np.float64).reshape(-1, 2)
    response = np.array([keypoint.response for keypoint in keypoints], dtype=np.float64)
    column = np.clip((points[:, 0] * ORB_GRID / width).astype(np.int64), 0, ORB_GRID - 1)
    row = np.clip((points[:, 1] * ORB_GRID / height).astype(np.int64), 0, ORB_GRID - 1)
    cell = row * ORB_GRID + column
    by_cell = np.lexsort((np.arange(len(keypoints)), -response, cell))  # cell, then strongest first
    first = np.searchsorted(cell[by_cell], cell[by_cell], side="left")
    rank = np.empty(len(keypoints), dtype=np.int64)
    rank[by_cell] = np.arange(len(keypoints)) - first  # 0 for the strongest keypoint of its cell
    chosen = np.lexsort((np.arange(len(keypoints)), -response, rank))[:count]
    return [keypoints[i] for i in chosen]


def extract_keypoints(pixels: np.ndarray, max_features: int = 2000,
                      detector: Detector = DEFAULT_DETECTOR) -> KeypointSet:
    """Keypoints of an 8-bit RGB (H x W x 3) or grey (H x W) image, at most `max_features` of them.

    The image is converted to grey and downscaled (area averaging) so its longest side is at most
    `MAX_ANALYSIS_SIDE`; the points are mapped back to the coordinates of `pixels`. ORB detects
    `ORB_OVERSAMPLE` times more candidates than it keeps and keeps a spatially balanced set (`_balanced`),
    so that a crop of a quiet region of the picture still finds keypoints of its own in the original.
    """
    import cv2

    if detector not in DETECTORS:
        raise ValueError(f"unknown detector {detector!r}; known: {', '.join(DETECTORS)}")
    if max_features < 1:
        raise ValueError("max_features must be at least 1")
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ValueError(f"expected H x W or H x W x 3 uint8 pixels, got {pixels.shape} {pixels.dtype}")
    height, width = pixels.shape[:2]
    if min(height, width) < 1:
        raise ValueError(f"empty image {pixels.shape}")
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY) if pixels.ndim == 3 else np.ascontiguousarray(pixels)
    scale = min(1.0, MAX_ANALYSIS_SIDE / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
        scale = size[0] / width if width >= height else size[1] / height
    if min(grey.shape[:2]) < MIN_DETECTION_SIDE:
        found, descriptors = [], None  # OpenCV's pyramids fail on 1-pixel sides; nothing can be found there
    elif detector == "SIFT":
        finder: Any = cv2.SIFT.create(nfeatures=max_features)
        found, descriptors = finder.detectAndCompute(grey, None)
    else:
        finder = cv2.ORB.create(nfeatures=max_features * ORB_OVERSAMPLE, fastThreshold=ORB_FAST_THRESHOLD)
        candidates = _balanced(list(finder.detect(grey, None)), max_features, grey.shape[:2])
        found, descriptors = finder.compute(grey, candidates) if candidates else ([], None)
    keypoints = list(found)
    if descriptors is None or not keypoints:
        keypoints, descriptors = [], np.zeros((0, DESCRIPTOR_WIDTH[detector]), dtype=np.uint8)
    if len(keypoints) > max_features:  # SIFT keeps ties at the response cut-off
        order = np.argsort([-keypoint.response for keypoint in keypoints], kind="stable")[:max_features]
        keypoints, descriptors = [keypoints[i] for i in order], descriptors[order]
    points = np.array([keypoint.pt for keypoint in keypoints], dtype=np.float64).reshape(-1, 2)
    return KeypointSet(
        detector=detector,
        points=((points + 0.5) / scale - 0.5).astype(np.float32),  # pixel centres through the resize
        sizes=np.array([keypoint.size / scale for keypoint in keypoints], dtype=np.float16),
        angles=np.array([keypoint.angle for keypoint in keypoints], dtype=np.float16),
        descriptors=np.clip(np.rint(descriptors), 0, 255).astype(np.uint8),
        image_size=(width, height), scale=scale, opencv_version=cv2.__version__)


def _ratio_matches(a: KeypointSet, b: KeypointSet, ratio: float) -> np.ndarray:
    """(index in A, index in B) pairs that pass the ratio test, keeping the best one per keypoint of B."""
    import cv2

    if a.detector == "SIFT":
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        query, train = a.descriptors.astype(np.float32), b.descriptors.astype(np.float32)
    else:
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        query, train = a.descriptors, b.descriptors
    best: dict[int, tuple[float, int]] = {}
    for pair in matcher.knnMatch(query, train, k=2):
        if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance:
            first = pair[0]
            if first.trainIdx not in best or first.distance < best[first.trainIdx][0]:
                best[first.trainIdx] = (first.distance, first.queryIdx)
    return np.array([(query_index, train_index) for train_index, (_, query_index) in sorted(best.items())],
                    dtype=np.int64).reshape(-1, 2)


def _plausible_homography(matrix: np.ndarray, size: tuple[int, int]) -> bool:
    """A homography that keeps orientation, stays finite over A, and does not collapse or explode it."""
    if not np.all(np.isfinite(matrix)) or abs(matrix[2, 2]) < 1e-12:
        return False
    h = matrix / matrix[2, 2]
    determinant = float(np.linalg.det(h[:2, :2]))
    horizon = abs(h[2, 0]) * size[0] + abs(h[2, 1]) * size[1]
    return 1e-4 < determinant < 1e4 and horizon < 0.5


def verify(a: KeypointSet, b: KeypointSet, *, ratio: float = RATIO) -> Verification:
    """Match A's keypoints to B's and fit a transform from A to B; `same_image` applies the module's rule."""
    import cv2

    if a.detector != b.detector:
        raise ValueError(f"cannot match {a.detector} keypoints against {b.detector} keypoints")
    pairs = _ratio_matches(a, b, ratio) if len(a) >= 2 and len(b) >= 2 else np.zeros((0, 2), dtype=np.int64)
    count = len(pairs)
    if count < 3:
        return Verification(count, 0, 0.0, None, None, None, same_image=False)
    source = a.points[pairs[:, 0]].astype(np.float32)
    target = b.points[pairs[:, 1]].astype(np.float32)
    threshold = RANSAC_THRESHOLD_PX / b.scale
    similarity, mask = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC,
                                                   ransacReprojThreshold=threshold, maxIters=5000,
                                                   confidence=0.999, refineIters=10)
    inliers, model = (int(mask.sum()), "similarity") if similarity is not None else (0, None)
    rotation: float | None = None
    scale: float | None = None
    if similarity is not None and inliers >= MIN_INLIERS:  # a chance fit's angle would only mislead
        scale = math.hypot(float(similarity[0, 0]), float(similarity[1, 0]))
        rotation = math.degrees(math.atan2(-float(similarity[1, 0]), float(similarity[0, 0])))
    if count >= HOMOGRAPHY_MIN_MATCHES:
        homography, homography_mask = cv2.findHomography(source, target, cv2.RANSAC, threshold,
                                                         maxIters=5000, confidence=0.999)
        if homography is not None and _plausible_homography(homography, a.image_size):
            homography_inliers = int(homography_mask.sum())
            if homography_inliers > inliers:
                inliers, model = homography_inliers, "homography"
    inlier_ratio = inliers / count
    same = inliers >= MIN_INLIERS and inlier_ratio >= MIN_INLIER_RATIO
    return Verification(count, inliers, inlier_ratio, rotation, scale, model, same)
