"""Plates of many countries, rendered with a Debian font and pasted, slightly warped, onto a real bus photo.

Each `PlateSample` is a plate as printed (text, colours, an EU band with its country code, or none) and what
Locard may say about it: the characters it must keep, and the country only where the plate itself says so
(`band`) or a single known format fits (`single_format`), else the countries whose formats fit as candidates.
The photo is ultralytics' bus.jpg (a real street photo); the plate goes on the front of the bus.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.media_samples import bus_jpg_path
from workers.analyzers.plates import PlatesAnalyzer

FONT_CANDIDATES = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", "/usr/share/fonts/TTF/DejaVuSans-Bold.ttf")
EU_BLUE, EU_YELLOW = (0, 51, 153), (255, 204, 0)
WHITE, BLACK, YELLOW = (255, 255, 255), (0, 0, 0), (247, 200, 0)
PLATE_SIZE = (520, 110)  # the EU plate's millimetres
BAND_WIDTH = 48
Quad = list[tuple[float, float]]


def font_path() -> str:
    found = next((path for path in FONT_CANDIDATES if Path(path).is_file()), None)
    assert found, f"no DejaVu Sans Bold font (Debian package fonts-dejavu-core) at {FONT_CANDIDATES}"
    return found


@dataclass(frozen=True)
class PlateSample:
    """A plate to render, and what a reading of it must say.

    `band`: the country code printed on an EU band at the left (None: no band). `country`: what Locard may name
    (None: it must not name one); `candidates`: the countries whose formats fit the characters as printed.
    """

    name: str
    text: str
    background: tuple[int, int, int]
    ink: tuple[int, int, int]
    band: str | None
    country: str | None
    candidates: frozenset[str]
    top_strip: tuple[int, int, int] | None = None  # Mercosur's blue strip along the top

    @property
    def compact(self) -> str:
        """The plate's letters and digits: what a reading must keep, every one."""
        return re.sub(r"[^A-Z0-9]", "", self.text)


SAMPLES: tuple[PlateSample, ...] = (
    PlateSample("CZ", "1AB 2345", WHITE, BLACK, None, "CZ", frozenset({"CZ"})),
    PlateSample("PL", "WA 12345", WHITE, BLACK, None, "PL", frozenset({"PL"})),
    PlateSample("IT", "AB 123 CD", WHITE, BLACK, None, None, frozenset({"FR", "IT", "AR"})),
    PlateSample("ES", "1234 BCD", WHITE, BLACK, None, "ES", frozenset({"ES"})),
    PlateSample("CH", "ZH 123456", WHITE, BLACK, None, "CH", frozenset({"CH"})),
    PlateSample("GB", "AB12 CDE", YELLOW, BLACK, None, "GB", frozenset({"GB"})),
    PlateSample("AR Mercosur", "AB 123 CD", WHITE, BLACK, None, None, frozenset({"FR", "IT", "AR"}),
                top_strip=EU_BLUE),
    PlateSample("AR 1995", "ABC 123", BLACK, WHITE, None, None, frozenset({"BE", "AR", "DE"})),
    # With an EU band: only the band can tell a Belgian 1-ABC-234 from a Californian 1ABC234.
    PlateSample("BE band", "1-ABC-234", WHITE, (200, 16, 46), "B", "BE", frozenset({"BE"})),
    PlateSample("NL band", "K-123-BF", YELLOW, BLACK, "NL", "NL", frozenset({"NL"})),
)


def render(sample: PlateSample) -> np.ndarray:
    """The plate as an RGB array of PLATE_SIZE: border, optional EU band (stars ring and code), the text."""
    width, height = PLATE_SIZE
    image = Image.new("RGB", (width, height), sample.background)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, height - 1), outline=sample.ink, width=4)
    left, top = 4, 4
    if sample.band is not None:
        left = BAND_WIDTH
        draw.rectangle((4, 4, BAND_WIDTH, height - 5), fill=EU_BLUE)
        draw.ellipse((BAND_WIDTH / 2 - 10, 16, BAND_WIDTH / 2 + 12, 40), outline=EU_YELLOW, width=3)
        draw.text((BAND_WIDTH / 2 + 2, 78), sample.band, font=ImageFont.truetype(font_path(), 30), fill=WHITE,
                  anchor="mm")
    if sample.top_strip is not None:
        top = 24
        draw.rectangle((4, 4, width - 5, top - 2), fill=sample.top_strip)
    size = 68 if len(sample.text) <= 9 else 60
    draw.text(((left + width) / 2, (top + height) / 2), sample.text, font=ImageFont.truetype(font_path(), size),
              fill=sample.ink, anchor="mm")
    return np.asarray(image)


def bus_photo() -> np.ndarray:
    """ultralytics' bus.jpg (810 x 1080), RGB."""
    with Image.open(bus_jpg_path()) as image:
        return np.asarray(image.convert("RGB"))


def plate_quad(x: float, y: float, width: float) -> Quad:
    """A plate seen slightly from the side and below (clockwise from top-left): right edge lower and shorter."""
    return [(x, y), (x + width, y + 4), (x + width - 2, y + 4 + width * 0.21), (x + 2, y + width * 0.22)]


def paste(scene: np.ndarray, plate: np.ndarray, quad: Quad, blur: float) -> np.ndarray:
    """`plate` warped onto `quad` of `scene`, then the whole image blurred a little, as a camera would."""
    import cv2

    height, width = plate.shape[:2]
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, np.array(quad, dtype=np.float32))
    size = (scene.shape[1], scene.shape[0])
    warped = cv2.warpPerspective(plate, matrix, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full((height, width), 255, np.uint8), matrix, size) > 127
    out = scene.copy()
    out[mask] = warped[mask]
    return cv2.GaussianBlur(out, (0, 0), blur)


BUS_FRONT = plate_quad(540, 610, 150)  # below the bus's windscreen, where a front plate sits
CLOSE_UP = plate_quad(150, 600, 360)  # a close-up: a 360 px plate on the bus's side, its band about 72 px tall
# Plates whose band code is readable at CLOSE_UP size.
CLOSE_UP_SAMPLES: tuple[PlateSample, ...] = (
    PlateSample("DE band close", "B-MW 1234", WHITE, BLACK, "D", "DE", frozenset({"DE"})),
    PlateSample("PL band close", "WA 12345", WHITE, BLACK, "PL", "PL", frozenset({"PL"})),
    PlateSample("FR band close", "AB-123-CD", WHITE, BLACK, "F", "FR", frozenset({"FR"})),
)


def quad_box(quad: Quad) -> tuple[float, float, float, float]:
    """The axis-aligned box (x1, y1, x2, y2) around `quad`: a detector's box of the whole plate."""
    return (min(x for x, _ in quad), min(y for _, y in quad), max(x for x, _ in quad), max(y for _, y in quad))


def blue_beside(scene: np.ndarray, quad: Quad, *, width: float, height: float) -> np.ndarray:
    """`scene` with a saturated blue rectangle (EU blue) touching the left edge of the plate at `quad`, `width`
    and `height` times the plate's, centred on it vertically: a blue object next to a plate, not its band."""
    x1, y1, x2, y2 = quad_box(quad)
    plate_w, plate_h, middle = x2 - x1, y2 - y1, (y1 + y2) / 2
    out = scene.copy()
    top, bottom = int(middle - height * plate_h / 2), int(middle + height * plate_h / 2)
    out[max(0, top):bottom, max(0, int(x1 - width * plate_w)):int(x1) + 1] = EU_BLUE
    return out


def plate_on_bus(sample: PlateSample, folder: Path, *, blur: float = 1.0, quad: Quad = BUS_FRONT) -> Path:
    """bus.jpg with `sample` at `quad` (default: on the front of the bus), saved as a JPEG in `folder`."""
    pixels = paste(bus_photo(), render(sample), quad, blur=blur)
    path = folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', sample.name)}.jpg"
    Image.fromarray(pixels).save(path, "JPEG", quality=92)
    return path


def _no_network(*args: object, **kwargs: object) -> None:
    raise AssertionError("the plates analyzer tried to reach the network")


def offline_plates_analyzer() -> Iterator[PlatesAnalyzer]:
    """One loaded plates analyzer (a module fixture yields from it); any download or connection fails the test."""
    from rapidocr.utils.download_file import DownloadFile

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_OFFLINE", "1")
        patch.setenv("YOLO_AUTOINSTALL", "false")
        patch.setattr(DownloadFile, "run", classmethod(_no_network))
        patch.setattr(socket.socket, "connect", _no_network)
        plates = PlatesAnalyzer()
        plates.load()
        yield plates
