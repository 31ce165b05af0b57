"""The precision-recall plot of the accuracy report: one panel per analyzer, one curve per object class.

Each curve joins the (recall, precision) points of the confidence sweep; real photos solid, scenes rendered from
real crops dashed. A metric with no labels in a group (plates on real photos, where none shows a plate) has no
recall: its panel says how many false positives the analyzer reported there instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PANELS = (("objects", "objects (per class)"), ("faces", "faces"), ("plates", "plates (reading + box)"),
          ("ocr", "OCR words"))
STYLES = {"real": "-", "rendered": "--"}


def _points(entry: dict[str, Any]) -> tuple[list[float], list[float]]:
    points = [(point["recall"], point["precision"]) for point in entry["curve"]
              if point["recall"] is not None and point["precision"] is not None]
    return [recall for recall, _ in points], [precision for _, precision in points]


def plot(report: dict[str, Any], path: Path) -> None:
    """Writes the PNG (matplotlib, headless Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 2, figsize=(12, 10))
    for axis, (metric, title) in zip(axes.flat, PANELS, strict=True):
        notes = []
        for group, style in STYLES.items():
            entry = report["groups"][group][metric]
            curves = entry["by_class"] if metric == "objects" else {metric: entry}
            for name, curve in curves.items():
                if not curve["labels"]:
                    if curve["predictions"]:
                        notes.append(f"{group}: {name} unlabelled, {curve['reported']['fp']} false positive(s)")
                    continue
                recall, precision = _points(curve)
                axis.plot(recall, precision, style, marker="o", markersize=3,
                          label=f"{name} ({group}, AP {curve['average_precision']})")
            if not entry["labels"] and entry["images"]:
                notes.append(f"{group}: no labels; {entry['reported']['fp']} false positive(s) "
                             f"on {entry['images']} image(s)")
        axis.set_title(title)
        axis.set_xlabel("recall")
        axis.set_ylabel("precision")
        axis.set_xlim(-0.02, 1.02)
        axis.set_ylim(-0.02, 1.05)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=7, loc="lower left")
        for row, note in enumerate(notes[:8]):  # below the curves' usual top-left corner, right of the legend
            axis.text(0.42, 0.62 - row * 0.05, note, transform=axis.transAxes, fontsize=7, va="top",
                      bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1})
    figure.suptitle(f"Locard accuracy, IoU >= {report['min_iou']} (commit {str(report.get('commit'))[:10]})")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
