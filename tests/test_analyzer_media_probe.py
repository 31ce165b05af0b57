"""The media probe on real photos, generated edge cases and hostile files."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from tests.media_samples import (
    animated_gif,
    bomb_png,
    bus_jpg_path,
    evidence,
    grey16_png,
    jpeg_with_exif,
    pdf_bytes,
    skimage_data_path,
    truncated_copy,
)
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, FindingData
from workers.analyzers.media_probe import MediaProbeAnalyzer
from workers.analyzers.registry import select

TIMES = "\N{MULTIPLICATION SIGN}"  # labels read like 810 TIMES 1080


def _probe(path: Path, filename: str | None = None, limits: AnalysisLimits | None = None) -> list[FindingData]:
    analyzer = MediaProbeAnalyzer()
    analyzer.load()
    findings = analyzer.analyze(evidence(path, filename), limits or AnalysisLimits())
    for finding in findings:
        json.dumps(finding.data, allow_nan=False)  # everything a finding holds must be storable as JSON
    return findings


def _thumbnail(finding: FindingData) -> Image.Image:
    (artifact,) = finding.artifacts
    assert (artifact.name, artifact.content_type) == ("thumbnail.jpg", "image/jpeg")
    image = Image.open(io.BytesIO(artifact.data))
    assert (image.format, image.mode) == ("JPEG", "RGB")
    return image


def test_registered_for_every_media_type() -> None:
    registered = select(["media_probe"])["media_probe"]
    assert registered is MediaProbeAnalyzer
    assert registered.produces == {"media.probe", "media.exif", "media.polyglot"}
    assert all(registered.accepts_media(kind) for kind in ("image/jpeg", "application/pdf", "text/plain"))


def test_real_photo() -> None:
    (probe,) = _probe(bus_jpg_path())
    assert probe.kind == "media.probe"
    assert probe.label == f"JPEG image 810{TIMES}1080"
    assert probe.data["media_type"] == "image/jpeg"
    assert probe.data["size"] == bus_jpg_path().stat().st_size
    assert probe.data["extension_mismatch"] is False
    assert (probe.data["width"], probe.data["height"], probe.data["frames"]) == (810, 1080, 1)
    assert (probe.data["mode"], probe.data["bits_per_channel"], probe.data["orientation"]) == ("RGB", 8, None)
    assert _thumbnail(probe).size == (192, 256)


def test_exif_camera_time_gps_and_orientation(tmp_path: Path) -> None:
    probe, exif = _probe(jpeg_with_exif(tmp_path / "IMG_0001.JPG"))
    assert (probe.data["width"], probe.data["height"]) == (810, 1080)
    assert probe.data["orientation"] == 6
    assert (probe.data["upright_width"], probe.data["upright_height"]) == (1080, 810)
    assert probe.label == f"JPEG image 1080{TIMES}810"
    assert _thumbnail(probe).size == (256, 192)  # orientation applied

    assert exif.kind == "media.exif"
    facts = exif.data
    assert (facts["make"], facts["model"]) == ("Canon", "Canon EOS 5D Mark IV")
    assert facts["lens_model"] == "EF24-105mm f/4L IS USM"
    assert facts["body_serial_number"] == "012345678901"
    assert facts["software"] == "Firmware Version 1.1.2"
    assert facts["datetime_original"] == "2023:07:14 16:45:09"
    assert facts["offset_time_original"] == "+02:00"
    assert facts["datetime_original_iso"] == "2023-07-14T16:45:09.25+02:00"
    assert facts["orientation"] == 6
    gps = facts["gps"]
    assert gps["latitude"] == pytest.approx(48 + 51 / 60 + 29.52 / 3600, abs=1e-6)
    assert gps["longitude"] == pytest.approx(2 + 17 / 60 + 40.2 / 3600, abs=1e-6)
    assert gps["altitude_m"] == pytest.approx(35.5)
    assert (gps["timestamp"], gps["datestamp"]) == ("14:45:09", "2023:07:14")
    assert gps["datetime_utc"] == "2023-07-14T14:45:09Z"
    assert facts["tags"]["ifd0"]["Make"] == "Canon"
    assert facts["tags"]["exif"]["MakerNote"] == "<5,120 bytes, not decoded>"
    assert facts["tags"]["gps"]["GPSLatitude"] == pytest.approx([48.0, 51.0, 29.52])
    assert "Canon EOS 5D Mark IV" in (exif.label or "") and "48.858200" in (exif.label or "")


def test_gps_southern_and_western_hemispheres_are_negative(tmp_path: Path) -> None:
    path = jpeg_with_exif(tmp_path / "sydney.jpg", latitude=(33.0, 51.0, 25.0, "S"),
                          longitude=(151.0, 12.0, 36.0, "W"), orientation=1)
    _, exif = _probe(path)
    assert exif.data["gps"]["latitude"] == pytest.approx(-(33 + 51 / 60 + 25 / 3600), abs=1e-6)
    assert exif.data["gps"]["longitude"] == pytest.approx(-(151 + 12 / 60 + 36 / 3600), abs=1e-6)


def test_truncated_jpeg_fails_on_decoding(tmp_path: Path) -> None:
    path = truncated_copy(bus_jpg_path(), tmp_path / "cut.jpg", 0.6)
    with pytest.raises(AnalysisFailed, match="truncated or corrupt"):
        _probe(path)


def test_unreadable_image_format_fails_clearly() -> None:
    # scikit-image's multipage_rgb.tif is a real TIFF that Pillow cannot read.
    with pytest.raises(AnalysisFailed, match="not readable"):
        _probe(skimage_data_path("multipage_rgb.tif"))


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(AnalysisFailed, match="the file is empty"):
        _probe(path)


def test_pdf_named_as_photo_is_a_mismatch_not_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(pdf_bytes(pages=3))
    (probe,) = _probe(path)
    assert probe.data["media_type"] == "application/pdf"
    assert probe.data["extension"] == ".jpg"
    assert probe.data["extension_mismatch"] is True
    assert probe.data["expected_extensions"] == [".pdf"]
    assert probe.data["pages"] == 3
    assert probe.label == "PDF document, 3 pages (named .jpg, content is application/pdf)"
    assert probe.artifacts == []


def test_corrupt_pdf_is_reported_with_an_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pdf"
    path.write_bytes(pdf_bytes()[:60])
    (probe,) = _probe(path)
    assert probe.data["pages"] is None
    assert "could not be opened" in probe.data["error"]
    assert probe.data["extension_mismatch"] is False


def test_other_files_are_recorded(tmp_path: Path) -> None:
    path = tmp_path / "notes"
    path.write_text("meet at the usual place\n")
    (probe,) = _probe(path)
    assert probe.data["media_type"] == "text/plain"
    assert probe.data["extension_mismatch"] is None  # no extension, and text has no fixed one
    assert probe.label == "text/plain, 24 bytes"


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    path = bomb_png(tmp_path / "bomb.png")
    started = time.perf_counter()
    with pytest.raises(AnalysisFailed, match=r"900,000,000 pixels, over the limit of 120,000,000"):
        _probe(path)
    with pytest.raises(AnalysisFailed, match=f"30000{TIMES}30000 = 900,000,000 pixels, over the limit of 500,000,000"):
        _probe(path, limits=AnalysisLimits(max_image_pixels=500_000_000))
    assert time.perf_counter() - started < 2.0  # decoding 900 Mpx would take far longer


def _cmyk_jpeg(path: Path) -> Path:
    Image.fromarray(skimage.data.astronaut()).convert("CMYK").save(path, "JPEG", quality=95)
    return path


def _webp(path: Path) -> Path:
    Image.fromarray(skimage.data.astronaut()).resize((300, 200)).save(path, "WEBP", quality=80)
    return path


def _heic(path: Path) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    Image.fromarray(skimage.data.astronaut()).resize((320, 240)).save(path, "HEIF", quality=80)
    return path


def _grey(path: Path) -> Path:
    Image.fromarray(skimage.data.camera()).save(path, "PNG")
    return path


@pytest.mark.parametrize(("make", "media_type", "expected"), [
    (lambda p: grey16_png(p / "g16.png"), "image/png", ("PNG", "I;16", 320, 200, 1, 16)),
    (lambda p: skimage_data_path("logo.png"), "image/png", ("PNG", "RGBA", 500, 500, 1, 8)),
    (lambda p: _grey(p / "camera.png"), "image/png", ("PNG", "L", 512, 512, 1, 8)),
    (lambda p: _cmyk_jpeg(p / "cmyk.jpg"), "image/jpeg", ("JPEG", "CMYK", 512, 512, 1, 8)),
    (lambda p: animated_gif(p / "anim.gif"), "image/gif", ("GIF", "P", 120, 80, 3, 8)),
    (lambda p: _webp(p / "astronaut.webp"), "image/webp", ("WEBP", "RGB", 300, 200, 1, 8)),
    (lambda p: skimage_data_path("multipage.tif"), "image/tiff", ("TIFF", "L", 10, 15, 2, 8)),
    (lambda p: _heic(p / "astronaut.heic"), "image/heic", ("HEIF", "RGB", 320, 240, 1, 8)),
], ids=["png16", "rgba", "grey", "cmyk", "gif3", "webp", "tiff2", "heic"])
def test_image_formats(tmp_path: Path, make: Callable[[Path], Path], media_type: str,
                       expected: tuple[str, str, int, int, int, int]) -> None:
    path = make(tmp_path)
    probe = _probe(path)[0]
    data = probe.data
    assert data["media_type"] == media_type
    assert (data["format"], data["mode"], data["width"], data["height"], data["frames"],
            data["bits_per_channel"]) == expected
    assert data["multi_frame"] is (expected[4] > 1)
    thumbnail = _thumbnail(probe)
    assert max(thumbnail.size) == min(256, max(expected[2], expected[3]))


def test_cmyk_thumbnail_has_true_colours(tmp_path: Path) -> None:
    rgb_path = tmp_path / "rgb.png"
    Image.fromarray(skimage.data.astronaut()).save(rgb_path)
    from_rgb = np.asarray(_thumbnail(_probe(rgb_path)[0]), dtype=np.float64)
    from_cmyk = np.asarray(_thumbnail(_probe(_cmyk_jpeg(tmp_path / "cmyk.jpg"))[0]), dtype=np.float64)
    assert np.abs(from_rgb - from_cmyk).mean() < 10  # not inverted, not washed out


def test_unreadable_image_still_fails_clearly_after_ultralytics_patched_pillow() -> None:
    import importlib

    importlib.import_module("ultralytics.utils.patches")  # replaces PIL.Image.open, as the plates worker does
    with pytest.raises(AnalysisFailed, match="not readable"):
        _probe(skimage_data_path("multipage_rgb.tif"))
