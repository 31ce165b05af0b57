"""The accuracy evaluation: its matching and precision-recall arithmetic on made-up boxes, its labels, and the whole
script on a reduced set of real images (models loaded: run it under the heavy-work lock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.accuracy_data import real_images
from evaluation.accuracy_metrics import Prediction, Truth, average_precision, iou, match, normalise_text, summarise


def test_iou_of_known_boxes() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges share no area
    assert iou((0, 0, 0, 10), (0, 0, 10, 10)) == 0.0  # an empty box


def test_matching_is_by_class_iou_and_confidence_order() -> None:
    labels = [Truth("a", "car", (0, 0, 100, 100)), Truth("a", "person", (200, 0, 250, 100))]
    predicted = [Prediction("a", "car", 0.9, (5, 5, 100, 100)),       # right
                 Prediction("a", "car", 0.8, (0, 0, 100, 100)),       # a duplicate of a claimed car: false positive
                 Prediction("a", "truck", 0.7, (200, 0, 250, 100)),   # wrong class
                 Prediction("b", "person", 0.6, (200, 0, 250, 100)),  # wrong image
                 Prediction("a", "person", 0.5, (230, 0, 290, 100))]  # IoU 20/90 < 0.5
    matched = match(labels, predicted)
    assert [entry.prediction.confidence for entry in matched] == [0.9, 0.8, 0.7, 0.6, 0.5]
    assert [entry.truth for entry in matched] == [0, None, None, None, None]


def test_a_less_confident_better_box_does_not_steal_the_label() -> None:
    labels = [Truth("a", "car", (0, 0, 100, 100))]
    predicted = [Prediction("a", "car", 0.4, (0, 0, 100, 100)), Prediction("a", "car", 0.9, (0, 0, 70, 100))]
    matched = match(labels, predicted)
    assert [(entry.prediction.confidence, entry.true_positive) for entry in matched] == [(0.9, True), (0.4, False)]


def test_words_match_as_a_multiset_of_normalised_text() -> None:
    assert normalise_text("Eléctrico,") == "ELECTRICO"
    assert normalise_text("SOL/SEVILLA") == "SOLSEVILLA"
    labels = [Truth("p", "the"), Truth("p", "the"), Truth("p", "Región")]
    predicted = [Prediction("p", "THE", 0.9), Prediction("p", "the.", 0.8), Prediction("p", "the", 0.7),
                 Prediction("p", "region", 0.6)]
    assert [entry.true_positive for entry in match(labels, predicted, by_text=True)] == [True, True, False, True]


def test_summary_counts_and_curve() -> None:
    labels = [Truth("a", "car", (0, 0, 10, 10)), Truth("a", "car", (20, 0, 30, 10)), Truth("b", "car", (0, 0, 10, 10))]
    predicted = [Prediction("a", "car", 0.9, (0, 0, 10, 10)), Prediction("b", "car", 0.3, (0, 0, 10, 10)),
                 Prediction("a", "car", 0.6, (50, 50, 60, 60))]
    summary = summarise(labels, predicted, thresholds=(0.0, 0.5, 0.95))
    assert summary["reported"] == {"threshold": 0.0, "tp": 2, "fp": 1, "fn": 1, "precision": 0.6667,
                                   "recall": 0.6667}
    assert [(p["tp"], p["fp"], p["fn"]) for p in summary["curve"]] == [(2, 1, 1), (1, 1, 2), (0, 0, 3)]
    assert summary["curve"][2]["precision"] is None  # nothing kept: precision undefined, not 0 or 1
    # ranks: TP (r 1/3, p 1), FP, TP (r 2/3, p 2/3): area = 1/3 * 1 + 1/3 * 2/3
    assert summary["average_precision"] == pytest.approx(1 / 3 + 2 / 9, abs=1e-4)


def test_empty_scene_counts_every_prediction_against_precision() -> None:
    summary = summarise([], [Prediction("stars", "8", 0.05, (0, 0, 5, 5))])
    assert summary["reported"]["fp"] == 1
    assert summary["reported"]["precision"] == 0.0
    assert summary["reported"]["recall"] is None
    assert summary["average_precision"] is None
    assert average_precision([], 0) is None


def test_hand_labels_point_at_real_files_and_hold_boxes_inside_them() -> None:
    from PIL import Image

    images = real_images()
    assert {"bus", "zidane", "hubble_deep_field"} <= {image.name for image in images}
    for image in images:
        with Image.open(image.path) as opened:
            width, height = opened.size
        boxes = [box for _, box in image.objects] + list(image.faces)
        for x1, y1, x2, y2 in boxes:
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, (image.name, (x1, y1, x2, y2))


def _numbers(value: object) -> list[float]:
    if isinstance(value, dict):
        return [number for key, item in value.items() if key in ("precision", "recall", "average_precision")
                for number in ([item] if isinstance(item, float | int) else [])] + [
            number for item in value.values() if isinstance(item, dict | list) for number in _numbers(item)]
    if isinstance(value, list):
        return [number for item in value for number in _numbers(item)]
    return []


def test_the_script_writes_json_and_plot_on_a_reduced_set(tmp_path: Path) -> None:
    from evaluation.eval_accuracy import main

    main(["--images", "bus", "hubble_deep_field", "car_park", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "accuracy.json").read_text(encoding="utf-8"))
    png = (tmp_path / "accuracy_pr.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert [image["name"] for image in report["images"]] == ["bus", "hubble_deep_field", "car_park"]
    assert report["errors"] == []
    real, rendered = report["groups"]["real"], report["groups"]["rendered"]
    assert real["objects"]["labels"] == 5 and rendered["objects"]["labels"] == 5
    assert real["objects"]["by_class"]["person"]["labels"] == 4
    assert real["ocr"]["labels"] == 14 and real["faces"]["labels"] == 2
    assert set(report["per_image"]["hubble_deep_field"]) >= {"objects", "faces", "plates", "ocr"}
    numbers = _numbers(report["groups"])
    assert numbers and all(0.0 <= number <= 1.0 for number in numbers)
