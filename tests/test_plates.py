"""The plates analyzer on plates rendered with a Debian font and pasted, warped and blurred, into real photos."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from models.plates import PlateReading, TesseractPlateReader, parse_tsv
from models.specs import PPOCR_REC
from tests.media_samples import bus_jpg_path, evidence, truncated_copy, zidane_jpg_path
from workers.analyzers import registry
from workers.analyzers.base import AnalysisFailed, AnalysisLimits
from workers.analyzers.plates import FoundPlate, PlatesAnalyzer, choose_reading, merge_plates
from workers.plate_formats import normalise_plate

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


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the plates analyzer tried to reach the network")


@pytest.fixture(scope="module")
def analyzer() -> Iterator[PlatesAnalyzer]:
    """One loaded analyzer for the module; any download or network connection fails the tests."""
    from rapidocr.utils.download_file import DownloadFile

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_AUTOINSTALL", "false")
        patch.setattr(DownloadFile, "run", classmethod(_no_network))
        patch.setattr(socket.socket, "connect", _no_network)
        plates = PlatesAnalyzer()
        plates.load()
        yield plates


@pytest.mark.parametrize("country", sorted(PLATES))
def test_reads_a_rendered_plate_pasted_into_a_photo(analyzer: PlatesAnalyzer, tmp_path: Path,
                                                    country: str) -> None:
    plate, expected = PLATES[country]
    quad = plate_quad(540, 610, 150)
    path = save_jpeg(paste(bus_photo(), plate, quad, blur=1.0), tmp_path / f"{country}.jpg")
    findings = analyzer.analyze(evidence(path), AnalysisLimits())
    assert len(findings) == 1, [f.label for f in findings]
    finding = findings[0]
    assert finding.kind == "plates.plate"
    assert (finding.data["text"], finding.data["country"]) == (expected, country)
    assert finding.label == f"{expected} ({country})"
    x1, y1, x2, y2 = finding.data["box"]
    xs, ys = [p[0] for p in quad], [p[1] for p in quad]
    assert abs(x1 - min(xs)) < 15 and abs(x2 - max(xs)) < 15 and abs(y1 - min(ys)) < 10 and abs(y2 - max(ys)) < 10
    assert finding.data["frame"] == 0 and 0.25 <= finding.data["detector_confidence"] <= 1
    assert 0 < finding.confidence <= finding.data["detector_confidence"]
    assert set(finding.data["raw_readings"]) >= {"rapidocr", "tesseract"}
    assert finding.data["candidates"][0]["text_normalised"] == expected
    [artifact] = finding.artifacts
    assert (artifact.name, artifact.content_type) == ("plate-0-0.jpg", "image/jpeg")
    with Image.open(io.BytesIO(artifact.data)) as crop:
        assert crop.width > crop.height > 20


@pytest.mark.parametrize("country", sorted(PLATES))
def test_both_readers_read_a_rendered_plate_crop(analyzer: PlatesAnalyzer, country: str) -> None:
    """Independent of the detector: the crop of a warped, blurred plate, read by PP-OCR and by Tesseract."""
    plate, expected = PLATES[country]
    canvas = np.full((90, 280, 3), 90, dtype=np.uint8)
    crop = paste(canvas, plate, [(10, 12), (268, 16), (266, 72), (12, 70)], blur=0.8)
    reading = analyzer.read_plate(crop)
    assert (reading["text"], reading["country"]) == (expected, country)
    assert reading["candidates"][0]["readers"] == ["rapidocr", "tesseract"]  # both agree
    for name in ("rapidocr", "tesseract"):
        text, confidence = reading["raw_readings"][name]
        assert normalise_plate(text)[0].text_normalised == expected and confidence > 0.5, (name, text)


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
        assert findings == [] and analyzer.provenance()["vehicle_pass"].startswith("skipped")
        return
    assert [f.data["text"] for f in findings] == [expected]
    assert findings[0].data["detected_by"] == ["vehicle"]
    assert abs(findings[0].data["box"][0] - 840) < 10 and abs(findings[0].data["box"][1] - 922) < 10
    assert analyzer.provenance()["vehicle_detector"]["name"] == "yolov8n-coco"


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
