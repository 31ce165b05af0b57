"""Document pages for the OCR tests: running text rendered with Pillow and Debian's DejaVu fonts.

One page of natural administrative/police wording per language (Dutch, French, German, English), with the
accents, umlauts, ß and ligature characters each language uses. A page is rendered at glyph sizes of a
~300 dpi scan (cap height ~25-30 px) on a modest canvas (1240 x 1754, A4 proportions) so tests stay fast.
Every page comes with its exact reference text (lines joined by "\\n", paragraphs by a blank line) and the
box of every word as drawn. Helpers turn a page by 90/180/270 degrees, add mild scan noise and blur, and
build a "photo of a document" (perspective warp, uneven lighting, sensor noise).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.media_samples import pdf_from_objects

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = {"sans": FONT_DIR / "DejaVuSans.ttf", "serif": FONT_DIR / "DejaVuSerif.ttf",
         "sans-bold": FONT_DIR / "DejaVuSans-Bold.ttf", "serif-bold": FONT_DIR / "DejaVuSerif-Bold.ttf"}
PAGE_SIZE = (1240, 1754)
MARGIN = 90

TEXTS: dict[str, tuple[str, list[str]]] = {
    "nld": ("Proces-verbaal van aangifte", [
        "Op dinsdag 14 maart 2023, omstreeks 09.45 uur, verscheen voor mij, verbalisant, op het politiebureau "
        "te Utrecht een vrouw die aangifte deed van een woninginbraak. Zij verklaarde dat zij na een kort "
        "verblijf in België haar woning aan de Oudegracht had aangetroffen met een opengebroken achterdeur.",
        "Uit de slaapkamer waren sieraden, een laptop en twee financiële mappen weggenomen. De aangeefster "
        "heeft haar ideeën over de mogelijke daders met mij gedeeld en werd geïnformeerd over de coördinatie "
        "van het sporenonderzoek. Zij gaf aan dat een buurman een reeël beeld had van de auto in de straat.",
        "De technische recherche heeft vingersporen veiliggesteld op het kozijn. Het café op de hoek beschikt "
        "over camerabeelden, die op verzoek van de officier van justitie zijn gevorderd. Dit proces-verbaal "
        "is door mij opgemaakt op ambtseed en na voorlezing ondertekend."]),
    "fra": ("Procès-verbal d'audition de témoin", [
        "Le quatorze mars deux mille vingt-trois, à neuf heures quarante-cinq, nous, officier de police "
        "judiciaire en fonction à la brigade de Lyon, avons entendu le témoin ci-après désigné, qui déclare "
        "être employé à l'hôtel situé près de la gare et avoir aperçu un véhicule garé devant la façade.",
        "Le témoin précise que le conducteur portait un blouson brun et qu'il s'est éloigné à pied vers le "
        "canal. Il ajoute qu'il était à peu près minuit et que la rue était déserte, hormis un cycliste qui "
        "se dirigeait vers l'église. Il affirme n'avoir reçu aucune menace et n'avoir aucun intérêt à agir.",
        "Après lecture faite par lui-même, le témoin persiste et signe avec nous le présent procès-verbal. "
        "Nous avons transmis les éléments recueillis au parquet, à qui il appartiendra de décider des suites, "
        "et nous nous sommes assurés du bon état du scellé numéro sept, avec le cœur de la procédure."]),
    "deu": ("Niederschrift über die Vernehmung", [
        "Am Dienstag, dem 14. März 2023, gegen 09:45 Uhr erschien auf der Dienststelle in Köln der Zeuge "
        "und gab nach Belehrung über seine Rechte und Pflichten Folgendes zu Protokoll. Er wohne seit fünf "
        "Jahren in der Hauptstraße und habe in der Nacht zum Montag laute Geräusche gehört.",
        "Gegen Mitternacht habe er aus dem Fenster geschaut und einen dunklen Wagen bemerkt, dessen Fahrer "
        "zwei große Taschen über die Straße getragen habe. Die Größe des Mannes schätze er auf etwa einen "
        "Meter achtzig. Ein Fußgänger sei kurz darauf in Richtung des Bahnhofs gegangen.",
        "Der Zeuge übergab den Beamten einen Schlüssel, den er am Morgen vor der Tür gefunden hatte. Die "
        "Aussage wurde ihm vorgelesen, von ihm genehmigt und unterschrieben. Weitere Ermittlungen sind "
        "veranlasst; die Spurensicherung hat die Tür und das Schloss untersucht."]),
    "eng": ("Witness statement", [
        "On Tuesday 14 March 2023 at approximately 09:45 hours I attended the police station in Dover, "
        "where the witness made the following statement. She told me that she works as a cashier at the "
        "café on Market Street and that she had closed the premises shortly before midnight.",
        "While locking the door she noticed a grey van parked opposite the bank, with two men standing "
        "beside it. One of them, who appeared to be in his thirties, wore a dark jacket and carried a "
        "holdall. She said that she was not naïve about the area and had reported suspicious vehicles before.",
        "The witness handed me a receipt that she had found on the pavement the next morning. I seized it "
        "as an exhibit and sealed it in a tamper evident bag. This statement was read over to her, she "
        "agreed that it was accurate, and she signed it in my presence at the police station."]),
}
LANGUAGES = tuple(TEXTS)


@dataclass(frozen=True)
class RenderedPage:
    """A rendered page: RGB pixels, the exact text drawn, its language, and every word's box as drawn."""

    image: np.ndarray
    text: str
    language: str
    words: tuple[tuple[str, tuple[int, int, int, int]], ...]


@functools.lru_cache(maxsize=32)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONTS[name]), size)


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    if current:
        lines.append(current)
    return lines


def _draw_line(draw: ImageDraw.ImageDraw, line: str, font: ImageFont.FreeTypeFont, y: int,
               words: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    draw.text((MARGIN, y), line, fill=(20, 20, 20), font=font)
    x = float(MARGIN)
    space = font.getlength(" ")
    for word in line.split(" "):
        left, top, right, bottom = draw.textbbox((x, y), word, font=font)
        words.append((word, (round(left), round(top), round(right), round(bottom))))
        x += font.getlength(word) + space


def render_page(language: str, *, font: str = "serif", size: int = 34,
                page_size: tuple[int, int] = PAGE_SIZE) -> RenderedPage:
    """One page of `language` ("nld", "fra", "deu", "eng"): a bold title and three paragraphs."""
    title, paragraphs = TEXTS[language]
    image = Image.new("RGB", page_size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    words: list[tuple[str, tuple[int, int, int, int]]] = []
    body, heading = _font(font, size), _font(f"{font}-bold", round(size * 1.3))
    line_height, width = round(size * 1.5), page_size[0] - 2 * MARGIN
    y = MARGIN
    _draw_line(draw, title, heading, y, words)
    y += round(line_height * 2.2)
    blocks = [title]
    for paragraph in paragraphs:
        lines = _wrap(paragraph, body, width)
        if y + line_height * len(lines) > page_size[1] - MARGIN:
            raise ValueError(f"the {language} text does not fit a {page_size} page at size {size}")
        for line in lines:
            _draw_line(draw, line, body, y, words)
            y += line_height
        y += line_height
        blocks.append("\n".join(lines))
    return RenderedPage(np.asarray(image), "\n\n".join(blocks), language, tuple(words))


def rotate_page(image: np.ndarray, degrees: int) -> np.ndarray:
    """The page turned counter-clockwise by 90, 180 or 270 degrees (as a scanner fed it sideways would)."""
    if degrees % 90:
        raise ValueError("degrees must be a multiple of 90")
    return np.ascontiguousarray(np.rot90(image, k=(degrees // 90) % 4))


def scan_noise(image: np.ndarray, *, seed: int = 0, blur: float = 0.8, noise: float = 8.0,
               skew_degrees: float = 0.4) -> np.ndarray:
    """A mild flatbed-scan look: a slight skew, blur, grey paper and Gaussian sensor noise."""
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(image).rotate(skew_degrees, resample=Image.Resampling.BICUBIC,
                                             fillcolor=(255, 255, 255))
    picture = picture.filter(ImageFilter.GaussianBlur(blur))
    pixels = np.asarray(picture).astype(np.float32) * 0.93 + 8
    pixels += rng.normal(0.0, noise, pixels.shape[:2])[..., None]
    return np.clip(pixels, 0, 255).astype(np.uint8)


def document_photo(image: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """A phone photo of the page: perspective warp onto a darker desk, uneven lighting, blur and noise."""
    import cv2

    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    jitter = rng.uniform(0.02, 0.05, (4, 2)) * np.array([width, height], dtype=np.float64)
    target = np.array([[jitter[0, 0], jitter[0, 1]], [width - jitter[1, 0], jitter[1, 1] * 0.5],
                       [width - jitter[2, 0] * 0.5, height - jitter[2, 1]], [jitter[3, 0], height - jitter[3, 1]]],
                      dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(source, target)
    warped = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 80, 70))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1.0 - 0.45 * (xx / width) * (yy / height) - 0.15 * (yy / height)
    pixels = warped.astype(np.float32) * light[..., None]
    pixels = cv2.GaussianBlur(pixels, (0, 0), 1.0)
    pixels += rng.normal(0.0, 6.0, pixels.shape)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def sign_on_photo(photo: np.ndarray, text: str, *, size: int = 64, origin: tuple[int, int] = (60, 80)) -> np.ndarray:
    """A shop sign (dark text on a light panel with a border) pasted onto a real photo at `origin`."""
    font = _font("sans-bold", size)
    picture = Image.fromarray(photo).convert("RGB")
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = draw.textbbox(origin, text, font=font)
    pad = size // 3
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=(250, 240, 200), outline=(120, 30, 30),
                   width=4)
    draw.text(origin, text, fill=(120, 20, 20), font=font)
    return np.asarray(picture)


@dataclass(frozen=True)
class LayerText:
    """A run of a PDF text layer: its text, where it starts (points from the page's bottom-left corner) and its
    size; `invisible` text (render mode 3) is what a scanner's OCR lays over its image."""

    text: str
    x: float
    y: float
    size: float = 10.0
    invisible: bool = False


def scan_pdf(image: np.ndarray, layer: list[LayerText], *, page_size: tuple[float, float] = (595.0, 842.0)) -> bytes:
    """A one-page PDF as a scanner makes it: `image` (JPEG) over the whole page, with a text layer of `layer` on top.

    Written object by object with a correct cross-reference table; the text uses Helvetica in WinAnsi.
    """
    import io

    buffer = io.BytesIO()
    Image.fromarray(image).convert("RGB").save(buffer, "JPEG", quality=90)
    jpeg = buffer.getvalue()
    height, width = image.shape[:2]
    text = b"".join(b"BT %d Tr /F1 %.1f Tf %.1f %.1f Td (" % (3 if run.invisible else 0, run.size, run.x, run.y)
                    + run.text.encode("cp1252").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
                    + b") Tj ET " for run in layer)
    content = b"q %.2f 0 0 %.2f 0 0 cm /Im1 Do Q " % page_size + text
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Resources << /Font << /F1 3 0 R >> "
        b"/XObject << /Im1 6 0 R >> >> /Contents 5 0 R >>" % page_size,
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n" % (width, height, len(jpeg)) + jpeg + b"\nendstream",
    ]
    return pdf_from_objects(objects)
