"""The plates analyzer on plates rendered with a Debian font and pasted, warped and blurred, into real photos."""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.base import ModelError
from models.plates import PlateReading, TesseractPlateReader, parse_tsv
from models.specs import PPOCR_REC
from storage.messages import UpstreamFinding
from tests.media_samples import bus_jpg_path, evidence, truncated_copy, zidane_jpg_path
from tests.plate_samples import offline_plates_analyzer
from workers import imaging
from workers.analyzers import registry
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, EvidenceFile
from workers.analyzers.objects import ObjectsAnalyzer
from workers.analyzers.plates import (
    FoundPlate,
    PlatesAnalyzer,
    Vehicle,
    choose_reading,
    merge_plates,
    second_opinion_reason,
    upstream_vehicles,
    vehicle_boxes,
)
from workers.plate_registration import read_registration

FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
                   "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf")
EU_BLUE, EU_YELLOW = (0, 51, 153), (255, 204, 0)
Quad = list[tuple[float, float]]


def font_path() -> str:
    found = next((path for path in FONT_CANDIDATES if Path(path).is_file()), None)
    assert found, f"no DejaVu Sans Bold font (Debian package fonts-dejavu-core) at {FONT_CANDIDATES}"
    return found


def render_plate(text: str, band: str, background: tuple[int, int, int], ink: tuple[int, int, int], *,
                 border: tuple[int, int, int] = (20, 20, 20), right_band: str | None = None) -> np.ndarray:
    """An EU plate, 520 x 110 (the real plate's millimetres): blue band with stars ring and country code."""
    width, height = 520, 110
    image = Image.new("RGB", (width, height), background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=border, width=4)
    band_width = 44
    draw.rectangle((4, 4, band_width, height - 5), fill=EU_BLUE)
    draw.ellipse((band_width / 2 - 8, 20, band_width / 2 + 12, 42), outline=EU_YELLOW, width=3)
    small = ImageFont.truetype(font_path(), 26)
    draw.text((band_width / 2 + 2, 86), band, font=small, fill=(255, 255, 255), anchor="mm")
    right = width
    if right_band is not None:
        right = width - band_width
        draw.rectangle((right, 4, width - 5, height - 5), fill=EU_BLUE)
        draw.text((right + band_width / 2 - 2, 86), right_band, font=small, fill=(255, 255, 255), anchor="mm")
    draw.text(((band_width + right) / 2, height / 2), text, font=ImageFont.truetype(font_path(), 68), fill=ink,
              anchor="mm")
    return np.asarray(image)


def paste(scene: np.ndarray, plate: np.ndarray, quad: Quad, blur: float) -> np.ndarray:
    """`plate` warped onto `quad` (clockwise from top-left) of `scene`, then the whole image blurred."""
    import cv2

    height, width = plate.shape[:2]
    source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    matrix = cv2.getPerspectiveTransform(source, np.float32(quad))
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(plate, matrix, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), matrix, size) > 127
    out = scene.copy()
    out[mask] = warped[mask]
    return cv2.GaussianBlur(out, (0, 0), blur)


def plate_quad(x: float, y: float, width: float) -> Quad:
    """A plate seen slightly from the side and below: right edge lower and shorter."""
    return [(x, y), (x + width, y + 4), (x + width - 2, y + 4 + width * 0.21), (x + 2, y + width * 0.22)]


def bus_photo() -> np.ndarray:
    with Image.open(bus_jpg_path()) as image:
        return np.asarray(image.convert("RGB"))


def save_jpeg(pixels: np.ndarray, path: Path) -> Path:
    Image.fromarray(pixels).save(path, "JPEG", quality=92)
    return path


PLATES = {
    "BE": (render_plate("1-ABC-234", "B", (255, 255, 255), (200, 16, 46), border=(200, 16, 46)), "1-ABC-234"),
    "NL": (render_plate("K-123-BF", "NL", (247, 181, 0), (0, 0, 0)), "K-123-BF"),
    "FR": (render_plate("AB-123-CD", "F", (255, 255, 255), (0, 0, 0), right_band="75"), "AB-123-CD"),
}
# What Locard may say of each plate's country, read without its band code: a Belgian 1-ABC-234 is also a
# Californian 1ABC234, a French AB-123-CD also an Italian or Argentine plate; only the Dutch layout is one
# country's. The country named (or None), and the candidate countries, best first.
NAMED = {"BE": (None, ["BE", "US"]), "NL": ("NL", ["NL"]), "FR": (None, ["FR", "AR", "IT"])}
BUS_LABEL = "1-ABC-234 (one of BE, US)"


@pytest.fixture(scope="module")
def analyzer() -> Iterator[PlatesAnalyzer]:
    yield from offline_plates_analyzer()


@pytest.fixture(scope="module")
def objects() -> ObjectsAnalyzer:
    """The real `objects` analyzer, whose findings the dispatcher hands to plates as `upstream["objects"]`."""
    analyzer = ObjectsAnalyzer()
    analyzer.load()
    return analyzer


def with_objects(item: EvidenceFile, objects: ObjectsAnalyzer) -> EvidenceFile:
    """`item` as the dispatcher passes it to plates after `objects` succeeded on it: with its findings."""
    findings = objects.analyze(item, AnalysisLimits())
    return dataclasses.replace(item, upstream={"objects": [finding.as_upstream() for finding in findings]})


def forbid(patch: pytest.MonkeyPatch, owner: object, method: str) -> None:
    """Make `owner.method` fail the test if called."""
    def called(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{type(owner).__name__}.{method} must not be called here")

    patch.setattr(owner, method, called)


def spy(patch: pytest.MonkeyPatch, owner: object, method: str) -> list[Any]:
    """Record what `owner.method` returns (it still runs); the list grows by one per call."""
    original, calls = getattr(owner, method), []

    def recorded(*args: object, **kwargs: object) -> object:
        calls.append(original(*args, **kwargs))
        return calls[-1]

    patch.setattr(owner, method, recorded)
    return calls


def plate_photo(country: str, folder: Path) -> tuple[Path, Quad]:
    """bus.jpg with a rendered `country` plate on the bus, large enough for the whole-frame pass."""
    quad = plate_quad(540, 610, 150)
    return save_jpeg(paste(bus_photo(), PLATES[country][0], quad, blur=1.0), folder / f"{country}.jpg"), quad


@pytest.mark.parametrize("country", sorted(PLATES))
def test_reads_a_rendered_plate_pasted_into_a_photo(analyzer: PlatesAnalyzer, tmp_path: Path,
                                                    country: str) -> None:
    expected = PLATES[country][1]
    path, quad = plate_photo(country, tmp_path)
    findings = analyzer.analyze(evidence(path), AnalysisLimits())
    assert len(findings) == 1, [f.label for f in findings]
    finding = findings[0]
    assert finding.kind == "plates.plate"
    named, candidates = NAMED[country]
    assert (finding.data["text"], finding.data["country"], finding.data["candidate_countries"]) == (
        expected, named, candidates)
    assert finding.label == (f"{expected} ({named})" if named else f"{expected} (one of {', '.join(candidates)})")
    assert finding.data["matchable"] is True and finding.data["rejected_because"] == []
    x1, y1, x2, y2 = finding.data["box"]
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    assert abs(x1 - min(xs)) < 15 and abs(x2 - max(xs)) < 15 and abs(y1 - min(ys)) < 10 and abs(y2 - max(ys)) < 10
    assert finding.data["frame"] == 0 and 0.25 <= finding.data["detector_confidence"] <= 1
    assert 0 < finding.confidence <= finding.data["detector_confidence"]
    raw = finding.data["raw_readings"]
    assert "rapidocr" in raw and finding.data["second_opinion"] == ("tesseract" in raw)
    assert finding.data["candidates"][0]["text_normalised"] == expected
    assert finding.data["vehicle_source"] == "own-detector"  # no upstream: the fallback COCO detector
    [artifact] = finding.artifacts
    assert (artifact.name, artifact.content_type) == ("plate-0-0.jpg", "image/jpeg")
    with Image.open(io.BytesIO(artifact.data)) as crop:
        assert crop.width > crop.height > 20


def plate_crop(country: str, blur: float) -> np.ndarray:
    """The crop of a warped, blurred plate, as the analyzer cuts it from a photo."""
    canvas = np.full((90, 280, 3), 90, dtype=np.uint8)
    return paste(canvas, PLATES[country][0], [(10, 12), (268, 16), (266, 72), (12, 70)], blur=blur)


@pytest.mark.parametrize("country", sorted(PLATES))
def test_both_readers_read_a_rendered_plate_crop(analyzer: PlatesAnalyzer, country: str) -> None:
    """Independent of the detector and of when Tesseract is asked: each reader reads the crop, and their
    readings agree on the registration."""
    expected = PLATES[country][1]
    crop = plate_crop(country, blur=0.8)
    readings = {"rapidocr": analyzer.reader.predict(crop), "tesseract": analyzer.tesseract.predict(crop)}
    for name, reading in readings.items():
        assert read_registration(reading.text).text_normalised == expected and reading.confidence > 0.5, (
            name, reading)
    best = choose_reading(readings)[0]
    # The crop shows the French department band (75), which only the French SIV format takes: France is named.
    named = "FR" if country == "FR" else NAMED[country][0]
    assert (best["text_normalised"], best["country"], best["readers"]) == (expected, named,
                                                                          ["rapidocr", "tesseract"])


@pytest.mark.parametrize("country", ["BE", "NL"])
def test_a_clear_reading_is_not_sent_to_tesseract(analyzer: PlatesAnalyzer, country: str) -> None:
    expected = PLATES[country][1]
    with pytest.MonkeyPatch.context() as patch:
        forbid(patch, analyzer.tesseract, "predict")
        reading = analyzer.read_plate(plate_crop(country, blur=0.8))
    assert (reading["text"], reading["country"], reading["candidate_countries"]) == (expected, *NAMED[country])
    assert reading["raw_readings"]["rapidocr"][1] >= 0.9 and set(reading["raw_readings"]) == {"rapidocr"}
    assert (reading["second_opinion"], reading["second_opinion_reason"]) == (False, None)
    assert reading["candidates"][0]["readers"] == ["rapidocr"]


def test_an_unsure_reading_gets_tesseracts_opinion_and_they_agree(analyzer: PlatesAnalyzer) -> None:
    """A strongly blurred French plate: PP-OCR reads it right but unsure (under 0.9), so Tesseract reads it
    too; both support AB-123-CD."""
    with pytest.MonkeyPatch.context() as patch:
        tesseract = spy(patch, analyzer.tesseract, "predict")
        reading = analyzer.read_plate(plate_crop("FR", blur=3.0))
    assert len(tesseract) == 1 and reading["second_opinion"] is True
    assert reading["raw_readings"]["rapidocr"][1] < 0.9
    assert reading["second_opinion_reason"].startswith("rapidocr confidence")
    assert reading["raw_readings"]["tesseract"] == [tesseract[0].text, round(tesseract[0].confidence, 4)]
    assert (reading["text"], reading["country"], reading["candidate_countries"]) == ("AB-123-CD", *NAMED["FR"])
    assert reading["candidates"][0]["readers"] == ["rapidocr", "tesseract"]


@pytest.mark.parametrize(("text", "confidence", "reason"), [
    ("1-ABC-234", 0.99, None),
    ("1ABC234", 0.95, None),  # unseparated, still a clear fit (0.855)
    ("K123BF", 0.95, None),  # 0.81
    ("1-ABC-234", 0.85, "rapidocr confidence 0.850 < 0.9"),
    ("HELLO", 0.99, "no plausible plate"),
    ("", 0.99, "no plausible plate"),
    ("1-A8C-234", 0.99, "fits no known plate format as read"),  # fits only after a letter/digit swap
    ("CZ 1AB 2345", 0.99, None),  # a Czech plate, its band code read before it
    ("AB1234", 0.99, "nearly as well"),  # NL AB-12-34 or DE A-B 1234
])
def test_when_tesseract_is_asked(text: str, confidence: float, reason: str | None) -> None:
    found = second_opinion_reason(PlateReading(text, confidence))
    assert found == reason if reason is None else (found is not None and reason in found), found


def test_a_failing_second_opinion_keeps_the_plate(analyzer: PlatesAnalyzer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(crop: np.ndarray) -> PlateReading:
        raise ModelError("tesseract crashed")

    monkeypatch.setattr(analyzer.reader, "predict", lambda crop: PlateReading("1-A8C-234", 0.97))
    monkeypatch.setattr(analyzer.tesseract, "predict", broken)
    reading = analyzer.read_plate(plate_crop("BE", blur=0.8))
    # Kept as read (never repaired in the reported text); the repair is an alternative for register matching.
    assert (reading["text"], reading["format"]) == ("1A8C234", "unknown") and reading["second_opinion"] is True
    assert reading["alternatives"][0]["text_normalised"] == "1-ABC-234"
    assert reading["raw_readings"]["tesseract"] == [None, 0.0]
    assert reading["raw_readings"]["tesseract_error"] == "tesseract crashed"


def street_scene(scale: float) -> np.ndarray:
    """Two buses side by side, 1920 x 1080 times `scale`."""
    import cv2

    photo = bus_photo()
    scene = np.ascontiguousarray(np.concatenate([photo, photo[:, ::-1], photo[:, :300]], axis=1))
    return cv2.resize(scene, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR) if scale != 1 else scene


def test_vehicle_pass_finds_a_plate_too_small_for_the_whole_frame(analyzer: PlatesAnalyzer,
                                                                   tmp_path: Path) -> None:
    """A 2880 x 1620 street scene with an 85 px plate: the whole-frame pass (at 640 px) misses it, the bus
    crop (at its own size) shows it large enough."""
    plate, expected = PLATES["BE"]
    scene = paste(street_scene(1.5), plate, plate_quad(840, 922, 85), blur=0.8)
    path = save_jpeg(scene, tmp_path / "street.jpg")
    assert analyzer.detector.predict(np.asarray(Image.open(path).convert("RGB"))) == []
    findings = analyzer.analyze(evidence(path), AnalysisLimits())
    if analyzer.vehicles is None:  # models.yolo absent: the pass is off, and provenance says so
        assert findings == [] and "skipped" in analyzer.provenance()["vehicle_pass"]
        return
    assert [f.data["text"] for f in findings] == [expected]
    assert findings[0].data["detected_by"] == ["vehicle"]
    assert findings[0].data["vehicle_source"] == "own-detector"  # no upstream: the fallback
    assert abs(findings[0].data["box"][0] - 840) < 10 and abs(findings[0].data["box"][1] - 922) < 10
    assert analyzer.provenance()["vehicle_detector"]["name"] == "yolov8n-coco"


def test_the_vehicle_pass_uses_the_vehicles_objects_found(analyzer: PlatesAnalyzer, objects: ObjectsAnalyzer,
                                                          tmp_path: Path) -> None:
    """A 4800 x 2700 street scene (analysed downscaled to 4096 px, so upright boxes differ from the frame's)
    with a 100 px plate only the vehicle pass finds: the buses come from the objects findings, and the own COCO
    detector is never called."""
    plate, expected = PLATES["BE"]
    path = save_jpeg(paste(street_scene(2.5), plate, plate_quad(1400, 1537, 100), blur=0.8), tmp_path / "s.jpg")
    item = with_objects(evidence(path), objects)
    assert sum(f.data["class"] == "bus" for f in item.upstream["objects"]) == 2
    with pytest.MonkeyPatch.context() as patch:
        if analyzer.vehicles is not None:
            forbid(patch, analyzer.vehicles, "predict")
        findings = analyzer.analyze(item, AnalysisLimits())
    assert [f.data["text"] for f in findings] == [expected]
    data = findings[0].data
    assert (data["detected_by"], data["vehicle_source"]) == (["vehicle"], "objects")
    assert abs(data["box"][0] - 1400) < 10 and abs(data["box"][1] - 1537) < 10  # upright evidence pixels


def test_the_plate_on_the_bus_is_read_with_the_objects_findings(analyzer: PlatesAnalyzer,
                                                                objects: ObjectsAnalyzer, tmp_path: Path) -> None:
    path, _ = plate_photo("BE", tmp_path)
    item = with_objects(evidence(path), objects)
    with pytest.MonkeyPatch.context() as patch:
        if analyzer.vehicles is not None:
            forbid(patch, analyzer.vehicles, "predict")
        crops = spy(patch, analyzer.detector, "detect")
        findings = analyzer.analyze(item, AnalysisLimits())
    assert [f.label for f in findings] == [BUS_LABEL]
    # The bus comes from upstream; its plate was found on the whole frame, so its crop needs no second look.
    assert len(crops) == 0 and findings[0].data["vehicle_source"] == "objects"
    assert findings[0].data["detected_by"] == ["frame"]


def test_objects_that_found_nothing_means_no_vehicle_pass(analyzer: PlatesAnalyzer, tmp_path: Path) -> None:
    """`objects` ran and found no vehicle: no vehicle pass, and no fallback to the own COCO detector; the
    whole-frame pass still finds a plate large enough, but not the small one of the street scene."""
    path, _ = plate_photo("BE", tmp_path)
    street = save_jpeg(paste(street_scene(1.5), PLATES["BE"][0], plate_quad(840, 922, 85), blur=0.8),
                       tmp_path / "street.jpg")
    with pytest.MonkeyPatch.context() as patch:
        if analyzer.vehicles is not None:
            forbid(patch, analyzer.vehicles, "predict")
        forbid(patch, analyzer.detector, "detect")
        findings = analyzer.analyze(dataclasses.replace(evidence(path), upstream={"objects": []}), AnalysisLimits())
        missed = analyzer.analyze(dataclasses.replace(evidence(street), upstream={"objects": []}), AnalysisLimits())
    assert [f.label for f in findings] == [BUS_LABEL]
    assert (findings[0].data["detected_by"], findings[0].data["vehicle_source"]) == (["frame"], "objects")
    assert missed == []


def test_upstream_boxes_move_to_frame_pixels_and_only_vehicles_count() -> None:
    frame = imaging.Frame(index=2, pixels=np.zeros((540, 960, 3), np.uint8), scale=0.5, upright_size=(1920, 1080))

    def finding(cls: str, confidence: float, box: object, frame_index: int = 2,
                kind: str = "objects.detection") -> UpstreamFinding:
        return UpstreamFinding(kind=kind, label=cls, confidence=confidence,
                               data={"class": cls, "class_id": 0, "box": box, "frame": frame_index})

    found = upstream_vehicles([
        finding("car", 0.8, [200.0, 300.0, 1000.0, 900.0]),
        finding("bus", 0.9, [0, 0, 400, 400], frame_index=0),  # another frame
        finding("truck", 0.9, [0, 0, 400, 400], kind="faces.face"),
        finding("truck", 0.9, [0, 0, 400]),  # malformed
        finding("person", 0.9, [600.0, 100.0, 1200.0, 1000.0]),
        finding("motorcycle", 0.29, [1200.0, 100.0, 1800.0, 1000.0]),
    ], frame)
    assert found == [Vehicle("car", 0.8, (100.0, 150.0, 500.0, 450.0)),
                     Vehicle("person", 0.9, (300.0, 50.0, 600.0, 500.0)),
                     Vehicle("motorcycle", 0.29, (600.0, 50.0, 900.0, 500.0))]
    # Only the car is a vehicle of confidence 0.3 or more; its crop is widened by 5 % and clipped to the frame.
    assert vehicle_boxes(found, 960, 540, 640 / 960) == [(80, 135, 521, 466)]


def test_frames_objects_did_not_sample_fall_back_to_the_own_detector(analyzer: PlatesAnalyzer,
                                                                      tmp_path: Path) -> None:
    """A 20-frame animation: plates reads frames 0, 6, 13 and 19, objects read 8 frames (0, 3, 5, 8, 11, 14, 16,
    19); frames 6 and 13 have no objects verdict, so the own detector looks at them."""
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (64, 48), (10 * n, 90, 160)) for n in range(20)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=40)
    with pytest.MonkeyPatch.context() as patch:
        sources = spy(patch, analyzer, "frame_vehicles")
        assert analyzer.analyze(dataclasses.replace(evidence(path), upstream={"objects": []}),
                                AnalysisLimits()) == []
    fallback = "own-detector" if analyzer.vehicles is not None else None
    assert [source for _, source in sources] == ["objects", fallback, fallback, "objects"]


@pytest.mark.parametrize("photo", [bus_jpg_path, zidane_jpg_path])
def test_a_photo_without_plates_gives_no_plate_findings(analyzer: PlatesAnalyzer, photo: object) -> None:
    assert callable(photo)
    assert analyzer.analyze(evidence(photo()), AnalysisLimits()) == []


def test_a_truncated_image_fails_with_its_reason(analyzer: PlatesAnalyzer, tmp_path: Path) -> None:
    path = truncated_copy(bus_jpg_path(), tmp_path / "truncated.jpg", 0.5)
    with pytest.raises(AnalysisFailed, match="truncated or corrupt"):
        analyzer.analyze(evidence(path), AnalysisLimits())


def test_provenance_names_every_model_and_the_shipped_recognition_weights(analyzer: PlatesAnalyzer) -> None:
    provenance = analyzer.provenance()
    assert provenance["plate_detector"]["sha256"] == "13fe46504f4609387768cfa4270624a6d386c42efa496f1805df6305c14e597f"
    assert provenance["plate_reader"]["sha256"] == PPOCR_REC.sha256
    assert analyzer.reader._engine.cfg.Rec.model_path == str(PPOCR_REC.weights_path())
    tesseract = provenance["tesseract"]
    assert tesseract["version"].startswith("5.") and len(tesseract["traineddata_sha256"]) == 64
    assert registry.load_all()["plates"] is PlatesAnalyzer
    assert PlatesAnalyzer.requires == ("objects",)
    assert provenance["second_opinion"] == {"rapidocr_confidence_below": 0.9, "format_confidence_below": 0.8,
                                            "runner_up_share": 0.8}
    assert provenance["vehicle_sources"]["objects"]["min_confidence"] == 0.3


def test_agreeing_readers_raise_the_confidence() -> None:
    alone = choose_reading({"rapidocr": PlateReading("1-ABC-234", 0.9)})
    both = choose_reading({"rapidocr": PlateReading("1-ABC-234", 0.9), "tesseract": PlateReading("1ABC234", 0.8)})
    assert alone[0]["text_normalised"] == both[0]["text_normalised"] == "1-ABC-234"
    assert both[0]["confidence"] > alone[0]["confidence"]
    assert both[0]["readers"] == ["rapidocr", "tesseract"]
    split = choose_reading({"rapidocr": PlateReading("1-ABC-234", 0.9), "tesseract": PlateReading("1-ABC-236", 0.9)})
    assert split[0]["text_normalised"] == "1-ABC-234"  # Tesseract is the second opinion


def test_duplicate_detections_are_merged() -> None:
    full = FoundPlate((100, 100, 200, 130), 0.7, ("frame",))
    shifted = FoundPlate((104, 101, 203, 131), 0.6, ("vehicle",))
    fragment = FoundPlate((150, 102, 199, 129), 0.3, ("frame",))
    other = FoundPlate((400, 100, 500, 130), 0.5, ("frame",))
    merged = merge_plates([fragment, other, shifted, full])
    assert merged == [FoundPlate(full.box, 0.7, ("frame", "vehicle")), other]


def test_importing_the_analyzer_loads_no_heavy_library() -> None:
    code = ("import sys, workers.analyzers.plates; "
            "print(sorted(m for m in ('torch', 'ultralytics', 'rapidocr', 'onnxruntime', 'cv2') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.stdout.strip() == "[]"


def test_tesseract_tsv_and_a_missing_binary() -> None:
    tsv = ("level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
           "4\t1\t1\t1\t1\t0\t0\t0\t10\t10\t-1\t\n"
           "5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t90.0\t1\n"
           "5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t80.0\tABC-234\n")
    assert parse_tsv(tsv) == PlateReading("1 ABC-234", pytest.approx(0.85))
    assert parse_tsv("") == PlateReading("", 0.0)
    from models.base import ModelError

    with pytest.raises(ModelError, match="not installed"):
        TesseractPlateReader(binary="tesseract-that-does-not-exist").load()
