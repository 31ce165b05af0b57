"""The OCR engine layer: Tesseract pages (four languages, rotation, scans, photos, a real scan), PP-OCR scene
text, language identification and the character error rate.

Thresholds come from measurements on this machine (Tesseract 5.3.0, DejaVu pages): clean pages read with a
CER of 0-0.35 % (limit 2 %), scanned-look pages 0-0.23 % (limit 2 %), photos of a page 0-3.1 % (limit 6 %:
perspective sometimes moves a phrase in the reading order), scikit-image's real scan 4.3 % (limit 8 %).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from models.base import ModelError
from models.ocr import OcrPage, TesseractOcr, character_error_rate, identify_language
from models.scenetext import SceneTextReader
from tests.media_samples import bus_jpg_path
from tests.text_samples import LANGUAGES, document_photo, render_page, rotate_page, scan_noise, sign_on_photo

CLEAN_CER = 0.02
PHOTO_CER = 0.06
REAL_SCAN_CER = 0.08
BOX_TOLERANCE = 8.0  # pixels

# scikit-image's data.page(): typed by looking at the image (the fragment of a URL under the code is left out).
SKIMAGE_PAGE = """Region-based segmentation
Let us first determine markers of the coins and the
background. These markers are pixels that we can label
unambiguously as either object or background. Here,
the markers are found at the two extreme parts of the
histogram of grey values:
>>> markers = np.zeros_like(coins)"""


@pytest.fixture(scope="module")
def ocr() -> TesseractOcr:
    engine = TesseractOcr()
    engine.load()
    return engine


@pytest.fixture(scope="module")
def scene() -> Iterator[SceneTextReader]:
    reader = SceneTextReader()
    reader.load()
    yield reader


def _rotated_box(box: tuple[int, int, int, int], degrees: int, width: int, height: int) -> tuple[float, ...]:
    """Where a box of an upright width x height page lands after `rotate_page(page, degrees)` (counter-clockwise)."""
    x1, y1, x2, y2 = box
    if degrees == 90:
        return (y1, width - x2, y2, width - x1)
    if degrees == 180:
        return (width - x2, height - y2, width - x1, height - y1)
    if degrees == 270:
        return (height - y2, x1, height - y1, x2)
    return (x1, y1, x2, y2)


def _find_word(page: OcrPage, text: str) -> tuple[float, float, float, float]:
    for line in page.lines:
        for word in line.words:
            if word.text == text:
                return word.box
    raise AssertionError(f"{text!r} was not read: {page.text[:200]!r}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_clean_page_each_language(ocr: TesseractOcr, language: str) -> None:
    font = "serif" if language in ("nld", "deu") else "sans"
    sample = render_page(language, font=font, size=32)
    page = ocr.read_page(sample.image)
    assert character_error_rate(sample.text, page.text) <= CLEAN_CER, page.text
    assert page.language == language and page.language_confidence >= 0.9
    assert page.rotation == 0 and page.orientation_confidence >= 2.0
    assert page.engine == "tesseract" and (page.width, page.height) == (1240, 1754)
    assert page.passes[:2] == ("osd", "nld+fra+deu+eng") and page.kept_run in page.passes
    # a second, single-language pass for Dutch, French and German; English keeps the four-language reading
    assert page.passes[2:] == (() if language == "eng" else (language,))
    assert 0.8 <= page.mean_confidence <= 1.0
    assert "\n\n" in page.text  # paragraphs are kept apart
    json.dumps(page.to_dict())


def test_word_boxes_are_where_the_words_were_drawn(ocr: TesseractOcr) -> None:
    sample = render_page("deu", font="serif", size=32)
    page = ocr.read_page(sample.image)
    read_words = [(word.text, word.box) for line in page.lines for word in line.words]
    read = {text: box for text, box in read_words if [t for t, _ in read_words].count(text) == 1}
    drawn_once = [(text, box) for text, box in sample.words if [t for t, _ in sample.words].count(text) == 1]
    checked = 0
    for text, drawn in drawn_once:
        if text in read:
            assert np.allclose(read[text], drawn, atol=BOX_TOLERANCE), (text, read[text], drawn)
            checked += 1
    assert checked >= 0.8 * len(drawn_once)


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_page(ocr: TesseractOcr, degrees: int) -> None:
    sample = render_page("fra", font="serif", size=32)
    turned = rotate_page(sample.image, degrees)
    page = ocr.read_page(turned)
    assert page.rotation == degrees and page.orientation_confidence >= 2.0
    assert (page.width, page.height) == (turned.shape[1], turned.shape[0])
    assert character_error_rate(sample.text, page.text) <= CLEAN_CER
    assert page.language == "fra"
    title_word, drawn = sample.words[0]
    expected = _rotated_box(drawn, degrees, sample.image.shape[1], sample.image.shape[0])
    assert np.allclose(_find_word(page, title_word), expected, atol=BOX_TOLERANCE)


def test_scanned_page_with_noise_and_skew(ocr: TesseractOcr) -> None:
    sample = render_page("nld", font="sans", size=28)
    page = ocr.read_page(scan_noise(sample.image, seed=3))
    assert character_error_rate(sample.text, page.text) <= CLEAN_CER
    assert page.language == "nld"


def test_photo_of_a_document(ocr: TesseractOcr) -> None:
    sample = render_page("eng", font="serif", size=34)
    page = ocr.read_page(document_photo(sample.image, seed=2))
    assert character_error_rate(sample.text, page.text) <= PHOTO_CER, page.text
    assert page.language == "eng" and page.rotation == 0


def test_real_scanned_page(ocr: TesseractOcr) -> None:
    from skimage import data

    page = ocr.read_page(data.page())  # 384 x 191 grey: glyphs ~8 px, so the page is scaled up first
    assert character_error_rate(SKIMAGE_PAGE, page.text) <= REAL_SCAN_CER, page.text
    assert page.language == "eng" and page.rotation == 0
    assert (page.width, page.height) == (384, 191)
    x1, y1, x2, y2 = _find_word(page, "segmentation")
    assert 150 <= x1 < x2 <= 300 and 5 <= y1 < y2 <= 40


def test_blank_page_is_empty_not_an_error(ocr: TesseractOcr) -> None:
    page = ocr.read_page(np.full((800, 600, 3), 255, dtype=np.uint8))
    assert page.text == "" and page.lines == () and page.language is None
    assert page.rotation == 0 and page.orientation_confidence == 0.0 and page.mean_confidence == 0.0


@pytest.mark.parametrize("shape", [(5, 5, 3), (5, 5), (1, 300)])
def test_tiny_images_do_not_crash(ocr: TesseractOcr, shape: tuple[int, ...]) -> None:
    page = ocr.read_page(np.zeros(shape, dtype=np.uint8))
    assert page.rotation == 0 and (page.width, page.height) == (shape[1], shape[0])


def test_noise_is_not_turned_and_boxes_stay_inside(ocr: TesseractOcr) -> None:
    noise = np.random.default_rng(0).integers(0, 256, (400, 500, 3), dtype=np.uint8)
    page = ocr.read_page(noise)
    assert page.rotation == 0
    for line in page.lines:
        assert 0 <= line.box[0] <= line.box[2] <= 500 and 0 <= line.box[1] <= line.box[3] <= 400


def test_bad_input_and_unloaded_engine() -> None:
    engine = TesseractOcr()
    with pytest.raises(ModelError):
        engine.read_page(np.zeros((10, 10), np.uint8))
    engine.load()
    with pytest.raises(ValueError):
        engine.read_page(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(ValueError):
        engine.read_page(np.zeros((10, 10), np.uint8), languages=("ita",))


def test_missing_language_data_refuses_to_load() -> None:
    with pytest.raises(ModelError, match="xyz"):
        TesseractOcr(languages=("eng", "xyz")).load()


def test_provenance_hashes_every_language_file(ocr: TesseractOcr) -> None:
    provenance = ocr.provenance()
    assert set(provenance["traineddata"]) == {"nld", "fra", "deu", "eng", "osd"}
    assert all(len(entry["sha256"]) == 64 for entry in provenance["traineddata"].values())
    assert provenance["version"].startswith("5.")


def test_scene_text_on_a_real_photo(scene: SceneTextReader) -> None:
    photo = np.asarray(Image.open(bus_jpg_path()).convert("RGB"))
    image = sign_on_photo(photo, "BAKKERIJ DE VRIES", size=56, origin=(60, 60))
    page = scene.predict(image)
    assert page.engine == "rapidocr" and (page.width, page.height) == (810, 1080)
    best = min(page.lines, key=lambda line: character_error_rate("BAKKERIJ DE VRIES", line.text))
    assert character_error_rate("BAKKERIJ DE VRIES", best.text) <= 0.1
    x1, y1, x2, y2 = best.box
    assert 30 <= x1 <= 90 and 40 <= y1 <= 90 and x2 > 500 and y2 < 160
    assert best.words[0].box[2] < best.words[-1].box[0]  # words split left to right
    assert "cero" in page.text.lower() or "emisiones" in page.text.lower()  # the bus's own lettering
    json.dumps(page.to_dict())


def test_scene_text_blank_photo(scene: SceneTextReader) -> None:
    page = scene.predict(np.full((200, 300, 3), 128, dtype=np.uint8))
    assert page.text == "" and page.lines == () and page.language is None


def test_scene_reader_provenance_names_three_models(scene: SceneTextReader) -> None:
    names = [model["name"] for model in scene.provenance()["models"]]
    assert names == ["pp-ocrv6-det-small", "pp-ocr-mobile-v2-cls", "pp-ocrv6-rec-small"]


@pytest.mark.parametrize(("text", "expected"), [
    ("De verdachte werd aangehouden op de hoek van de straat.", "nld"),
    ("Le suspect a été interpellé à l'angle de la rue.", "fra"),
    ("Der Verdächtige wurde an der Straßenecke festgenommen.", "deu"),
    ("The suspect was arrested on the corner of the street.", "eng"),
])
def test_identify_language(text: str, expected: str) -> None:
    language, probability = identify_language(text)
    assert language == expected and 0.5 < probability <= 1.0


@pytest.mark.parametrize("text", ["", "   ", "Hallo", "12345 678 90", "!!! ??? ..."])
def test_identify_language_needs_letters(text: str) -> None:
    assert identify_language(text) == (None, 0.0)


def test_character_error_rate() -> None:
    assert character_error_rate("de straat", "de straat") == 0.0
    assert character_error_rate("  de\nstraat ", "de straat") == 0.0  # whitespace is normalised
    assert character_error_rate("abcd", "abxd") == pytest.approx(0.25)  # one substitution
    assert character_error_rate("abcd", "abcxd") == pytest.approx(0.25)  # one insertion
    assert character_error_rate("abcd", "acd") == pytest.approx(0.25)  # one deletion
    assert character_error_rate("abcd", "") == 1.0
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("", "x") == 1.0
    assert character_error_rate("ab", "xyzw") == pytest.approx(2.0)  # may exceed 1 with many insertions
    assert character_error_rate("kitten", "sitting") == pytest.approx(3 / 6)
    assert character_error_rate("straße", "strasse") == pytest.approx(2 / 6)


def test_character_error_rate_is_fast_enough_for_a_page() -> None:
    import time

    page = render_page("fra").text
    started = time.perf_counter()
    assert character_error_rate(page, page[::-1]) > 0.5
    assert time.perf_counter() - started < 1.0
