"""Sliced inference (the SAHI approach) for images much larger than a detector's input: tiles, and merging.

A detector that sees every image at 640 px shrinks a 1,600-px aerial view of a car park 2.5 times, and cars of
30 px become 12 px: too small to be found. Run it on overlapping tiles at their own resolution instead, shift
each tile's boxes back to image coordinates, add the whole-image pass (for objects larger than a tile), and merge:

* `tiles` covers the image with `tile_size` squares overlapping by `overlap_ratio`; the last tile in each
  direction is aligned to the image's edge, so the tiles cover every pixel and none reaches outside;
* `merge` is SAHI's greedy non-maximum merging, class-aware: most confident first, each kept box absorbs the
  boxes of its class that match it (intersection over the smaller box, IoS, by default: a car cut at a tile's
  edge is a box mostly inside the whole car's) and grows to their union, so a cut object is reported once and
  whole; `nms` is plain class-aware non-maximum suppression, for callers that want boxes as detected;
* `sliced_detections` runs a detector (any callable from an H x W x C array to boxes, scores, classes) over the
  tiles and the whole image and merges the results.

Pure numpy and no I/O: boxes are float arrays N x 4 (x1, y1, x2, y2) in pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

TILE_SIZE = 640
OVERLAP_RATIO = 0.2  # SAHI's default
MATCH_THRESHOLD = 0.5  # SAHI's default (IoS, greedy merging)
SLICE_ABOVE = 1.5  # slice images whose longest side exceeds this many detector inputs
Metric = Literal["iou", "ios"]
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes N x 4, scores N, class ids N
Detector = Callable[[np.ndarray], Detections]


@dataclass(frozen=True)
class Tile:
    """A window of the image: its top-left corner and size, in image pixels."""

    x: int
    y: int
    width: int
    height: int

    def window(self, image: np.ndarray) -> np.ndarray:
        """The tile's pixels (a view) of an H x W (x C) image."""
        return image[self.y:self.y + self.height, self.x:self.x + self.width]


def _starts(length: int, size: int, overlap_ratio: float) -> list[int]:
    """Where tiles of `size` start along a side of `length`: a step of size * (1 - overlap), the last one moved
    back to end at the edge."""
    if length <= size:
        return [0]
    step = max(1, int(size * (1.0 - overlap_ratio)))
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


def tiles(width: int, height: int, *, tile_size: int = TILE_SIZE, overlap_ratio: float = OVERLAP_RATIO) -> list[Tile]:
    """Overlapping `tile_size` tiles covering a `width` x `height` image, row by row; a side shorter than a tile
    gets one tile of its own length."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, not {width} x {height}")
    if tile_size < 1 or not 0.0 <= overlap_ratio < 1.0:
        raise ValueError(f"tile size {tile_size} must be positive and overlap {overlap_ratio} in [0, 1)")
    return [Tile(x, y, min(tile_size, width), min(tile_size, height))
            for y in _starts(height, tile_size, overlap_ratio) for x in _starts(width, tile_size, overlap_ratio)]


def needs_slicing(width: int, height: int, input_size: int, *, above: float = SLICE_ABOVE) -> bool:
    """Whether an image is large enough for sliced inference: its longest side over `above` detector inputs."""
    return max(width, height) > above * input_size


def shift(boxes: np.ndarray, tile: Tile) -> np.ndarray:
    """Boxes found in `tile`'s pixels moved to the image's."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) + np.array([tile.x, tile.y, tile.x, tile.y])


def _areas(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(boxes[:, 3] - boxes[:, 1], 0, None)


def overlap(box: np.ndarray, others: np.ndarray, metric: Metric) -> np.ndarray:
    """IoU (intersection over union) or IoS (intersection over the smaller area) of `box` with each of `others`."""
    width = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    intersection = width * height
    area, areas = _areas(box[None, :])[0], _areas(others)
    denominator = area + areas - intersection if metric == "iou" else np.minimum(area, areas)
    return np.divide(intersection, denominator, out=np.zeros_like(intersection), where=denominator > 0)


def _arrays(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray) -> Detections:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores, classes = np.asarray(scores, dtype=np.float64).reshape(-1), np.asarray(classes).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(classes)} classes")
    return boxes, scores, classes


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, metric: Metric = "iou",
        threshold: float = 0.5) -> np.ndarray:
    """Indices of the boxes kept by class-aware greedy NMS (most confident first): a box is dropped when it
    overlaps (`metric`) a kept box of its class by more than `threshold`."""
    boxes, scores, classes = _arrays(boxes, scores, classes)
    order, keep = np.argsort(-scores, kind="stable"), []
    suppressed = np.zeros(len(boxes), dtype=bool)
    for index in order:
        if suppressed[index]:
            continue
        keep.append(index)
        same = classes == classes[index]
        suppressed |= same & (overlap(boxes[index], boxes, metric) > threshold)
    return np.array(keep, dtype=np.int64)


def merge(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, metric: Metric = "ios",
          threshold: float = MATCH_THRESHOLD) -> Detections:
    """Class-aware greedy non-maximum merging (SAHI's GREEDYNMM): most confident first, a box takes every box
    of its class not yet taken whose overlap with it (`metric`) exceeds `threshold`, and becomes their union;
    its score stays the highest. Returns the merged boxes, scores and classes, most confident first."""
    boxes, scores, classes = _arrays(boxes, scores, classes)
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(len(boxes), dtype=bool)
    merged_boxes, merged_scores, merged_classes = [], [], []
    for index in order:
        if taken[index]:
            continue
        group = ~taken & (classes == classes[index]) & (overlap(boxes[index], boxes, metric) > threshold)
        group[index] = True
        taken |= group
        members = boxes[group]
        merged_boxes.append([members[:, 0].min(), members[:, 1].min(), members[:, 2].max(), members[:, 3].max()])
        merged_scores.append(scores[index])
        merged_classes.append(classes[index])
    return (np.array(merged_boxes, dtype=np.float64).reshape(-1, 4), np.array(merged_scores, dtype=np.float64),
            np.array(merged_classes, dtype=classes.dtype))


def sliced_detections(image: np.ndarray, detect: Detector, *, tile_size: int = TILE_SIZE,
                      overlap_ratio: float = OVERLAP_RATIO, whole_image: bool = True, metric: Metric = "ios",
                      threshold: float = MATCH_THRESHOLD) -> Detections:
    """`detect` run on every tile of `image` (and on the whole image when `whole_image`), boxes in image
    pixels, merged (`merge`)."""
    height, width = image.shape[:2]
    found: list[Detections] = []
    for tile in tiles(width, height, tile_size=tile_size, overlap_ratio=overlap_ratio):
        boxes, scores, classes = _arrays(*detect(np.ascontiguousarray(tile.window(image))))
        found.append((shift(boxes, tile), scores, classes))
    if whole_image:
        found.append(_arrays(*detect(image)))
    boxes = np.concatenate([f[0] for f in found])
    scores = np.concatenate([f[1] for f in found])
    classes = np.concatenate([f[2] for f in found])
    return merge(boxes, scores, classes, metric=metric, threshold=threshold)
