"""Precision and recall of Locard's analyzers against labels: the matching and the curves, with no model in sight.

Matching follows COCO's rule: within one image, predictions are taken in decreasing confidence and each one
claims the unclaimed label it matches best (same class and IoU >= the threshold for boxes; the same normalised
text for words and plate readings). A prediction that claims a label is a true positive, any other a false
positive; a label left unclaimed is a false negative. Because a prediction's match depends only on the ones more
confident than it, one matching serves every confidence threshold: the curve is read off by counting.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Box = tuple[float, float, float, float]
THRESHOLDS = tuple(round(step * 0.05, 2) for step in range(20))  # 0.00 .. 0.95: the points of each curve


@dataclass(frozen=True)
class Truth:
    """One labelled thing in one image: a class (or a text) and, where it has one, a box (x1, y1, x2, y2)."""

    image: str
    label: str
    box: Box | None = None


@dataclass(frozen=True)
class Prediction:
    """One thing an analyzer reported in one image, with its confidence (0-1)."""

    image: str
    label: str
    confidence: float
    box: Box | None = None


@dataclass(frozen=True)
class Matched:
    """A prediction and the label it claimed (its index in the labels given), if any."""

    prediction: Prediction
    truth: int | None = None

    @property
    def true_positive(self) -> bool:
        return self.truth is not None


def iou(first: Box, second: Box) -> float:
    """Intersection over union of two boxes (x1, y1, x2, y2); 0 when either is empty."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (first[2] - first[0]) * (first[3] - first[1]) + (second[2] - second[0]) * (second[3] - second[1])
    return inter / (area - inter) if area > inter else 0.0


def normalise_text(text: str) -> str:
    """A word or plate reading as compared: letters and digits, accents dropped, upper case ("Región-1": "REGION1")."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Z0-9]", "", plain.upper())


def match(truths: Sequence[Truth], predictions: Sequence[Prediction], *, min_iou: float = 0.5,
          by_text: bool = False) -> list[Matched]:
    """Every prediction, most confident first, marked true or false positive (see the module's rule).

    Boxes must overlap by `min_iou` when both sides have one; with `by_text`, labels must be equal once
    normalised (`normalise_text`), otherwise equal as given (classes).
    """
    def same(truth: Truth, prediction: Prediction) -> bool:
        if by_text:
            return normalise_text(truth.label) == normalise_text(prediction.label)
        return truth.label == prediction.label

    claimed: set[int] = set()
    matched = []
    for prediction in sorted(predictions, key=lambda p: (-p.confidence, p.image, p.label)):
        best, best_overlap = None, -1.0
        for index, truth in enumerate(truths):
            if index in claimed or truth.image != prediction.image or not same(truth, prediction):
                continue
            overlap = 1.0 if truth.box is None or prediction.box is None else iou(truth.box, prediction.box)
            if overlap >= min_iou and overlap > best_overlap:
                best, best_overlap = index, overlap
        if best is not None:
            claimed.add(best)
        matched.append(Matched(prediction, best))
    return matched


def ratio(numerator: int, denominator: int) -> float | None:
    """numerator / denominator rounded to 4 places, or None when undefined (nothing to divide by)."""
    return round(numerator / denominator, 4) if denominator else None


def counts_at(matched: Sequence[Matched], labels: int, threshold: float) -> dict[str, float | int | None]:
    """True/false positives, false negatives, precision and recall counting predictions at `threshold` or above."""
    kept = [entry for entry in matched if entry.prediction.confidence >= threshold]
    tp = sum(entry.true_positive for entry in kept)
    fp = len(kept) - tp
    return {"threshold": threshold, "tp": tp, "fp": fp, "fn": labels - tp,
            "precision": ratio(tp, tp + fp), "recall": ratio(tp, labels)}


def average_precision(matched: Sequence[Matched], labels: int) -> float | None:
    """Area under the precision-recall curve, precision made monotone (VOC/COCO all-point); None with no labels."""
    if not labels:
        return None
    points = []
    tp = 0
    for rank, entry in enumerate(matched, start=1):  # `match` returns the most confident first
        tp += entry.true_positive
        points.append((tp / labels, tp / rank))
    area, previous_recall = 0.0, 0.0
    for index, (recall, _) in enumerate(points):
        best_after = max(precision for _, precision in points[index:])
        area += (recall - previous_recall) * best_after
        previous_recall = recall
    return round(area, 4)


def summarise(truths: Sequence[Truth], predictions: Sequence[Prediction], *, min_iou: float = 0.5,
              by_text: bool = False, thresholds: Sequence[float] = THRESHOLDS) -> dict[str, Any]:
    """Counts at every threshold (the curve), at the analyzer's own output (threshold 0), and average precision."""
    matched = match(truths, predictions, min_iou=min_iou, by_text=by_text)
    curve = [counts_at(matched, len(truths), threshold) for threshold in thresholds]
    return {"labels": len(truths), "predictions": len(predictions), "reported": counts_at(matched, len(truths), 0.0),
            "average_precision": average_precision(matched, len(truths)), "curve": curve}
