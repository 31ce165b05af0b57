"""Sliced inference helpers: tiles that cover an image, boxes moved back from tiles, class-aware NMS and merging;
and YOLOv8n on a large scene of small real vehicles, whole-image against sliced."""

from __future__ import annotations

import numpy as np
import pytest

from models.slicing import (
    Tile,
    cut_at_inner_edge,
    merge,
    merge_members,
    needs_slicing,
    nms,
    overlap,
    shift,
    sliced_detections,
    slicing_tile_size,
    tiles,
)
from models.yolo import YoloOnnxDetector
from tests.scene_samples import Label, car_park_scene


@pytest.mark.parametrize(("width", "height", "size", "ratio"), [
    (1600, 1000, 640, 0.2), (1000, 1000, 512, 0.25), (641, 300, 640, 0.2), (3000, 2000, 640, 0.0),
])
def test_tiles_cover_every_pixel_and_stay_inside(width: int, height: int, size: int, ratio: float) -> None:
    covered = np.zeros((height, width), dtype=np.int32)
    found = tiles(width, height, tile_size=size, overlap_ratio=ratio)
    for tile in found:
        assert tile.x >= 0 and tile.y >= 0 and tile.x + tile.width <= width and tile.y + tile.height <= height
        assert (tile.width, tile.height) == (min(size, width), min(size, height))
        covered[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] += 1
    assert covered.min() >= 1
    assert max(t.x + t.width for t in found) == width and max(t.y + t.height for t in found) == height


def test_tiles_overlap_by_the_ratio_and_the_last_one_is_aligned_to_the_edge() -> None:
    xs = sorted({tile.x for tile in tiles(1600, 640, tile_size=640, overlap_ratio=0.2)})
    assert xs == [0, 512, 960]  # step 512 (20% of 640 shared); the last tile ends at 1600
    assert {tile.y for tile in tiles(1600, 640, tile_size=640)} == {0}


def test_an_image_smaller_than_a_tile_is_one_tile() -> None:
    assert tiles(300, 200, tile_size=640) == [Tile(0, 0, 300, 200)]


@pytest.mark.parametrize(("size", "ratio"), [(0, 0.2), (640, 1.0), (640, -0.1)])
def test_bad_tiling_parameters_are_refused(size: int, ratio: float) -> None:
    with pytest.raises(ValueError):
        tiles(1000, 1000, tile_size=size, overlap_ratio=ratio)


def test_needs_slicing_only_well_above_the_input_size() -> None:
    assert needs_slicing(1600, 900, 640) and not needs_slicing(900, 640, 640)


def test_shift_moves_tile_boxes_to_image_pixels() -> None:
    moved = shift(np.array([[10, 20, 30, 40]]), Tile(512, 256, 640, 640))
    assert moved.tolist() == [[522, 276, 542, 296]]


def test_overlap_iou_and_ios() -> None:
    box = np.array([0, 0, 10, 10.0])
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [2, 2, 4, 4], [20, 20, 30, 30.]])
    assert overlap(box, others, "iou").round(4).tolist() == [1.0, round(50 / 150, 4), 0.04, 0.0]
    assert overlap(box, others, "ios").round(4).tolist() == [1.0, 0.5, 1.0, 0.0]


def test_nms_is_class_aware() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60.]])
    keep = nms(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([2, 2, 7, 2]), threshold=0.5)
    assert keep.tolist() == [0, 2, 3]  # the second car is the first one again; the truck on it is kept


def test_merge_joins_an_object_cut_at_a_tile_edge_into_one_whole_box() -> None:
    # A car from x=500 to 560 is seen whole by one tile and cut at x=512 by the next: the cut box lies inside.
    boxes = np.array([[500, 100, 560, 130], [512, 101, 560, 129], [900, 100, 960, 130.]])
    merged_boxes, scores, classes = merge(boxes, np.array([0.6, 0.8, 0.7]), np.array([2, 2, 2]))
    assert merged_boxes.tolist() == [[500, 100, 560, 130], [900, 100, 960, 130]]
    assert scores.tolist() == [0.8, 0.7] and classes.tolist() == [2, 2]


def test_merge_keeps_different_classes_and_distant_boxes_apart() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4], [20, 0, 30, 10.]])
    merged_boxes, _, classes = merge(boxes, np.array([0.9, 0.8, 0.7, 0.6]), np.array([2, 7, 7, 2]))
    assert sorted(classes.tolist()) == [2, 2, 7]
    assert [0, 0, 10, 10] in merged_boxes.tolist() and [20, 0, 30, 10] in merged_boxes.tolist()


def test_merge_of_nothing_is_nothing() -> None:
    boxes, scores, classes = merge(np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=np.int64))
    assert boxes.shape == (0, 4) and scores.shape == (0,) and classes.shape == (0,)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        merge(np.zeros((2, 4)), np.zeros(1), np.zeros(2))


def test_sliced_detections_find_small_objects_once_in_image_pixels() -> None:
    """A stand-in detector that finds bright squares in whatever it is shown, as a real one would, and only
    those of 20 px or more in its own input (as if it saw everything at 640 px)."""
    image = np.zeros((1000, 1600), dtype=np.uint8)
    objects = [(100, 100), (600, 500), (1540, 940), (620, 200)]  # (620, 200) is cut by the first tile's edge
    for x, y in objects:
        image[y:y + 30, x:x + 30] = 255

    def detect(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import cv2

        scale = min(1.0, 640 / max(pixels.shape[:2]))
        count, _, stats, _ = cv2.connectedComponentsWithStats((pixels > 0).astype(np.uint8))
        found = [[x, y, x + w, y + h] for x, y, w, h, _ in stats[1:count] if min(w, h) * scale >= 20]
        boxes = np.array(found, dtype=np.float64).reshape(-1, 4)
        return boxes, np.full(len(boxes), 0.9), np.full(len(boxes), 2)

    whole, _, _ = detect(image)
    assert len(whole) == 0  # 30 px squares are 12 px at 640: too small on the whole image
    boxes, scores, classes = sliced_detections(image, detect, tile_size=640, overlap_ratio=0.2)
    assert sorted(boxes.tolist()) == sorted([[x, y, x + 30, y + 30] for x, y in objects])
    assert scores.tolist() == [0.9] * 4 and set(classes.tolist()) == {2}


@pytest.mark.parametrize(("width", "height", "expected"), [(1600, 1000, 512), (4096, 3072, 928), (6400, 130, 512)])
def test_tile_size_grows_until_a_huge_image_takes_at_most_the_cap(width: int, height: int, expected: int) -> None:
    size = slicing_tile_size(width, height, tile_size=512, max_tiles=24)
    assert size == expected and len(tiles(width, height, tile_size=size)) <= 24
    assert size == 512 or len(tiles(width, height, tile_size=size - 32)) > 24


def test_merge_joins_the_two_halves_of_an_object_cut_by_two_tiles_through_the_whole_box() -> None:
    """The left half is the most confident box and does not cover the right half; the whole box covers both."""
    boxes = np.array([[0, 0, 512, 280], [300, 5, 805, 280], [30, 0, 800, 545.]])
    groups = merge_members(boxes, np.array([0.88, 0.86, 0.84]), np.array([5, 5, 5]))
    assert [sorted(g.tolist()) for g in groups] == [[0, 1, 2]] and groups[0][0] == 0
    assert len(merge_members(boxes, np.array([0.88, 0.86, 0.84]), np.array([5, 5, 5]), rounds=1)) == 2


def test_merge_keeps_boxes_of_one_source_apart() -> None:
    """Two people one behind the other, kept apart by the detector's own NMS in one pass, stay two."""
    boxes = np.array([[0, 0, 100, 300], [40, 10, 120, 290], [0, 0, 110, 300.]])
    scores, classes = np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0])
    assert len(merge_members(boxes, scores, classes)) == 1
    groups = merge_members(boxes, scores, classes, sources=np.array([1, 1, 0]))
    assert sorted(sorted(g.tolist()) for g in groups) == [[0, 2], [1]]


@pytest.fixture(scope="module")
def coco_detector() -> YoloOnnxDetector:
    detector = YoloOnnxDetector()
    detector.load()
    return detector


def _found(labels: list[Label], boxes: np.ndarray, classes: list[str]) -> int:
    """How many labels a detection of their class covers at IoU 0.5 or more."""
    return sum(any(iou >= 0.5 and name == label.label
                   for iou, name in zip(overlap(np.array(label.box), boxes, "iou"), classes, strict=True))
               for label in labels)


def test_sliced_inference_finds_the_small_vehicles_the_whole_image_pass_misses(
        coco_detector: YoloOnnxDetector) -> None:
    """YOLOv8n on a 1,600 x 1,000 car park of real vehicle crops 90-120 px long (36-48 px at 640)."""
    scene, labels = car_park_scene()

    def detect(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        found = coco_detector.predict(np.ascontiguousarray(pixels))
        return (np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4),
                np.array([d.confidence for d in found]), np.array([d.class_id for d in found], dtype=np.int64))

    whole, _, whole_classes = detect(scene)
    boxes, _, classes = sliced_detections(scene, detect, tile_size=512, overlap_ratio=0.2)
    assert _found(labels, whole, [coco_detector.names[int(c)] for c in whole_classes]) <= 2
    assert _found(labels, boxes, [coco_detector.names[int(c)] for c in classes]) >= 4


def test_boxes_touching_an_inner_tile_edge_are_cut_and_image_edges_do_not_count() -> None:
    tile = Tile(409, 0, 512, 512)  # in a 1,600 x 1,000 image: its left and bottom edges are inner, its top is not
    boxes = np.array([[409, 100, 480, 200], [500, 0, 560, 60], [600, 450, 700, 509], [600, 300, 700, 400],
                      [860, 100, 918, 200.]])
    assert cut_at_inner_edge(boxes, tile, 1600, 1000, margin=5).tolist() == [True, False, True, False, True]
    whole = Tile(0, 0, 512, 512)
    assert cut_at_inner_edge(boxes[:1] - [409, 0, 409, 0], whole, 512, 512, margin=5).tolist() == [False]
    assert cut_at_inner_edge(np.zeros((0, 4)), tile, 1600, 1000, margin=5).shape == (0,)
