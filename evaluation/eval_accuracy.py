"""Accuracy of Locard's vision and text analyzers on labelled real images: precision and recall, per analyzer.

    python -m evaluation.eval_accuracy [--images NAME ...] [--no-rendered] [--out DIR]      (or: make accuracy)

Every labelled image (`evaluation/accuracy_data.py`: real photos shipped in installed packages, labelled by hand,
empty scenes among them so that false positives count; and, as a separate group, scenes rendered from real
crops) goes through the analyzers it is labelled for, in-process and through their public interface
(`Analyzer.analyze`), each with its requirements' findings as upstream, as the workers run them. Scored:

* objects, per COCO class and all together: boxes matched at IoU >= 0.5;
* faces: boxes at IoU >= 0.5;
* plates: the reading (letters and digits, exact) and the box; `plate_boxes`: the box alone;
* ocr: words (letters and digits, case and accents ignored), matched as a multiset per image.

Each gets precision and recall at the analyzer's own output (`reported`), along a confidence sweep (`curve`)
and its average precision. Writes `accuracy.json` and `accuracy_pr.png` (precision-recall per class) to
`evaluation/results/` or --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from evaluation.accuracy_data import ANALYZERS, RENDERED, LabelledImage, real_images, rendered_images
from evaluation.accuracy_metrics import Box, Prediction, Truth, match, normalise_text, summarise
from evaluation.common import RESULTS, locard_commit, machine_info
from storage.messages import UpstreamFinding
from tests.hostile_runner import evidence_for, load_analyzers, planned
from workers.analyzers.base import AnalysisLimits, Analyzer, FindingData

MIN_IOU = 0.5
GROUPS = {"real": lambda image: image.group != RENDERED, "rendered": lambda image: image.group == RENDERED,
          "all": lambda image: True}


def _box(values: Any) -> Box | None:
    try:
        x1, y1, x2, y2 = (float(value) for value in values)
    except (TypeError, ValueError):
        return None
    return (x1, y1, x2, y2)


def _confidence(finding: FindingData) -> float:
    return float(finding.confidence) if finding.confidence is not None else 1.0


def ocr_words(finding: FindingData) -> list[tuple[str, float]]:
    """The words of one page finding with their confidences: from its words artifact, else split from its lines."""
    for artifact in finding.artifacts:
        if artifact.name.startswith("words-") and artifact.content_type == "application/json":
            return [(str(word["text"]), float(word.get("confidence", 1.0))) for word in json.loads(artifact.data)]
    return [(word, float(line.get("confidence", 1.0))) for line in finding.data.get("lines", [])
            for word in str(line.get("text", "")).split()]


def predictions(image: LabelledImage, findings: dict[str, list[FindingData]]) -> dict[str, list[Prediction]]:
    """What the analyzers reported on `image`, as scored predictions, per metric."""
    name = image.name
    found: dict[str, list[Prediction]] = {"objects": [], "faces": [], "plates": [], "plate_boxes": [], "ocr": []}
    for finding in findings.get("objects", []):
        if finding.kind == "objects.detection" and finding.data.get("class") not in image.ignore_classes:
            found["objects"].append(Prediction(name, str(finding.data.get("class")), _confidence(finding),
                                               _box(finding.data.get("box"))))
    for finding in findings.get("faces", []):
        if finding.kind == "faces.face":
            found["faces"].append(Prediction(name, "face", _confidence(finding), _box(finding.data.get("box"))))
    for finding in findings.get("plates", []):
        if finding.kind == "plates.plate":
            box = _box(finding.data.get("box"))
            found["plates"].append(Prediction(name, str(finding.data.get("text") or ""), _confidence(finding), box))
            found["plate_boxes"].append(Prediction(name, "plate", _confidence(finding), box))
    ignored = {normalise_text(word) for word in image.ocr_ignore_words}
    for finding in findings.get("ocr", []):
        if finding.kind == "text.page":
            found["ocr"] += [Prediction(name, word, confidence, None) for word, confidence in ocr_words(finding)
                             if normalise_text(word) and normalise_text(word) not in ignored]
    return found


def truths(image: LabelledImage) -> dict[str, list[Truth]]:
    """The labels of `image`, per metric."""
    name = image.name
    return {"objects": [Truth(name, label, box) for label, box in image.objects],
            "faces": [Truth(name, "face", box) for box in image.faces],
            "plates": [Truth(name, text, box) for text, box in image.plates],
            "plate_boxes": [Truth(name, "plate", box) for _, box in image.plates],
            "ocr": [Truth(name, word, None) for word in image.ocr_words if normalise_text(word)]}


ANALYZER_OF = {"objects": "objects", "faces": "faces", "plates": "plates", "plate_boxes": "plates", "ocr": "ocr"}


def run_image(analyzers: dict[str, Analyzer], image: LabelledImage,
              limits: AnalysisLimits) -> tuple[dict[str, list[FindingData]], list[str]]:
    """The findings of each analyzer `image` is labelled for (and of those they require), and any failures."""
    item = evidence_for(image.path)
    wanted = set(image.labelled) & set(analyzers)
    for name in list(wanted):
        wanted |= set(type(analyzers[name]).requires)
    findings: dict[str, list[FindingData]] = {}
    upstream: dict[str, list[UpstreamFinding]] = {}
    errors = []
    for name in [name for name in planned(analyzers, item) if name in wanted]:
        needs = {need: upstream[need] for need in type(analyzers[name]).requires if need in upstream}
        try:
            findings[name] = analyzers[name].analyze(type(item)(**{**item.__dict__, "upstream": needs}), limits)
        except Exception as exc:  # scored as finding nothing, and reported
            errors.append(f"{name} on {image.name}: {type(exc).__name__}: {exc}"[:300])
            continue
        upstream[name] = [finding.as_upstream() for finding in findings[name]]
    return findings, errors


def score(images: Sequence[LabelledImage], found: dict[str, dict[str, list[Prediction]]]) -> dict[str, Any]:
    """Every metric over `images`: objects all together and per class, faces, plates, plate boxes, OCR words."""
    result: dict[str, Any] = {}
    for metric, analyzer in ANALYZER_OF.items():
        scored = [image for image in images if analyzer in image.labelled]
        labels = [truth for image in scored for truth in truths(image)[metric]]
        predicted = [prediction for image in scored for prediction in found[image.name][metric]]
        entry = {"images": len(scored), **summarise(labels, predicted, min_iou=MIN_IOU, by_text=metric in
                                                    ("plates", "ocr"))}
        if metric == "objects":
            classes = sorted({truth.label for truth in labels} | {prediction.label for prediction in predicted})
            entry["by_class"] = {name: summarise([t for t in labels if t.label == name],
                                                 [p for p in predicted if p.label == name], min_iou=MIN_IOU)
                                 for name in classes}
        result[metric] = entry
    return result


def per_image(image: LabelledImage, found: dict[str, list[Prediction]]) -> dict[str, Any]:
    """What went right and wrong on one image, at the analyzers' own output: counts, false positives, misses."""
    detail: dict[str, Any] = {}
    for metric, analyzer in ANALYZER_OF.items():
        if analyzer not in image.labelled:
            continue
        labels, by_text = truths(image)[metric], metric in ("plates", "ocr")
        matched = match(labels, found[metric], min_iou=MIN_IOU, by_text=by_text)
        claimed = {entry.truth for entry in matched if entry.truth is not None}
        detail[metric] = {"tp": len(claimed), "fp": len(matched) - len(claimed), "fn": len(labels) - len(claimed),
                          "false_positives": [_shown(entry.prediction) for entry in matched
                                              if not entry.true_positive],
                          "missed": [truth.label if truth.box is None else [truth.label, list(truth.box)]
                                     for index, truth in enumerate(labels) if index not in claimed]}
    return detail


def _shown(prediction: Prediction) -> str:
    box = "" if prediction.box is None else " [" + ", ".join(f"{v:.0f}" for v in prediction.box) + "]"
    return f"{prediction.label} {prediction.confidence:.2f}{box}"


def evaluate(images: Sequence[LabelledImage], analyzers: dict[str, Analyzer]) -> dict[str, Any]:
    """Runs and scores every image; the JSON report."""
    limits = AnalysisLimits()
    found, errors, detail = {}, [], {}
    for image in images:
        findings, failed = run_image(analyzers, image, limits)
        errors += failed
        found[image.name] = predictions(image, findings)
        detail[image.name] = per_image(image, found[image.name])
    return {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), **locard_commit(),
        "machine": machine_info(), "min_iou": MIN_IOU,
        "analyzers": {name: type(analyzer).version for name, analyzer in sorted(analyzers.items())},
        "images": [{"name": image.name, "group": image.group, "file": image.path.name,
                    "labelled": sorted(image.labelled)} for image in images],
        "groups": {group: score([image for image in images if keep(image)], found) for group, keep in GROUPS.items()},
        "per_image": detail, "errors": errors,
    }


def select(images: Iterable[LabelledImage], names: Sequence[str] | None) -> list[LabelledImage]:
    """The images named (all when none is), in the order given by the labels."""
    chosen = list(images)
    if names:
        unknown = sorted(set(names) - {image.name for image in chosen})
        if unknown:
            raise SystemExit(f"unknown images: {', '.join(unknown)}")
        chosen = [image for image in chosen if image.name in names]
    return chosen


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", nargs="*", help="only these images (names as in the labels; car_park, 'plate CZ')")
    parser.add_argument("--no-rendered", action="store_true", help="real photos only")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for accuracy.json and accuracy_pr.png")
    args = parser.parse_args(argv)
    from evaluation.accuracy_plot import plot

    with tempfile.TemporaryDirectory(prefix="locard-accuracy-") as folder:
        images = real_images() + ([] if args.no_rendered else rendered_images(Path(folder)))
        images = select(images, args.images)
        report = evaluate(images, load_analyzers(list(ANALYZERS)))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "accuracy.json").write_text(json.dumps(report, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    plot(report, args.out / "accuracy_pr.png")
    for group, metrics in report["groups"].items():
        for metric, entry in metrics.items():
            reported = entry["reported"]
            print(f"{group:9s} {metric:12s} P={reported['precision']} R={reported['recall']} tp={reported['tp']} "
                  f"fp={reported['fp']} fn={reported['fn']} AP={entry['average_precision']}")
    for error in report["errors"]:
        print("error:", error)
    return report


if __name__ == "__main__":
    main()
