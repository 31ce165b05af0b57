"""The labelled images the accuracy evaluation scores: real photos from installed packages, and rendered scenes.

Real photos: `evaluation/labels/real_images.json` (labels drawn by hand; see its "about"), each image read from
the package that ships it. Rendered from real crops, kept as a separate group: the car-park scene of
`tests/scene_samples.py` (real vehicle crops pasted on a real gravel photo) and, where `tests/plate_samples.py`
is present, plates of many countries rendered with a DejaVu font onto the real bus photo.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation.accuracy_metrics import Box

LABELS = Path(__file__).resolve().parent / "labels" / "real_images.json"
ANALYZERS = ("objects", "faces", "plates", "ocr")
RENDERED = "rendered from real crops"


@dataclass(frozen=True)
class LabelledImage:
    """One image and what is in it, for the analyzers named in `labelled` (the others are not scored on it)."""

    name: str
    path: Path
    group: str
    labelled: frozenset[str]
    objects: tuple[tuple[str, Box], ...] = ()
    ignore_classes: frozenset[str] = frozenset()
    faces: tuple[Box, ...] = ()
    plates: tuple[tuple[str, Box | None], ...] = ()
    ocr_words: tuple[str, ...] = ()
    ocr_ignore_words: frozenset[str] = field(default_factory=frozenset)


def package_file(package: str, relative: str) -> Path:
    """A file shipped inside an installed package (raises FileNotFoundError when it is not there)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise FileNotFoundError(f"{package} ships no {relative}")
    return path


def _box(values: list[float]) -> Box:
    x1, y1, x2, y2 = (float(value) for value in values)
    return (x1, y1, x2, y2)


def real_images(labels: Path = LABELS) -> list[LabelledImage]:
    """The hand-labelled real photos."""
    entries: list[dict[str, Any]] = json.loads(labels.read_text(encoding="utf-8"))["images"]
    return [LabelledImage(
        name=entry["name"], path=package_file(*entry["source"]), group=entry["group"],
        labelled=frozenset(entry["labelled"]),
        objects=tuple((item["class"], _box(item["box"])) for item in entry.get("objects", [])),
        ignore_classes=frozenset(entry.get("ignore_classes", [])),
        faces=tuple(_box(box) for box in entry.get("faces", [])),
        plates=tuple((item["text"], _box(item["box"])) for item in entry.get("plates", [])),
        ocr_words=tuple(entry.get("ocr_words", [])), ocr_ignore_words=frozenset(entry.get("ocr_ignore_words", [])),
    ) for entry in entries]


def rendered_images(folder: Path) -> list[LabelledImage]:
    """The scenes rendered from real crops, written into `folder`: the car park, and plates if their module is there."""
    from PIL import Image

    from tests.scene_samples import car_park_scene

    scene, labels = car_park_scene()
    car_park = folder / "car_park.png"
    Image.fromarray(scene).save(car_park)
    images = [LabelledImage(name="car_park", path=car_park, group=RENDERED,
                            labelled=frozenset({"objects", "faces", "plates"}),
                            objects=tuple((label.label, label.box) for label in labels))]
    try:
        from tests import plate_samples
    except ImportError:  # the rendered plates are optional
        return images
    xs = [x for x, _ in plate_samples.BUS_FRONT]
    ys = [y for _, y in plate_samples.BUS_FRONT]
    plate_box = (min(xs), min(ys), max(xs), max(ys))
    for sample in plate_samples.SAMPLES:
        path = plate_samples.plate_on_bus(sample, folder)
        images.append(LabelledImage(name=f"plate {sample.name}", path=path, group=RENDERED,
                                    labelled=frozenset({"plates"}), plates=((sample.compact, plate_box),)))
    return images
