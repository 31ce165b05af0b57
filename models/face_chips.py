"""dlib face chips aligned on MTCNN's own five landmarks, so that an embedding does not depend on the scale at
which the face was detected.

dlib's ResNet embeds a 150 x 150 chip on which the face sits where dlib's alignment puts it (`get_face_chip`,
padding 0.25). Locard used to place dlib's 5-point shape predictor inside MTCNN's box and let dlib align from
its points; but that predictor was trained on the boxes of dlib's own detector, and MTCNN's box moves with the
scale it searched at (most for a turned head), so the predicted points, and the embedding, moved with it: on
the turned head of ultralytics' zidane.jpg detected at 0.4x-1.6x, embeddings lay up to 0.475 apart (dlib's
same-person threshold is 0.6). MTCNN's landmarks follow the face rather than the box, so the chip is now the
least-squares similarity (rotation, uniform scale, shift) taking them onto `DLIB_CHIP_TEMPLATE`: the same
face lies at most 0.18 apart over those scales (frontal faces 0.10-0.16, as before).

`DLIB_CHIP_TEMPLATE` is where MTCNN's five points fell on dlib's own chips of the frontal faces of
scikit-image's astronaut (upright and turned 20 degrees) and zidane.jpg, averaged and made left-right symmetric.
The chip is cut by dlib's `extract_image_chip` (its interpolation, and its pyramid for large faces).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DLIB_CHIP_SIZE = 150
# Left eye, right eye (as seen in the image), nose tip, left and right mouth corners, in a 150 x 150 chip.
DLIB_CHIP_TEMPLATE = np.array([[47.5, 46.0], [102.5, 46.0], [75.0, 79.0], [47.9, 100.3], [102.1, 100.3]])


def similarity_matrix(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2 x 3 similarity that takes the points `source` (N x 2) closest to `target` in least squares."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    z = (source - source_mean) @ np.array([1, 1j])
    w = (target - target_mean) @ np.array([1, 1j])
    norm = float(np.vdot(z, z).real)
    k = complex(np.vdot(z, w)) / norm if norm > 0 else complex(1.0, 0.0)
    rotation_scale = np.array([[k.real, -k.imag], [k.imag, k.real]])
    return np.hstack([rotation_scale, (target_mean - rotation_scale @ source_mean)[:, None]])


def chip_details(landmarks: Sequence[tuple[float, float]]) -> object:
    """dlib's `chip_details` of the chip on which `landmarks` (MTCNN's five, image pixels) meet the template."""
    import dlib

    matrix = similarity_matrix(np.asarray(landmarks, dtype=np.float64), DLIB_CHIP_TEMPLATE)
    scale = math.hypot(matrix[0, 0], matrix[1, 0]) or 1.0
    angle = math.atan2(matrix[1, 0], matrix[0, 0])
    centre = np.linalg.solve(matrix[:, :2], np.full(2, DLIB_CHIP_SIZE / 2) - matrix[:, 2])
    half = DLIB_CHIP_SIZE / 2 / scale
    rectangle = dlib.drectangle(centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return dlib.chip_details(rectangle, dlib.chip_dims(DLIB_CHIP_SIZE, DLIB_CHIP_SIZE), -angle)


def dlib_chip(pixels: np.ndarray, landmarks: Sequence[tuple[float, float]]) -> np.ndarray:
    """The 150 x 150 RGB chip dlib's ResNet embeds, aligned on `landmarks` (black outside the image)."""
    import dlib

    return np.ascontiguousarray(np.asarray(dlib.extract_image_chip(pixels, chip_details(landmarks))))
