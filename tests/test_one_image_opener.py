"""One image opener everywhere (`models.pillow.pillow_open`, HEIC included): OCR, the fingerprint screen and
every other image analyzer read a real HEIC photo, and no module in models/ or workers/ opens images itself.
"""

from __future__ import annotations

import ast
import dataclasses
import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
import skimage.data
from PIL import Image

from models.ocr import character_error_rate
from tests.fingerprint_samples import synthetic_impression
from tests.hostile_runner import evidence_for, load_analyzers, run_file
from workers.analyzers.base import AnalysisLimits, Analyzer
from workers.analyzers.hashes import pdq_distance

ROOT = Path(__file__).resolve().parents[1]
OPENER = ROOT / "models" / "pillow.py"
# Calls that decode an image file: Pillow's Image.open, OpenCV's imread / imdecode, imageio and scikit-image.
DECODERS = {("Image", "open"), ("PIL.Image", "open"), ("cv2", "imread"), ("cv2", "imdecode"),
            ("cv2", "imreadmulti"), ("imageio", "imread"), ("iio", "imread"), ("io", "imread"),
            ("skimage.io", "imread")}


def _callee(node: ast.Call) -> tuple[str, str] | None:
    func = node.func
    if isinstance(func, ast.Attribute):
        return ast.unparse(func.value), func.attr
    if isinstance(func, ast.Name) and func.id in {"imread", "imdecode"}:
        return "", func.id
    return None


def _direct_openers() -> list[str]:
    found = []
    for path in sorted([*ROOT.joinpath("models").rglob("*.py"), *ROOT.joinpath("workers").rglob("*.py")]):
        if path == OPENER:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "PIL.Image" and \
                    any(alias.name == "open" for alias in node.names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports PIL.Image.open")
            if isinstance(node, ast.Call) and (callee := _callee(node)) is not None and \
                    (callee in DECODERS or callee[0] == ""):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {'.'.join(filter(None, callee))}")
    return found


def test_no_module_opens_images_except_the_opener() -> None:
    assert _direct_openers() == []


def test_the_scan_finds_a_direct_opener(tmp_path: Path) -> None:
    source = "from PIL import Image\nimport cv2\nImage.open('x')\ncv2.imread('y')\n"
    tree = ast.parse(source)
    calls = [_callee(node) for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert ("Image", "open") in calls and ("cv2", "imread") in calls


def _heic(image: Image.Image, path: Path, quality: int = 90) -> Path:
    pillow_heif.from_pillow(image).save(path, quality=quality)
    return path


@pytest.fixture(scope="module")
def analyzers() -> dict[str, Analyzer]:
    return load_analyzers()


def test_ocr_reads_a_heic_page(analyzers: dict[str, Analyzer], tmp_path: Path) -> None:
    page = Image.fromarray(skimage.data.page()).resize((768, 382), Image.Resampling.LANCZOS)
    page.save(tmp_path / "page.png")
    heic = _heic(page.convert("RGB"), tmp_path / "page.heic", quality=95)
    limits = AnalysisLimits()
    item = dataclasses.replace(evidence_for(heic), declared_kind="document")
    assert item.media_type == "image/heic"
    [read, *_] = analyzers["ocr"].analyze(item, limits)
    reference = analyzers["ocr"].analyze(dataclasses.replace(evidence_for(tmp_path / "page.png"),
                                                             declared_kind="document"), limits)[0]
    assert len(reference.data["text"]) > 100
    assert character_error_rate(reference.data["text"], read.data["text"]) < 0.1


def test_the_fingerprint_screen_and_extraction_read_a_heic_print(analyzers: dict[str, Analyzer],
                                                                  tmp_path: Path) -> None:
    heic = _heic(Image.fromarray(synthetic_impression(3, 0)).convert("RGB"), tmp_path / "print.heic", quality=95)
    undeclared = analyzers["fingerprints"].analyze(evidence_for(heic), AnalysisLimits())
    declared = analyzers["fingerprints"].analyze(dataclasses.replace(evidence_for(heic), declared_kind="fingerprint",
                                                                     declared_ppi=500.0), AnalysisLimits())
    for findings in (undeclared, declared):
        [template] = findings
        assert template.data["source_format"] == "heif" and template.data["minutiae"] >= 12


def test_every_image_analyzer_reads_a_heic_photo(analyzers: dict[str, Analyzer], tmp_path: Path) -> None:
    photo = Image.fromarray(skimage.data.astronaut())
    photo.save(tmp_path / "astronaut.png")
    heic = _heic(photo, tmp_path / "astronaut.heic")
    outcomes = {outcome.analyzer: outcome for outcome in run_file(analyzers, evidence_for(heic), AnalysisLimits())}
    assert {"media_probe", "hashes", "objects", "faces", "similarity", "ocr", "fingerprints"} <= set(outcomes)
    assert all(outcome.status == "succeeded" for outcome in outcomes.values()), outcomes
    assert outcomes["faces"].findings >= 1  # the astronaut's face
    hashes = analyzers["hashes"]
    heic_pdq = next(f for f in hashes.analyze(evidence_for(heic), AnalysisLimits()) if f.kind == "hash.pdq")
    png_pdq = next(f for f in hashes.analyze(evidence_for(tmp_path / "astronaut.png"), AnalysisLimits())
                   if f.kind == "hash.pdq")
    assert pdq_distance(heic_pdq.data["pdq"], png_pdq.data["pdq"]) < 31
    [probe] = [f for f in analyzers["media_probe"].analyze(evidence_for(heic), AnalysisLimits())
               if f.kind == "media.probe"]
    assert (probe.data["format"], probe.data["width"], probe.data["height"]) == ("HEIF", 512, 512)
    thumbnail = Image.open(io.BytesIO(probe.artifacts[0].data))
    assert max(thumbnail.size) == 256 and np.asarray(thumbnail).std() > 20
