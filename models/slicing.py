"""Sliced inference (the SAHI approach) for images much larger than a detector's input: tiles, and merging.

A detector that sees every image at 640 px shrinks a 1,600-px aerial view of a car park 2.5 times, and cars of
30 px become 12 px: too small to be found. Run it on overlapping tiles at their own resolution instead, shift
each tile's boxes back to image coordinates, add the whole-image pass (for objects larger than a tile), and merge:

* `tiles` covers the image with `tile_size` squares overlapping by `overlap_ratio`; the last tile in each
  direction is aligned to the image's edge, so the tiles cover every pixel and none reaches outside;
* `slicing_tile_size` grows the tile until a huge image takes at most `MAX_TILES` tiles (a bounded cost);
* `merge` is SAHI's greedy non-maximum merging, class-aware: most confident first, each kept box absorbs the
  boxes of its class that match it (intersection over the smaller box, IoS, by default: a car cut at a tile's
  edge is a box mostly inside the whole car's) and grows to their union, so a cut object is reported once and
  whole; `merge_members` is the same with any merge key (e.g. one key for every vehicle class, so that a car
  one tile calls a truck is still one vehicle) and returns the groups, for callers that keep what was merged;
  `nms` is plain class-aware non-maximum suppression, for callers that want boxes as detected;
* `cut_at_inner_edge` tells which boxes found in a tile touch one of its edges that is not the image's: objects
  the tile saw cut (their neighbour, overlapping, saw more of them);
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
MAX_TILES = 24  # at most this many tiles per image: larger images get larger tiles
MERGE_ROUNDS = 3  # merged boxes are merged again, at most this many rounds in all (see `merge_members`)
TILE_STEP = 32  # tiles grow by this much (the detector's stride) until the image fits in MAX_TILES
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


def cut_at_inner_edge(boxes: np.ndarray, tile: Tile, width: int, height: int, *, margin: float) -> np.ndarray:
    """For each box (image pixels) found in `tile` of a `width` x `height` image: whether it reaches within
    `margin` px of an edge of the tile that is not an edge of the image, i.e. whether the tile saw it cut."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    right, bottom = tile.x + tile.width, tile.y + tile.height
    left_cut = (tile.x > 0) & (boxes[:, 0] <= tile.x + margin)
    top_cut = (tile.y > 0) & (boxes[:, 1] <= tile.y + margin)
    right_cut = (right < width) & (boxes[:, 2] >= right - margin)
    bottom_cut = (bottom < height) & (boxes[:, 3] >= bottom - margin)
    return np.asarray(left_cut | top_cut | right_cut | bottom_cut, dtype=bool)


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


def _greedy_groups(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, metric: Metric, threshold: float,
                   sources: list[frozenset[int]]) -> list[np.ndarray]:
    """One round of greedy merging; a group never holds two boxes of the same source (pass)."""
    order = np.argsort(-scores, kind="stable")
    taken = np.zeros(len(boxes), dtype=bool)
    members: list[np.ndarray] = []
    for index in order:
        if taken[index]:
            continue
        overlaps = overlap(boxes[index], boxes, metric)
        candidates = np.flatnonzero(~taken & (groups == groups[index]) & (overlaps > threshold))
        seen, chosen = set(sources[index]), []
        for other in candidates[np.argsort(-overlaps[candidates], kind="stable")]:
            if other != index and not seen & sources[other]:
                seen |= sources[other]
                chosen.append(int(other))
        taken[[index, *chosen]] = True
        members.append(np.array([index, *sorted(chosen, key=lambda i: -scores[i])], dtype=np.int64))
    return members


def merge_members(boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, *, metric: Metric = "ios",
                  threshold: float = MATCH_THRESHOLD, rounds: int = MERGE_ROUNDS,
                  sources: np.ndarray | None = None) -> list[np.ndarray]:
    """SAHI's greedy non-maximum merging (GREEDYNMM), as groups of indices: most confident first, a box takes
    every box of its group (`groups`: a merge key per box, usually its class) not yet taken whose overlap with
    it (`metric`) exceeds `threshold`. Each group's indices start with its most confident box; groups come most
    confident first.

    Up to `rounds` rounds: the merged boxes (unions) are merged again, because a cut object's most confident
    box may be one of its parts, which does not cover the other parts (the two halves of a bus cut by two tiles
    overlap by less than half) while their union does.

    `sources` (optional, one int per box: the pass that found it, e.g. the tile) keeps apart boxes of the same
    pass, which the detector's own NMS already judged to be different objects (two people one behind the other):
    a group holds at most one box of each source.
    """
    boxes, scores, groups = _arrays(boxes, scores, groups)
    origin = np.arange(len(boxes)) if sources is None else np.asarray(sources).reshape(-1)
    if len(origin) != len(boxes):
        raise ValueError(f"{len(boxes)} boxes and {len(origin)} sources")
    members = _greedy_groups(boxes, scores, groups, metric, threshold, [frozenset({int(o)}) for o in origin])
    for _ in range(rounds - 1):
        unions = np.array([union_box(boxes[group]) for group in members], dtype=np.float64).reshape(-1, 4)
        again = _greedy_groups(unions, scores[[group[0] for group in members]],
                               groups[[group[0] for group in members]], metric, threshold,
                               [frozenset(int(o) for o in origin[group]) for group in members])
        if len(again) == len(members):
            break
        joined = [np.concatenate([members[i] for i in group]) for group in again]
        members = [np.array([group[0], *sorted(group[1:], key=lambda i: -scores[i])], dtype=np.int64)
                   for group in joined]
    return members


def union_box(boxes: np.ndarray) -> list[float]:
    """The smallest box (x1, y1, x2, y2) holding all of `boxes` (N x 4, N >= 1)."""
    return [float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())]


def merge(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, metric: Metric = "ios",
          threshold: float = MATCH_THRESHOLD) -> Detections:
    """Class-aware greedy non-maximum merging (`merge_members` with the class as the group): each group becomes
    the union of its boxes, with its highest score. Returns the merged boxes, scores and classes, most confident
    first."""
    boxes, scores, classes = _arrays(boxes, scores, classes)
    members = merge_members(boxes, scores, classes, metric=metric, threshold=threshold)
    return (np.array([union_box(boxes[group]) for group in members], dtype=np.float64).reshape(-1, 4),
            np.array([scores[group[0]] for group in members], dtype=np.float64),
            np.array([classes[group[0]] for group in members], dtype=classes.dtype))


def slicing_tile_size(width: int, height: int, *, tile_size: int = TILE_SIZE, overlap_ratio: float = OVERLAP_RATIO,
                      max_tiles: int = MAX_TILES, step: int = TILE_STEP) -> int:
    """The tile size for a `width` x `height` image: `tile_size`, grown by `step` until the image takes at most
    `max_tiles` tiles, so that the cost of a huge image stays bounded (each tile is one detector pass)."""
    if max_tiles < 1 or step < 1:
        raise ValueError(f"max_tiles {max_tiles} and step {step} must be positive")
    size = tile_size
    while len(tiles(width, height, tile_size=size, overlap_ratio=overlap_ratio)) > max_tiles:
        size += step
    return size


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
