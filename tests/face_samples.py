"""Helpers shared by the faces analyzer's tests: run it on a file as the dispatcher would, save and measure images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from storage.messages import UpstreamFinding
from tests.media_samples import evidence
from workers.analyzers.base import AnalysisLimits, FindingData
from workers.analyzers.faces import FacesAnalyzer

ORIENTATION = 0x0112  # the EXIF tag


def analyze_faces(analyzer: FacesAnalyzer, path: Path,
                  objects: list[UpstreamFinding] | None = None) -> list[FindingData]:
    """The analyzer's findings for `path`, with `objects` as its upstream findings (None: `objects` did not run),
    each checked to be JSON without NaN, a "faces.face" and of probability 0.9 or more."""
    item = evidence(path) if objects is None else dataclasses.replace(evidence(path), upstream={"objects": objects})
    findings = analyzer.analyze(item, AnalysisLimits())
    for finding in findings:
        json.dumps(finding.data, allow_nan=False)
        assert finding.kind == "faces.face" and finding.confidence is not None and finding.confidence >= 0.9
    return findings


def save_image(pixels: np.ndarray | Image.Image, path: Path, **options: Any) -> Path:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    image.save(path, **options)
    return path


def inside(point: list[float], box: list[float]) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def centre(finding: FindingData) -> tuple[float, float]:
    x1, y1, x2, y2 = finding.data["box"]
    return (x1 + x2) / 2, (y1 + y2) / 2
