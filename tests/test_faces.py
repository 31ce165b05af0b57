"""Faces: MTCNN detection and landmarks, quality, alignment, dlib and FaceNet embeddings, on real photos shipped in
packages. Where MTCNN looks (the person-then-face cascade) is tested in test_face_search.py and
test_face_coverage.py.

"Same person" needs two photos of one person. None ships in an installed package (searched: scikit-image's data,
whose lfw_subset.npy holds 25 x 25 crops without identity labels; matplotlib's sample data, one photo of Grace
Hopper; ultralytics' assets; cv2's data, cascades only; facenet-pytorch, dlib and face_recognition_models, weights
only), and nothing is downloaded. So the same person is a genuinely different capture derived from each real
photo: mirrored, rotated 10 degrees, rescaled to 0.6, brightened and re-encoded as JPEG at quality 40. The
different persons are Eileen Collins (scikit-image's astronaut) and the two men in ultralytics' zidane.jpg.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image, ImageEnhance

from models.base import ModelError, ModelSpec
from models.faces import (
    ARCFACE_TEMPLATE_112,
    DLIB_SAME_PERSON_THRESHOLD,
    DetectedFace,
    FacenetEmbedder,
    aligned_crop,
    alignment_matrix,
    euclidean_distance,
    face_quality,
)
from models.specs import DLIB_FACE_EMBEDDING, MTCNN_ONET, MTCNN_PNET, MTCNN_RNET
from tests.face_samples import ORIENTATION, analyze_faces, centre, inside, save_image
from tests.media_samples import (
    astronaut_jpeg,
    bus_jpg_path,
    evidence,
    skimage_data_path,
    truncated_copy,
    zidane_jpg_path,
)
from workers.analyzers import faces as faces_module
from workers.analyzers.base import AnalysisFailed, AnalysisLimits
from workers.analyzers.faces import FacesAnalyzer, facenet_from_environment
from workers.analyzers.registry import select


@pytest.fixture(scope="module")
def analyzer() -> FacesAnalyzer:
    """The analyzer with its real models, loaded once for the module (no FaceNet configured)."""
    loaded = FacesAnalyzer()
    loaded.load()
    return loaded


def test_astronaut_has_one_good_face_with_landmarks_embedding_and_crop(analyzer: FacesAnalyzer) -> None:
    findings = analyze_faces(analyzer, skimage_data_path("astronaut.png"))
    assert len(findings) == 1
    face = findings[0]
    box = face.data["box"]
    assert 150 < centre(face)[0] < 300 and 50 < centre(face)[1] < 200  # Eileen Collins' face, top centre
    assert len(face.data["landmarks"]) == 5 and all(inside(p, box) for p in face.data["landmarks"].values())
    landmarks = face.data["landmarks"]
    assert landmarks["left_eye"][0] < landmarks["nose"][0] < landmarks["right_eye"][0]
    assert landmarks["nose"][1] < landmarks["mouth_left"][1]
    quality = face.data["quality"]
    assert quality["grade"] == "good" and quality["score"] >= 0.8 and quality["inter_ocular_px"] > 30
    assert abs(quality["yaw_degrees"]) < 15 and abs(quality["roll_degrees"]) < 10
    embedding = face.data["embedding"]
    assert embedding["model"] == "dlib-resnet-face-128" and len(embedding["vector"]) == 128
    assert all(isinstance(value, float) and round(value, 6) == value for value in embedding["vector"])
    assert "embeddings" not in face.data and face.data["frame"] == 0
    assert face.label == f"face {face.confidence:.2f} (quality {quality['score']:.2f})"
    (artifact,) = face.artifacts
    assert artifact.name == "face-0-0.jpg" and artifact.content_type == "image/jpeg"
    assert Image.open(io.BytesIO(artifact.data)).size == (160, 160)


def test_zidane_has_two_faces_and_bus_the_two_visible_ones(analyzer: FacesAnalyzer) -> None:
    zidane = sorted(analyze_faces(analyzer, zidane_jpg_path()), key=centre)
    assert len(zidane) == 2
    assert 550 < centre(zidane[0])[0] < 700 and 900 < centre(zidane[1])[0] < 1060
    # The turned head (about 60 degrees of yaw) is reported without an embedding, with the reason; the
    # frontal face is embedded.
    profile = [face for face in zidane if abs(face.data["quality"]["yaw_degrees"]) > 45]
    frontal = [face for face in zidane if abs(face.data["quality"]["yaw_degrees"]) <= 45]
    assert len(profile) == 1 and profile[0].data["embedding"] is None
    assert "near-frontal" in profile[0].data["embedding_skipped"] and profile[0].artifacts
    assert len(frontal) == 1 and len(frontal[0].data["embedding"]["vector"]) == 128
    bus = sorted(analyze_faces(analyzer, bus_jpg_path()), key=centre)  # two men by the bus; two people cut off
    assert len(bus) == 2
    assert 100 < centre(bus[0])[0] < 170 and 250 < centre(bus[1])[0] < 320
    assert all(400 < centre(face)[1] < 500 for face in bus)
    for face in bus:  # small faces behind sunglasses: below the 20 px inter-ocular minimum
        quality = face.data["quality"]
        assert quality["inter_ocular_px"] < 20 and quality["grade"] == "poor" and quality["score"] == 0.0
        assert any(issue.startswith("size: inter-ocular distance") for issue in quality["issues"])


def test_blank_and_tiny_images_have_no_faces(analyzer: FacesAnalyzer, tmp_path: Path) -> None:
    blank = save_image(Image.new("RGB", (640, 480), (128, 128, 128)), tmp_path / "blank.png")
    assert analyze_faces(analyzer, blank) == []
    assert analyze_faces(analyzer, save_image(Image.new("RGB", (12, 9), (90, 60, 30)), tmp_path / "tiny.png")) == []


def test_blur_lowers_the_quality_score(analyzer: FacesAnalyzer) -> None:
    astronaut = skimage.data.astronaut()
    qualities = []
    for sigma in (0.0, 1.5, 3.0):
        pixels = cv2.GaussianBlur(astronaut, (0, 0), sigma) if sigma else astronaut
        (face,) = [face for face in analyzer.detector.predict(pixels) if face.probability >= 0.9]
        qualities.append(face_quality(pixels, face))
    sharp, soft, blurred = qualities
    assert sharp["sharpness"] > soft["sharpness"] > blurred["sharpness"]
    assert sharp["score"] > blurred["score"] and blurred["grade"] == "poor" and sharp["grade"] == "good"
    assert any(issue.startswith("sharpness") for issue in blurred["issues"])


def _other_capture(pixels: np.ndarray) -> np.ndarray:
    """The same face captured differently: mirrored, rotated 10 degrees, 0.6 x, brighter, JPEG quality 40."""
    image = Image.fromarray(pixels).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = image.rotate(10, resample=Image.Resampling.BICUBIC, expand=True)
    image = image.resize((round(image.width * 0.6), round(image.height * 0.6)), Image.Resampling.LANCZOS)
    image = ImageEnhance.Brightness(image).enhance(1.3)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=40)
    return np.asarray(Image.open(buffer).convert("RGB"))


def test_same_person_is_closer_than_different_persons(analyzer: FacesAnalyzer) -> None:
    detector, embedder = analyzer.detector, analyzer.embedder

    def best_face(pixels: np.ndarray) -> DetectedFace:
        # The most probable face: identity is compared even where the analyzer's 0.9 cut-off would drop it
        # (the turned head in zidane.jpg, shrunk and re-encoded, can be found with a probability under 0.9).
        return max(detector.predict(pixels), key=lambda face: face.probability)

    astronaut = skimage.data.astronaut()
    zidane = np.asarray(Image.open(zidane_jpg_path()).convert("RGB"))
    zidane_faces = [face for face in detector.predict(zidane) if face.probability >= 0.9]
    assert len(zidane_faces) == 2
    photos = {"astronaut": (astronaut, best_face(astronaut))}
    for name, face in zip(("zidane-a", "zidane-b"), zidane_faces, strict=True):
        x1, y1, x2, y2 = face.box
        margin = 0.6 * max(x2 - x1, y2 - y1)
        region = zidane[round(max(0, y1 - margin)):round(y2 + margin), round(max(0, x1 - margin)):round(x2 + margin)]
        photos[name] = (np.ascontiguousarray(region), face)
    originals = {"astronaut": embedder.predict((astronaut, [photos["astronaut"][1]]))[0]}
    originals.update(zip(("zidane-a", "zidane-b"), embedder.predict((zidane, zidane_faces)), strict=True))
    again = embedder.predict((astronaut, [photos["astronaut"][1]]))[0]
    assert euclidean_distance(originals["astronaut"], again) == 0.0  # deterministic
    captures = {}
    for name, (pixels, _) in photos.items():
        capture = _other_capture(pixels)
        captures[name] = embedder.predict((capture, [best_face(capture)]))[0]

    names = list(originals)
    different = [euclidean_distance(originals[a], originals[b]) for a in names for b in names if a < b]
    same = [euclidean_distance(originals[name], captures[name]) for name in names]
    assert max(same) < DLIB_SAME_PERSON_THRESHOLD < min(different), (same, different)
    for name in names:  # each capture's nearest original is its own person
        nearest = min(names, key=lambda other: euclidean_distance(captures[name], originals[other]))
        assert nearest == name


def test_exif_rotated_and_downscaled_images_give_upright_coordinates(analyzer: FacesAnalyzer, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    (upright,) = analyze_faces(analyzer, astronaut_jpeg(tmp_path / "upright.jpg"))
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # viewers turn the stored pixels 90 degrees clockwise
    stored = Image.fromarray(skimage.data.astronaut()).transpose(Image.Transpose.ROTATE_90)
    (rotated,) = analyze_faces(analyzer, save_image(stored, tmp_path / "rotated.jpg", quality=95, exif=exif))
    assert np.allclose(rotated.data["box"], upright.data["box"], atol=4)
    for name, point in upright.data["landmarks"].items():
        assert np.allclose(rotated.data["landmarks"][name], point, atol=3)

    (full,) = analyze_faces(analyzer, skimage_data_path("astronaut.png"))
    monkeypatch.setattr(faces_module, "MAX_SIDE", 384)  # 512 -> 384: found at scale 0.75, mapped back
    (scaled,) = analyze_faces(analyzer, skimage_data_path("astronaut.png"))
    assert scaled.data["quality"]["measured_at_scale"] == 0.75
    assert np.allclose(scaled.data["box"], full.data["box"], atol=6)


def test_truncated_image_fails_and_grey_and_rgba_images_work(analyzer: FacesAnalyzer, tmp_path: Path) -> None:
    cut = truncated_copy(astronaut_jpeg(tmp_path / "full.jpg"), tmp_path / "cut.jpg", 0.5)
    with pytest.raises(AnalysisFailed, match="truncated or corrupt"):
        analyzer.analyze(evidence(cut), AnalysisLimits())
    astronaut = Image.fromarray(skimage.data.astronaut())
    assert len(analyze_faces(analyzer, save_image(astronaut.convert("L"), tmp_path / "grey.png"))) == 1
    alpha = np.zeros((512, 512), dtype=np.uint8)
    alpha[32:480, 32:480] = 255  # transparent border, flattened on white
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha))
    assert len(analyze_faces(analyzer, save_image(rgba, tmp_path / "rgba.png"))) == 1


def test_registration_and_provenance_of_every_model(analyzer: FacesAnalyzer) -> None:
    assert select(["faces"])["faces"] is FacesAnalyzer
    assert FacesAnalyzer.accepts_media("image/heic") and not FacesAnalyzer.accepts_media("application/pdf")
    models = analyzer.provenance()
    networks = models["face_detector"]["networks"]
    assert [n["sha256"] for n in networks] == [MTCNN_PNET.sha256, MTCNN_RNET.sha256, MTCNN_ONET.sha256]
    assert models["face_embedding"]["sha256"] == DLIB_FACE_EMBEDDING.sha256
    assert models["face_embedding"]["alignment"] == "mtcnn-5-point-similarity"
    assert "face_embedding_facenet" not in models
    assert FacesAnalyzer.requires == ("objects",) and models["face_detector"]["pyramid_factor"] == 0.709


def test_aligned_crop_puts_the_eyes_on_the_template(analyzer: FacesAnalyzer) -> None:
    astronaut = skimage.data.astronaut()
    (face,) = analyzer.detector.predict(astronaut)
    crop = aligned_crop(astronaut, face, size=112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    turned = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D((256, 256), 20, 1.0), (512, 512))
    (tilted,) = [face for face in analyzer.detector.predict(turned) if face.probability >= 0.9]
    assert abs(face_quality(turned, tilted)["roll_degrees"] + 20) < 5  # eye line turned by 20 degrees


def test_alignment_falls_back_to_the_eyes_without_a_consensus(monkeypatch: pytest.MonkeyPatch) -> None:
    face = DetectedFace((0, 0, 60, 60), ((10, 20), (30, 25), (20, 35), (12, 45), (28, 47)), 0.99)
    monkeypatch.setattr(cv2, "estimateAffinePartial2D", lambda *args, **kwargs: (None, None))
    matrix = alignment_matrix(face, size=112)
    eyes = np.array([[10, 20, 1], [30, 25, 1]], dtype=np.float64)
    assert np.allclose(eyes @ matrix.T, ARCFACE_TEMPLATE_112[:2], atol=1e-4)


# FaceNet: operator-configured weights. A randomly initialised InceptionResnetV1 saved by the test stands in for
# them: it tests loading, verification and the shape of the output, not recognition accuracy.


@pytest.fixture(scope="module")
def facenet_weights(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    state = InceptionResnetV1(pretrained=None, classify=False).eval().state_dict()
    path = tmp_path_factory.mktemp("facenet") / "facenet.pt"
    torch.save(state, path)
    yield path, hashlib.sha256(path.read_bytes()).hexdigest(), state
    path.unlink()


def test_facenet_loads_verified_weights_strictly(facenet_weights: tuple[Path, str, dict[str, Any]],
                                                 tmp_path: Path) -> None:
    path, digest, state = facenet_weights
    model = FacenetEmbedder.from_file(path, digest.upper())
    model.load()
    crop = aligned_crop(skimage.data.astronaut(), DetectedFace(
        (181, 62, 268, 172), ((205, 102), (247, 104), (225, 129), (202, 139), (245, 142)), 1.0))
    first, second = model.predict(crop), model.predict(np.stack([crop, crop[::-1]]))
    assert first.shape == (1, 512) and second.shape == (2, 512)
    assert np.allclose(np.linalg.norm(second, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(first, model.predict(crop))  # deterministic
    assert model.provenance()["sha256"] == digest and model.provenance()["weights"] == str(path)

    with pytest.raises(ModelError, match="expected 0000"):
        FacenetEmbedder.from_file(path, "0" * 64).load()
    missing = tmp_path / "missing.pt"
    torch.save({key: value for key, value in state.items() if key != "last_bn.weight"}, missing)
    with pytest.raises(ModelError, match=r'Missing key.*"last_bn\.weight"'):
        FacenetEmbedder.from_file(missing, hashlib.sha256(missing.read_bytes()).hexdigest()).load()
    with_head = tmp_path / "with-head.pt"  # published checkpoints carry a classifier head, set aside
    torch.save({**state, "logits.weight": torch.zeros(3, 512), "logits.bias": torch.zeros(3)}, with_head)
    head_model = FacenetEmbedder.from_file(with_head, hashlib.sha256(with_head.read_bytes()).hexdigest())
    head_model.load()
    assert np.array_equal(head_model.predict(crop), first)

    with pytest.raises(ModelError, match="64 hex digits"):
        FacenetEmbedder.from_file(path, "not-a-digest")
    with pytest.raises(ModelError, match="configured by the operator"):
        FacenetEmbedder()
    with pytest.raises(ModelError, match="not absolute"):
        ModelSpec(name="t", package="facenet-pytorch", resource="w.pt", sha256=digest, licence="MIT",
                  runtime="torch", path="relative/w.pt").verify()
    with pytest.raises(ModelError, match="missing"):
        FacenetEmbedder.from_file(tmp_path / "absent.pt", digest).load()


def test_analyzer_adds_facenet_embeddings_when_configured(analyzer: FacesAnalyzer, monkeypatch: pytest.MonkeyPatch,
                                                          facenet_weights: tuple[Path, str, dict[str, Any]]) -> None:
    path, digest, _ = facenet_weights
    monkeypatch.delenv("LOCARD_FACENET_WEIGHTS", raising=False)
    monkeypatch.setenv("LOCARD_FACENET_SHA256", digest)
    with pytest.raises(ModelError, match="needs both"):
        facenet_from_environment()
    monkeypatch.setenv("LOCARD_FACENET_WEIGHTS", str(path))
    configured = FacesAnalyzer()
    configured.detector, configured.embedder = analyzer.detector, analyzer.embedder  # already loaded
    configured.load()
    (face,) = analyze_faces(configured, skimage_data_path("astronaut.png"))
    (extra,) = face.data["embeddings"]
    assert extra["model"] == "facenet-inception-resnet-v1" and extra["dimensions"] == 512
    assert abs(float(np.linalg.norm(extra["vector"])) - 1.0) < 1e-4
    assert configured.provenance()["face_embedding_facenet"]["sha256"] == digest
