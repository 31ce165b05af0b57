"""Faces everywhere in the frame, and embeddings that do not depend on the scale a face was detected at.

Real photos only: ultralytics' zidane.jpg, with scikit-image's astronaut (Eileen Collins) pasted onto it as a
poster where no confident person box reaches (only a weak one, which guides no search); the turned head in
zidane.jpg and the astronaut detected at several scales.
"""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
import skimage.data
from PIL import Image

from models.faces import DLIB_SAME_PERSON_THRESHOLD, DetectedFace, euclidean_distance
from storage.messages import UpstreamFinding
from tests.media_samples import evidence, zidane_jpg_path
from workers.analyzers.base import AnalysisLimits, FindingData
from workers.analyzers.faces import FacesAnalyzer, iou
from workers.face_regions import Region, person_boxes, plan_search

# The two confident "person" boxes the `objects` analyzer gives for zidane.jpg (0.88 and 0.84), as it reports them,
# and a weak one it gives too (0.33), a fragment of the man on the left that holds the poster's place (top left).
ZIDANE_PEOPLE = ((748.8, 29.6, 1157.1, 717.1), (113.3, 196.9, 1113.2, 720.0))
ZIDANE_CONFIDENCES = (0.88, 0.84)
ZIDANE_FRAGMENT = ((5.0, 0.0, 509.0, 510.0), 0.33)
POSTER_AT = (200, 8)  # top left: above the second person's region (which starts at y = 144), left of the first's
SCALE_DRIFT = DLIB_SAME_PERSON_THRESHOLD / 2  # the most one face's embedding may move with the detection scale


@pytest.fixture(scope="module")
def analyzer() -> FacesAnalyzer:
    loaded = FacesAnalyzer()
    loaded.load()
    return loaded


def _people() -> list[UpstreamFinding]:
    """`objects`' person findings in zidane.jpg: the two men, then the weak fragment."""
    return [UpstreamFinding(kind="objects.detection", confidence=confidence,
                            data={"class": "person", "box": list(box), "frame": 0})
            for box, confidence in (*zip(ZIDANE_PEOPLE, ZIDANE_CONFIDENCES, strict=True), ZIDANE_FRAGMENT)]


def _poster_scene(path: Path) -> tuple[Path, tuple[int, int, int, int]]:
    """zidane.jpg with the astronaut's head (scaled 0.7, about 120 px) pasted top left, and the poster's box."""
    head = Image.fromarray(skimage.data.astronaut()[20:200, 140:310])
    head = head.resize((round(head.width * 0.7), round(head.height * 0.7)), Image.Resampling.LANCZOS)
    scene = Image.open(zidane_jpg_path()).convert("RGB")
    scene.paste(head, POSTER_AT)
    scene.save(path, quality=95)
    x, y = POSTER_AT
    return path, (x, y, x + head.width, y + head.height)


def _centre_inside(finding: FindingData, box: tuple[float, ...]) -> bool:
    x1, y1, x2, y2 = finding.data["box"]
    return box[0] <= (x1 + x2) / 2 <= box[2] and box[1] <= (y1 + y2) / 2 <= box[3]


def test_a_poster_outside_every_person_box_is_found_once(analyzer: FacesAnalyzer, tmp_path: Path) -> None:
    path, poster = _poster_scene(tmp_path / "poster.jpg")
    assert _centre_inside_box(poster, tuple(round(v) for v in ZIDANE_FRAGMENT[0]))  # in a weak box: no region
    assert person_boxes(_people()) == {0: [(n, box) for n, box in enumerate(ZIDANE_PEOPLE)]}
    search, regions = plan_search(720, 1280, [(n, box) for n, box in enumerate(ZIDANE_PEOPLE)])
    assert search == "person-regions" and any(region.rest for region in regions)
    people_regions = [region for region in regions if not region.rest]
    assert not any(_centre_inside_box(poster, region.box) for region in people_regions)  # no person's region has it

    item = dataclasses.replace(evidence(path), upstream={"objects": _people()})
    found = analyzer.analyze(item, AnalysisLimits())
    assert len(found) == 3 and {face.data["search"] for face in found} == {"person-regions"}
    (on_poster,) = [face for face in found if _centre_inside(face, poster)]
    assert on_poster.data["found_in"] == "rest-of-frame" and on_poster.data["person"] is None
    assert on_poster.data["embedding"] is not None
    others = [face for face in found if face is not on_poster]
    assert {face.data["found_in"] for face in others} == {"person-region"}
    assert all(iou(a.data["box"], b.data["box"]) == 0 for a, b in itertools.combinations(found, 2))

    astronaut = analyzer.analyze(evidence(_save_astronaut(tmp_path)), AnalysisLimits())[0]
    distance = euclidean_distance(np.array(on_poster.data["embedding"]["vector"]),
                                  np.array(astronaut.data["embedding"]["vector"]))
    assert distance < DLIB_SAME_PERSON_THRESHOLD  # the poster is Eileen Collins


def _centre_inside_box(box: tuple[int, int, int, int], region: tuple[int, int, int, int]) -> bool:
    return region[0] <= (box[0] + box[2]) / 2 <= region[2] and region[1] <= (box[1] + box[3]) / 2 <= region[3]


def _save_astronaut(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return path


def test_a_face_found_by_both_passes_is_kept_once_from_its_person_region(analyzer: FacesAnalyzer,
                                                                        tmp_path: Path) -> None:
    path, poster = _poster_scene(tmp_path / "poster.jpg")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    _, regions = plan_search(720, 1280, [(n, box) for n, box in enumerate(ZIDANE_PEOPLE)])
    whole_rest = Region((0, 0, 1280, 720), 40.0, 1280, rest=True)  # the rest pass over every pixel, at 640 px
    both = analyzer.detect(pixels, [region for region in regions if not region.rest] + [whole_rest])
    alone = analyzer.detect(pixels, [whole_rest])
    assert len(alone) == 3 and len(both) == 3  # the rest pass alone finds all three; together, each once
    for face, rest in both:
        inside_poster = poster[0] <= (face.box[0] + face.box[2]) / 2 <= poster[2]
        assert rest == (inside_poster and (face.box[1] + face.box[3]) / 2 < poster[3])


def _detected_at(analyzer: FacesAnalyzer, pixels: np.ndarray, scale: float, near: tuple[float, float]) -> DetectedFace:
    """The face nearest `near` that MTCNN finds in `pixels` resized by `scale`, in `pixels`' coordinates."""
    height, width = pixels.shape[:2]
    small = np.asarray(Image.fromarray(pixels).resize((round(width * scale), round(height * scale)),
                                                      Image.Resampling.BILINEAR, reducing_gap=2.0))
    faces = [face.scaled(width / small.shape[1]) for face in analyzer.detector.predict(small)]
    return min(faces, key=lambda face: abs((face.box[0] + face.box[2]) / 2 - near[0])
               + abs((face.box[1] + face.box[3]) / 2 - near[1]))


@pytest.mark.parametrize(("name", "near", "scales"), [
    ("astronaut", (225, 117), (0.6, 1.0, 1.6)),
    ("astronaut turned 20 degrees", (225, 140), (0.6, 1.0, 1.6)),
    ("zidane's turned head", (615, 346), (0.4, 0.6, 0.8, 1.0, 1.3, 1.6)),  # 0.475 apart with dlib's predictor
    ("zidane's frontal face", (978, 191), (0.4, 0.6, 1.0, 1.6)),          # run in MTCNN's box; 0.18 now
])
def test_an_embedding_does_not_move_with_the_detection_scale(analyzer: FacesAnalyzer, name: str,
                                                             near: tuple[float, float],
                                                             scales: tuple[float, ...]) -> None:
    astronaut = skimage.data.astronaut()
    pixels = {"astronaut": astronaut,
              "astronaut turned 20 degrees": cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 20, 1.0),
                                                            (512, 512)),
              }.get(name)
    if pixels is None:
        pixels = np.asarray(Image.open(zidane_jpg_path()).convert("RGB"))
    faces = [_detected_at(analyzer, pixels, scale, near) for scale in scales]
    boxes_moved = max(1 - iou(a.box, b.box) for a, b in itertools.combinations(faces, 2))
    vectors = analyzer.embedder.predict((pixels, faces))  # embedded in the same pixels: only the detection varies
    drift = max(euclidean_distance(a, b) for a, b in itertools.combinations(vectors, 2))
    assert drift < SCALE_DRIFT, (name, drift, boxes_moved)
