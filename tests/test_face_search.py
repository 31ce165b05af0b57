"""Where the faces analyzer looks: the person-then-face cascade (`workers.face_regions`), guided by the real
`objects` analyzer's findings on real photos shipped in packages (ultralytics' zidane.jpg and bus.jpg,
scikit-image's astronaut). Faces outside every person's region: test_face_coverage.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from storage.messages import UpstreamFinding
from tests.face_samples import ORIENTATION, analyze_faces, centre, inside, save_image
from tests.media_samples import bus_jpg_path, evidence, skimage_data_path, zidane_jpg_path
from workers.analyzers import faces as faces_module
from workers.analyzers.base import AnalysisLimits, FindingData
from workers.analyzers.faces import FacesAnalyzer, Region, iou, person_boxes, plan_search
from workers.analyzers.objects import ObjectsAnalyzer
from workers.face_regions import PERSON_FLOOR

# The weak "person" boxes `objects` 1.1.0 gave for zidane.jpg besides the two men (0.88, 0.84): fragments of them,
# whose regions made the search cost more than the whole frame (see PERSON_FLOOR).
ZIDANE_FRAGMENTS = (((410, 201, 666, 511), 0.4066), ((5, 0, 509, 510), 0.3275), ((661, 211, 920, 717), 0.2995),
                    ((743, 212, 920, 717), 0.2814))


@pytest.fixture(scope="module")
def analyzer() -> FacesAnalyzer:
    """The analyzer with its real models, loaded once for the module (no FaceNet configured)."""
    loaded = FacesAnalyzer()
    loaded.load()
    return loaded


Objects = Callable[[Path], list[UpstreamFinding]]  # the cascade: the real `objects` analyzer's findings guide faces


@pytest.fixture(scope="module")
def upstream() -> Objects:
    """The `objects` findings of an image as the dispatcher hands them over, each image analysed once."""
    objects = ObjectsAnalyzer()
    objects.load()
    return functools.cache(lambda path: [f.as_upstream() for f in objects.analyze(evidence(path), AnalysisLimits())])


def _same_faces(found: list[FindingData], reference: list[FindingData], objects: list[UpstreamFinding]) -> None:
    """`found` (person regions) holds the faces of `reference` (whole frame), each in its own person's box."""
    assert len(found) == len(reference) and {face.data["search"] for face in found} == {"person-regions"}
    for face in reference:  # MTCNN's boxes move a little with the scale it searches at (a turned head most)
        match = max(found, key=lambda other: iou(other.data["box"], face.data["box"]))
        assert iou(match.data["box"], face.data["box"]) > 0.75, (match.data["box"], face.data["box"])
        person = objects[match.data["person"]].data
        assert person["class"] == "person" and inside(list(centre(match)), person["box"])
    assert len({face.data["person"] for face in found}) == len(found)


def _spy(analyzer: FacesAnalyzer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    shapes: list[tuple[int, ...]] = []
    predict = analyzer.detector.predict
    monkeypatch.setattr(analyzer.detector, "predict", lambda pixels: shapes.append(pixels.shape[:2]) or predict(pixels))
    return shapes


def test_person_regions_find_the_faces(analyzer: FacesAnalyzer, upstream: Objects, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored turned: `objects` reports upright boxes; analysed at 0.9, so are they scaled
    stored = Image.open(zidane_jpg_path()).transpose(Image.Transpose.ROTATE_90)
    turned = save_image(stored, tmp_path / "t.jpg", exif=exif)
    zidane, bus = zidane_jpg_path(), bus_jpg_path()
    for path, original, scale in ((zidane, zidane, 1.0), (bus, bus, 1.0), (turned, zidane, 0.9)):
        reference, pixels = analyze_faces(analyzer, original), np.prod(Image.open(original).size)
        monkeypatch.setattr(faces_module, "MAX_SIDE", round(1280 * scale) if scale < 1 else 2048)
        shapes = _spy(analyzer, monkeypatch)
        found = analyze_faces(analyzer, path, upstream(path))  # `objects`' findings as they are, weak ones too
        _same_faces(found, reference, upstream(path))
        assert {face.data["quality"]["measured_at_scale"] for face in found} == {scale}
        assert len(shapes) > 1 and sum(h * w for h, w in shapes) < 0.8 * pixels  # crops, fewer pixels
        monkeypatch.undo()


def test_a_frame_filling_person_or_nobody_found_search_the_whole_frame(analyzer: FacesAnalyzer, upstream: Objects,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = skimage_data_path("astronaut.png")
    (reference,) = analyze_faces(analyzer, path)
    for objects, person in ((upstream(path), {"person": 0}), ([], {})):  # fills the frame; nobody (a close-up)
        (face,) = analyze_faces(analyzer, path, objects)
        assert face.data == {**reference.data, **person} and face.data["search"] == "whole-frame"
    shapes = _spy(analyzer, monkeypatch)  # nobody in zidane.jpg: searched smaller than DETECT_SIDE, still found
    assert len(analyze_faces(analyzer, zidane_jpg_path(), [])) == 2 and shapes == [(540, faces_module.NO_PERSON_SIDE)]


def test_search_plan_follows_the_person_boxes(analyzer: FacesAnalyzer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert plan_search(1080, 1920, None) == ("whole-frame", [Region((0, 0, 1920, 1080), 20, 1280)])  # DETECT_SIDE
    assert plan_search(1080, 1920, []) == ("whole-frame", [Region((0, 0, 1920, 1080), 20, 960)])  # NO_PERSON_SIDE
    search, [distant, rest] = plan_search(1080, 1920, [(3, (100.0, 500.0, 140.0, 600.0))])  # 100 px: full scale
    assert search == "person-regions" and distant == Region((96, 490, 144, 610), 20, 1280, (3,))
    assert rest == Region((0, 0, 1920, 1080), 60, 1920, rest=True) and rest.scale == 1 / 3  # the rest, at 640 px
    two = [(0, (400.0, 80.0, 900.0, 1080.0)), (1, (450.0, 100.0, 950.0, 1060.))]
    search, [near, *rest_parts] = plan_search(1080, 1920, two)
    assert search == "person-regions" and near.box == (350, 0, 1000, 1080) and sorted(near.people) == [0, 1]
    assert near.scale == 20 / (960 / 25)  # merged; a face of 1/25 of the smaller person becomes 20 px
    assert rest_parts and all(part.rest and part.scale == 1 / 3 for part in rest_parts)  # left and right of them
    assert plan_search(400, 400, [(0, (20.0, 30.0, 380.0, 390.0))])[0] == "whole-frame"  # costs about the frame
    assert plan_search(1080, 1920, [(n, (50.0 * n, 9.0, 50.0 * n + 40, 99.0)) for n in range(33)])[0] == "whole-frame"
    found = [("car", [0, 0, 9, 9], 0, 0.9), ("person", [1, 2, 30, 80], 2, 0.5), ("person", [9, 9, 1, 1], 0, 0.9),
             ("person", "?", 0, 0.9), ("person", [1, 2, 30, 80], 0, 0.49), ("person", [1, 2, 30, 80], 0, None)]
    assert person_boxes([UpstreamFinding(kind="objects.detection", confidence=confidence,
                                         data={"class": kind, "box": box, "frame": frame})
                         for kind, box, frame, confidence in found]) == {2: [(1, (1.0, 2.0, 30.0, 80.0))]}
    frames = [Image.new("RGB", (64, 64), (10 * n, 90, 90)) for n in range(12)]  # faces reads 0, 4, 7 and 11
    path = save_image(frames[0], tmp_path / "pages.tif", save_all=True, append_images=frames[1:])  # objects 8 of 12
    seen: list[Any] = []
    monkeypatch.setattr(faces_module, "plan_search", lambda *args: seen.append(args[2]) or plan_search(*args))
    assert analyze_faces(analyzer, path, []) == []
    assert seen == [[], None, None, []]  # 4 and 7: `objects` did not read them


def test_weak_person_boxes_do_not_guide_the_search(analyzer: FacesAnalyzer, upstream: Objects,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    objects = upstream(zidane_jpg_path())
    weak = [UpstreamFinding(kind="objects.detection", label=f"person {confidence:.2f}", confidence=confidence,
                            data={"class": "person", "box": list(box), "frame": 0})
            for box, confidence in ZIDANE_FRAGMENTS]
    assert all(finding.confidence is not None and finding.confidence < PERSON_FLOOR for finding in weak)
    with_weak = [*objects, *weak]
    assert person_boxes(with_weak) == person_boxes(objects) and len(person_boxes(objects)[0]) == 2
    reference = analyze_faces(analyzer, zidane_jpg_path())
    shapes = _spy(analyzer, monkeypatch)  # the two men's regions and the rest, as without the fragments
    found = analyze_faces(analyzer, zidane_jpg_path(), with_weak)
    _same_faces(found, reference, with_weak)
    assert len(shapes) > 3 and sum(h * w for h, w in shapes) < 0.8 * 1280 * 720
    monkeypatch.undo()
    # Only the weak boxes: nobody found confidently, so the whole frame at NO_PERSON_SIDE, and both faces found.
    shapes = _spy(analyzer, monkeypatch)
    found = analyze_faces(analyzer, zidane_jpg_path(), weak)
    assert len(found) == 2 and shapes == [(540, faces_module.NO_PERSON_SIDE)]
    assert all(face.data["search"] == "whole-frame" and "person" not in face.data for face in found)
