"""Similarity on real photos.

Geometric verification with local features: crops, rotations, rescales and re-encodes of bus.jpg are
confirmed as the same picture (with the right angle and scale), unrelated photos are not, and a rotated crop
that PDQ misses is confirmed. Scene embeddings (YOLOv8n backbone): a re-encoded, resized or cropped copy is
closer to the original than unrelated photos. The similarity analyzer records both, with the keypoints as an
artifact that round-trips.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from models.embedding import DIMENSION, SceneEmbedder, similarity
from models.keypoints import (
    DEFAULT_DETECTOR,
    MAX_ANALYSIS_SIDE,
    MIN_INLIER_RATIO,
    MIN_INLIERS,
    KeypointSet,
    Verification,
    extract_keypoints,
    provenance,
    verify,
)
from models.specs import YOLOV8N_COCO
from tests.media_samples import (
    bus_jpg_path,
    evidence,
    jpeg_with_exif,
    skimage_data_path,
    truncated_copy,
    zidane_jpg_path,
)
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, FindingData
from workers.analyzers.hashes import pdq_distance, pdq_hash
from workers.analyzers.similarity import SimilarityAnalyzer
from workers.imaging import load_frames

UNRELATED = ("astronaut.png", "coffee.png", "zidane.jpg")
PDQ_MATCH_THRESHOLD = 31  # Meta: a distance of 31 or less is the same picture
ROTATION_DEG, RESCALE = 17.0, 0.7


def _pixels(path: Path) -> np.ndarray:
    return load_frames(path, AnalysisLimits().max_image_pixels, max_frames=1, max_side=4096)[0].pixels


def _unrelated_path(name: str) -> Path:
    return zidane_jpg_path() if name == "zidane.jpg" else skimage_data_path(name)


def _jpeg(image: Image.Image, path: Path, quality: int) -> Path:
    image.save(path, "JPEG", quality=quality)
    return path


def _rotated_crop(path: Path) -> Path:
    """bus.jpg: central 60 % crop, rotated 17° counter-clockwise (canvas expanded), scaled by 0.7, JPEG q=60."""
    with Image.open(bus_jpg_path()) as bus:
        width, height = bus.size
        left, top = round(width * 0.2), round(height * 0.2)
        crop = bus.convert("RGB").crop((left, top, left + round(width * 0.6), top + round(height * 0.6)))
    turned = crop.rotate(ROTATION_DEG, resample=Image.Resampling.BICUBIC, expand=True)
    small = turned.resize((round(turned.width * RESCALE), round(turned.height * RESCALE)),
                          Image.Resampling.LANCZOS)
    return _jpeg(small, path, quality=60)


@pytest.fixture(scope="module")
def bus_keypoints() -> KeypointSet:
    return extract_keypoints(_pixels(bus_jpg_path()))


@pytest.fixture(scope="module")
def rotated_crop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _rotated_crop(tmp_path_factory.mktemp("similarity") / "bus-rotated-crop.jpg")


def test_keypoints_of_a_real_photo(bus_keypoints: KeypointSet) -> None:
    assert bus_keypoints.detector == DEFAULT_DETECTOR == "ORB" and len(bus_keypoints) == 2000
    assert bus_keypoints.image_size == (810, 1080)
    assert bus_keypoints.scale == pytest.approx(MAX_ANALYSIS_SIDE / 1080, abs=1e-3)  # analysed at 768x1024
    assert bus_keypoints.descriptors.dtype == np.uint8 and bus_keypoints.descriptors.shape == (2000, 32)
    assert bus_keypoints.points[:, 0].max() < 810 and bus_keypoints.points[:, 1].max() < 1080
    assert bus_keypoints.points.min() >= -0.5
    assert bus_keypoints.opencv_version == cv2.__version__ == provenance()["version"]


def test_large_images_are_analysed_downscaled_in_their_own_coordinates(bus_keypoints: KeypointSet) -> None:
    with Image.open(bus_jpg_path()) as bus:
        big = np.asarray(bus.convert("RGB").resize((1620, 2160), Image.Resampling.BICUBIC))
    found = extract_keypoints(big)
    assert found.image_size == (1620, 2160) and found.scale == pytest.approx(MAX_ANALYSIS_SIDE / 2160, abs=1e-3)
    assert found.points[:, 1].max() > 1600  # mapped back to the 2160-pixel image
    result = verify(bus_keypoints, found)
    assert result.same_image and result.scale == pytest.approx(2.0, rel=0.02)
    assert result.rotation_deg == pytest.approx(0.0, abs=0.5)


def test_rotated_cropped_rescaled_reencoded_copy_is_the_same_picture(
        bus_keypoints: KeypointSet, rotated_crop: Path) -> None:
    result = verify(bus_keypoints, extract_keypoints(_pixels(rotated_crop)))
    assert result.same_image, result
    assert result.inliers >= MIN_INLIERS and result.inlier_ratio >= MIN_INLIER_RATIO
    assert result.rotation_deg is not None and abs(result.rotation_deg - ROTATION_DEG) < 3.0
    assert result.scale is not None and abs(result.scale / RESCALE - 1) < 0.10


def test_pdq_misses_the_rotated_crop_that_verification_confirms(
        bus_keypoints: KeypointSet, rotated_crop: Path) -> None:
    original, _ = pdq_hash(evidence(bus_jpg_path()), AnalysisLimits())
    copy, quality = pdq_hash(evidence(rotated_crop), AnalysisLimits())
    assert quality >= 50  # a reliable hash: PDQ misses because of the geometry, not a featureless image
    assert pdq_distance(original, copy) > PDQ_MATCH_THRESHOLD
    assert verify(bus_keypoints, extract_keypoints(_pixels(rotated_crop))).same_image


@pytest.mark.parametrize("corner", ["top-left", "bottom-right"])
def test_a_corner_crop_is_confirmed(bus_keypoints: KeypointSet, tmp_path: Path, corner: str) -> None:
    with Image.open(bus_jpg_path()) as bus:
        width, height = bus.size
        cw, ch = round(width * 0.35), round(height * 0.35)
        box = (0, 0, cw, ch) if corner == "top-left" else (width - cw, height - ch, width, height)
        path = _jpeg(bus.convert("RGB").crop(box), tmp_path / "corner.jpg", quality=85)
    result = verify(bus_keypoints, extract_keypoints(_pixels(path)))
    assert result.same_image, result
    assert result.scale == pytest.approx(1.0, abs=0.02) and result.rotation_deg == pytest.approx(0.0, abs=0.5)


def test_a_re_photographed_perspective_view_is_confirmed_by_a_homography(bus_keypoints: KeypointSet) -> None:
    pixels = _pixels(bus_jpg_path())
    height, width = pixels.shape[:2]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    tilted = np.array([[90, 40], [width - 20, 0], [width, height], [30, height - 90]], dtype=np.float32)
    view = cv2.warpPerspective(pixels, cv2.getPerspectiveTransform(corners, tilted), (width, height))
    result = verify(bus_keypoints, extract_keypoints(view))
    assert result.same_image and result.model == "homography"


@pytest.mark.parametrize("other", UNRELATED)
def test_unrelated_photos_are_not_the_same_picture(bus_keypoints: KeypointSet, other: str) -> None:
    result = verify(bus_keypoints, extract_keypoints(_pixels(_unrelated_path(other))))
    assert not result.same_image, result
    assert result.inliers < MIN_INLIERS // 2
    assert result.rotation_deg is None and result.scale is None  # no angle reported for a chance fit


def test_sift_is_a_working_alternative(rotated_crop: Path) -> None:
    original = extract_keypoints(_pixels(bus_jpg_path()), detector="SIFT")
    assert original.detector == "SIFT" and original.descriptors.shape[1] == 128
    assert verify(original, extract_keypoints(_pixels(rotated_crop), detector="SIFT")).same_image
    assert not verify(original, extract_keypoints(_pixels(zidane_jpg_path()), detector="SIFT")).same_image
    with pytest.raises(ValueError, match="cannot match"):
        verify(original, extract_keypoints(_pixels(zidane_jpg_path()), max_features=50))


def test_keypoint_set_round_trips_through_bytes(bus_keypoints: KeypointSet) -> None:
    data = bus_keypoints.to_bytes()
    assert data[:2] == b"PK" and len(data) < 400_000  # a compressed npz: uint8 descriptors, float16 sizes
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        assert archive["descriptors"].dtype == np.uint8 and archive["angles"].dtype == np.float16
    restored = KeypointSet.from_bytes(data)
    for name in ("points", "sizes", "angles", "descriptors"):
        assert np.array_equal(getattr(restored, name), getattr(bus_keypoints, name))
    assert (restored.detector, restored.image_size, restored.scale, restored.opencv_version) == (
        bus_keypoints.detector, bus_keypoints.image_size, bus_keypoints.scale, bus_keypoints.opencv_version)
    assert verify(restored, bus_keypoints).inliers == len(bus_keypoints)


def test_from_bytes_refuses_anything_else() -> None:
    with pytest.raises(ValueError, match="not a keypoint file"):
        KeypointSet.from_bytes(b"not a zip")
    buffer = io.BytesIO()
    np.savez(buffer, points=np.zeros((1, 2), np.float32))
    with pytest.raises(ValueError, match="missing"):
        KeypointSet.from_bytes(buffer.getvalue())
    empty = extract_keypoints(np.zeros((8, 8), dtype=np.uint8))
    with np.load(io.BytesIO(empty.to_bytes()), allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["meta"] = np.frombuffer(json.dumps({"format": 1}).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with pytest.raises(ValueError, match="bad metadata"):
        KeypointSet.from_bytes(buffer.getvalue())


def test_featureless_and_invalid_inputs() -> None:
    blank = extract_keypoints(np.full((300, 400, 3), 128, dtype=np.uint8))
    assert len(blank) == 0 and blank.descriptors.shape == (0, 32)
    assert verify(blank, blank) == Verification(0, 0, 0.0, None, None, None, same_image=False)
    assert len(KeypointSet.from_bytes(blank.to_bytes())) == 0
    with pytest.raises(ValueError, match="uint8"):
        extract_keypoints(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="unknown detector"):
        extract_keypoints(np.zeros((10, 10), dtype=np.uint8), detector="SURF")  # type: ignore[arg-type]


def test_verification_is_json_ready(bus_keypoints: KeypointSet, rotated_crop: Path) -> None:
    found = verify(bus_keypoints, extract_keypoints(_pixels(rotated_crop))).to_dict()
    assert json.loads(json.dumps(found, allow_nan=False)) == found
    assert found["same_image"] is True and found["model"] in ("similarity", "homography")
    assert json.dumps(provenance(), allow_nan=False)


@pytest.fixture(scope="module")
def embedder() -> SceneEmbedder:
    model = SceneEmbedder()
    model.load()
    return model


@pytest.fixture(scope="module")
def analyzer() -> SimilarityAnalyzer:
    similarity_analyzer = SimilarityAnalyzer()
    similarity_analyzer.load()
    return similarity_analyzer


@pytest.fixture(scope="module")
def bus_embedding(embedder: SceneEmbedder) -> np.ndarray:
    return embedder.predict(_pixels(bus_jpg_path()))


@pytest.fixture(scope="module")
def unrelated_similarities(embedder: SceneEmbedder, bus_embedding: np.ndarray) -> dict[str, float]:
    return {name: similarity(bus_embedding, embedder.predict(_pixels(_unrelated_path(name)))) for name in UNRELATED}


def test_scene_embedding_of_a_real_photo_is_deterministic(embedder: SceneEmbedder, bus_embedding: np.ndarray) -> None:
    assert bus_embedding.shape == (DIMENSION,) == (768,) and bus_embedding.dtype == np.float32
    assert float(np.linalg.norm(bus_embedding)) == pytest.approx(1.0, abs=1e-5)
    assert np.array_equal(embedder.predict(_pixels(bus_jpg_path())), bus_embedding)
    assert similarity(bus_embedding, bus_embedding) == pytest.approx(1.0, abs=1e-6)
    found = embedder.provenance()
    assert found["sha256"] == YOLOV8N_COCO.sha256 and found["dimension"] == DIMENSION
    assert [feature["tensor"] for feature in found["feature_maps"]] == [
        "/model.6/cv2/act/Mul_output_0", "/model.9/cv2/act/Mul_output_0"]
    assert json.dumps(found, allow_nan=False)


def test_a_re_encoded_resized_copy_is_closer_than_unrelated_photos(
        embedder: SceneEmbedder, bus_embedding: np.ndarray, unrelated_similarities: dict[str, float],
        tmp_path: Path) -> None:
    with Image.open(bus_jpg_path()) as bus:
        half = bus.convert("RGB").resize((bus.width // 2, bus.height // 2), Image.Resampling.LANCZOS)
    copy = similarity(bus_embedding, embedder.predict(_pixels(_jpeg(half, tmp_path / "half.jpg", quality=60))))
    assert copy > 0.9 and copy > max(unrelated_similarities.values()), (copy, unrelated_similarities)


def test_a_cropped_copy_is_closer_than_unrelated_photos(
        embedder: SceneEmbedder, bus_embedding: np.ndarray, unrelated_similarities: dict[str, float],
        tmp_path: Path) -> None:
    with Image.open(bus_jpg_path()) as bus:
        width, height = bus.size
        box = (round(width * 0.1), round(height * 0.1), round(width * 0.9), round(height * 0.9))
        central = bus.convert("RGB").crop(box)
    crop = similarity(bus_embedding, embedder.predict(_pixels(_jpeg(central, tmp_path / "crop.jpg", quality=85))))
    assert crop > max(unrelated_similarities.values()), (crop, unrelated_similarities)


def _by_kind(findings: list[FindingData]) -> dict[str, FindingData]:
    assert len(findings) == 2
    by_kind = {finding.kind: finding for finding in findings}
    assert set(by_kind) == SimilarityAnalyzer.produces == {"similarity.embedding", "similarity.keypoints"}
    return by_kind


def _keypoint_file(finding: FindingData) -> KeypointSet:
    (artifact,) = finding.artifacts
    assert (artifact.name, artifact.content_type) == ("keypoints.npz", "application/x-npz")
    restored = KeypointSet.from_bytes(artifact.data)
    assert len(restored) == finding.data["count"] and restored.detector == finding.data["detector"]
    return restored


def test_analyzer_records_an_embedding_and_a_keypoint_file(
        analyzer: SimilarityAnalyzer, bus_embedding: np.ndarray, bus_keypoints: KeypointSet) -> None:
    item = evidence(bus_jpg_path())
    assert SimilarityAnalyzer.accepts_media(item.media_type) and not SimilarityAnalyzer.accepts_media("application/pdf")
    findings = _by_kind(analyzer.analyze(item, AnalysisLimits()))
    embedding = findings["similarity.embedding"].data
    assert embedding["dimension"] == DIMENSION == len(embedding["vector"])
    assert embedding["model"]["sha256"] == YOLOV8N_COCO.sha256
    assert np.allclose(embedding["vector"], bus_embedding, rtol=0, atol=5e-7)
    keypoints = findings["similarity.keypoints"]
    assert keypoints.data["count"] == len(bus_keypoints) and keypoints.data["image_scale"] == 1.0
    assert keypoints.data["image_size"] == keypoints.data["upright_size"] == [810, 1080]
    restored = _keypoint_file(keypoints)
    assert verify(restored, bus_keypoints).inliers == len(bus_keypoints)  # the same features, from the artifact
    for finding in findings.values():
        record = {"kind": finding.kind, "data": finding.data, "label": finding.label}
        assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert json.dumps(analyzer.provenance(), allow_nan=False)


def test_a_featureless_image_succeeds_with_no_keypoints(analyzer: SimilarityAnalyzer, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), (128, 128, 128)).save(path)
    findings = _by_kind(analyzer.analyze(evidence(path), AnalysisLimits()))
    assert findings["similarity.keypoints"].data["count"] == 0
    assert len(_keypoint_file(findings["similarity.keypoints"])) == 0
    assert len(findings["similarity.embedding"].data["vector"]) == DIMENSION


def test_a_truncated_image_fails_with_a_reason(analyzer: SimilarityAnalyzer, tmp_path: Path) -> None:
    path = truncated_copy(bus_jpg_path(), tmp_path / "truncated.jpg", 0.5)
    with pytest.raises(AnalysisFailed, match="truncated or corrupt"):
        analyzer.analyze(evidence(path), AnalysisLimits())


def test_exif_rotated_evidence_is_analysed_upright(
        analyzer: SimilarityAnalyzer, embedder: SceneEmbedder, bus_keypoints: KeypointSet, tmp_path: Path) -> None:
    findings = _by_kind(analyzer.analyze(evidence(jpeg_with_exif(tmp_path / "exif.jpg", orientation=6)),
                                         AnalysisLimits()))
    keypoints = findings["similarity.keypoints"]
    assert keypoints.data["image_size"] == keypoints.data["upright_size"] == [1080, 810]
    result = verify(bus_keypoints, _keypoint_file(keypoints))
    assert result.same_image and result.rotation_deg == pytest.approx(-90.0, abs=1.0)  # turned clockwise
    upright = np.ascontiguousarray(np.rot90(_pixels(bus_jpg_path()), k=-1))
    assert similarity(findings["similarity.embedding"].data["vector"], embedder.predict(upright)) > 0.99


def test_importing_the_analyzer_loads_no_heavy_library() -> None:
    code = ("import sys, workers.analyzers.similarity; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'cv2', 'torch') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
