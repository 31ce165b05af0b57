"""Fingerprints: decode a print (WSQ, PNG, TIFF, BMP, JPEG), extract minutiae (NIST MINDTCT), grade it (NFIQ 2),
compare two prints (NIST Bozorth3), and read / write the minutiae records (ISO/IEC 19794-2:2005).

The engine is NIST's NBIS through `nbis-py` (Rust + UniFFI bindings; `libnbis.so` ships inside the wheel and is
pinned by SHA-256 in `models.specs.NBIS_LIBRARY`). WSQ is decoded by the `_wsq` C module of the `wsq` package,
never by its Pillow plugin (that plugin swaps width and height of non-square images: the picture comes out
sheared). Everything heavy (nbis, _wsq, Pillow, OpenCV) is imported inside functions.

Resolution policy. MINDTCT and Bozorth3 assume 500 pixels per inch: ridge spacing, block sizes and the
distance tolerances of the matcher are all in 500-ppi pixels. So:

* a print at 500 ppi (+-5 %) is used as it is;
* a print at another known resolution between 250 and 2000 ppi is resampled to 500 ppi: OpenCV's INTER_AREA
  when shrinking (1000 ppi scans), bicubic when enlarging (see `RESAMPLING`);
* a print whose resolution is unknown (no WSQ ``PPI``, no PNG pHYs, no JPEG density, no TIFF/BMP resolution,
  nothing declared) is processed as 500 ppi and the template says so (`resolution_warning`): distances are
  wrong by the unknown scale factor, and the examiner must know;
* below 250 ppi or above 2000 ppi the print is refused (`FingerprintRejected`): ridges are not resolved, or the
  file's resolution field is almost certainly wrong.

Angles. `nbis.Minutia.angle()` is in degrees, 0-360, in steps of 11.25 degrees (MINDTCT quantises directions
to 32 values), measured counter-clockwise from east (the +x axis) *as the image is seen on screen* (y axis
pointing down, so counter-clockwise means towards -y). Checked: rotating an image 90 degrees counter-clockwise
(`np.rot90`) adds 90 degrees to the angles of the minutiae found at the rotated positions. It equals the ISO
record's angle byte x 1.40625 exactly (the ISO convention). The templates here keep that convention.

Minutiae records (ISO/IEC 19794-2:2005, nbis' layout and the standard one) and Bozorth3 matching are in
`models.minutiae`.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Model, ModelError
from models.pillow import pillow_open
from models.specs import NBIS_LIBRARY
from models.wsq import wsq_header_problem

TARGET_PPI = 500.0
PPI_TOLERANCE = 0.05  # 475-525 ppi is used as 500
MIN_PPI, MAX_PPI = 250.0, 2000.0
MAX_PIXELS = 40_000_000  # Pillow decompression-bomb guard (a 10-print card at 1000 ppi is ~ 16 Mpx)
MAX_SIDE_AT_500_PPI = 4000  # 8 inches: more is not one finger or a slap
MIN_SIDE_AT_500_PPI = 64
RESAMPLING = {"shrink": "cv2.INTER_AREA", "enlarge": "cv2.INTER_CUBIC"}
# Measured on the real latent and synthetic prints (see tests/test_fingerprints.py and the report): MINDTCT
# finds 0 minutiae on photos the SIVV check refuses, 19-150 on prints; a print needs MIN_MINUTIAE to be worth
# searching (AFIS practice: 12 points is the traditional minimum for a latent comparison).
MIN_MINUTIAE = 12
# Mean ridge-flow coherence of the textured blocks (structure tensor, 16 px): measured 0.52 on the real latent,
# 0.38-0.43 on its distorted re-impressions, 0.93-0.97 on synthetic prints; 0.10 on uniform noise (which passes
# SIVV: MINDTCT finds 150 "minutiae" and NFIQ 2 grades it 41) and 0.24 on skimage's page. Photos are coherent
# too (0.46-0.72): SIVV, not coherence, refuses them.
MIN_COHERENCE = 0.30
MIN_CONTRAST = 8.0  # grey-level standard deviation below which an image is blank
PROBABLE_MATCH = 40  # Bozorth3 score: NIST's usual "probable match" guidance (see models.fingerprint_index)
MINUTIA_KINDS = {1: "ridge_ending", 2: "bifurcation"}
_EXTRACTION_LOCK = threading.Lock()  # MINDTCT / NFIQ 2 keep process-wide state: one extraction at a time


class FingerprintRejected(ValueError):
    """The file is not a usable fingerprint; the message says why in words an examiner can act on."""


class SivvRefused(FingerprintRejected):
    """NBIS' SIVV check found no fingerprint spectrum (photos; also some poor latents, see FingerprintExtractor)."""


@dataclass(frozen=True)
class FingerprintImage:
    """A decoded print: grey pixels (H x W uint8, dark ridges) and what is known of its resolution."""

    pixels: np.ndarray
    ppi: float | None
    ppi_source: str  # "wsq-header" | "png-phys" | "jpeg-jfif" | "tiff" | "bmp" | "declared" | "unknown"
    source_format: str

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass(frozen=True)
class FingerprintTemplate:
    """Minutiae of one print, in the 500-ppi pixel frame the matcher uses.

    `minutiae` is N x 4 float32: x, y (pixels, origin top-left, y down), angle (degrees 0-360, counter-
    clockwise from east as seen on screen; nbis' / ISO convention), reliability (0-1). `kinds` is N uint8:
    1 ridge ending, 2 bifurcation. `iso` is nbis' ISO/IEC 19794-2:2005-style record (see the module docstring),
    what `bozorth3_score` and `models.fingerprint_index` take. `nfiq2` is the NFIQ 2 score 0-100 (higher is
    better) and `nfiq2_actionable` its actionable feedback (UniformImage, EmptyImageOrContrastTooLow,
    FingerprintImageWithMinutiae, SufficientFingerprintForeground).
    """

    minutiae: np.ndarray
    kinds: np.ndarray
    iso: bytes
    nfiq2: int
    nfiq2_actionable: dict[str, float]
    roi: tuple[int, int, int, int] | None  # x1, y1, x2, y2
    center: tuple[int, int] | None
    width: int
    height: int
    ppi_used: float
    ppi_original: float | None
    resolution_warning: str | None
    coherence: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe summary (no ISO bytes, no minutiae list; counts and quality)."""
        kinds = {name: int(np.sum(self.kinds == code)) for code, name in MINUTIA_KINDS.items()}
        return {"minutiae": len(self.minutiae), "kinds": kinds, "nfiq2": self.nfiq2,
                "nfiq2_actionable": {k: round(v, 3) for k, v in self.nfiq2_actionable.items()},
                "roi": list(self.roi) if self.roi else None, "center": list(self.center) if self.center else None,
                "width": self.width, "height": self.height, "ppi_used": self.ppi_used,
                "ppi_original": self.ppi_original, "resolution_warning": self.resolution_warning,
                "coherence": round(self.coherence, 3), "iso_bytes": len(self.iso),
                "angle_convention": "degrees counter-clockwise from east, image y axis down (ISO 19794-2)"}


# --------------------------------------------------------------------------------------------- decoding


def _ppi_from_info(info: dict[Any, Any], key: str = "dpi") -> float | None:
    value = info.get(key)
    if value is None:
        return None
    try:
        first = value[0] if isinstance(value, tuple | list) else value
        ppi = float(first)
    except (TypeError, ValueError, IndexError):
        return None
    # Pillow reports 1 when a file has no real density; PNG stores pixels per metre (1000 ppi reads 999.998)
    return round(ppi, 1) if ppi > 1.0 else None


def decode_fingerprint(data: bytes, *, declared_ppi: float | None = None) -> FingerprintImage:
    """Decode a WSQ, PNG, TIFF, BMP, JPEG or HEIC print to 8-bit grey, with its resolution and where it came from.

    A `declared_ppi` (what the submitter states, e.g. a 10-print card scanned at 1000 ppi) overrides the file's.
    Corrupt, truncated or unsupported data raises `FingerprintRejected`.
    """
    if declared_ppi is not None and not (math.isfinite(declared_ppi) and declared_ppi > 0):
        raise FingerprintRejected(f"declared resolution {declared_ppi!r} ppi is not a positive number")
    if len(data) < 16:
        raise FingerprintRejected(f"the file is {len(data)} bytes long: too short to hold an image")
    if data[:2] == b"\xff\xa0":
        pixels, ppi, source, fmt = _decode_wsq(data)
    else:
        pixels, ppi, source, fmt = _decode_pillow(data)
    if declared_ppi is not None:
        ppi, source = float(declared_ppi), "declared"
    return FingerprintImage(pixels=pixels, ppi=ppi, ppi_source=source if ppi is not None else "unknown",
                            source_format=fmt)


def _decode_wsq(data: bytes) -> tuple[np.ndarray, float | None, str, str]:
    import _wsq

    problem = wsq_header_problem(data)  # a header cut short crashes NBIS' decoder (models.wsq)
    if problem is not None:
        raise FingerprintRejected(f"the WSQ file cannot be decoded (corrupt or truncated): {problem}")
    try:
        pixels, height, width, ppi = _wsq.decompress(data)
    except Exception as error:  # the C module raises plain exceptions
        raise FingerprintRejected(f"the WSQ file cannot be decoded (corrupt or truncated): {error}") from error
    if not isinstance(pixels, bytes | bytearray) or height <= 0 or width <= 0 or len(pixels) != height * width:
        raise FingerprintRejected("the WSQ file cannot be decoded (corrupt or truncated): inconsistent size")
    # _wsq returns (pixels, height, width, ppi): rows of `width` pixels, `height` of them
    image = np.frombuffer(bytes(pixels), np.uint8).reshape(height, width).copy()
    return image, (float(ppi) if ppi and ppi > 0 else None), "wsq-header", "wsq"


def _decode_pillow(data: bytes) -> tuple[np.ndarray, float | None, str, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with pillow_open()(io.BytesIO(data)) as opened:
            fmt = (opened.format or "unknown").lower()
            if fmt not in {"png", "tiff", "bmp", "jpeg", "mpo", "heif"}:
                raise FingerprintRejected(f"{fmt.upper()} is not a fingerprint image format Locard reads "
                                          "(WSQ, PNG, TIFF, BMP, JPEG or HEIC)")
            if opened.width * opened.height > MAX_PIXELS:
                raise FingerprintRejected(f"the image is {opened.width} x {opened.height} pixels: more than "
                                          f"{MAX_PIXELS:,} pixels is not one fingerprint")
            info = dict(opened.info)
            opened.load()
            grey = _to_grey(opened)
    except FingerprintRejected:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise FingerprintRejected(f"the image cannot be decoded (corrupt, truncated or not an image): {error}") \
            from error
    ppi: float | None
    if fmt in {"jpeg", "mpo"}:
        ppi, source = _ppi_from_info(info), "jpeg-jfif"
        if info.get("jfif_unit") == 2 and ppi is not None:  # dots per centimetre, older Pillow
            ppi *= 2.54
        fmt = "jpeg"
    elif fmt == "png":
        ppi, source = _ppi_from_info(info), "png-phys"
    else:
        ppi, source = _ppi_from_info(info), fmt
    return grey, ppi, source, fmt


def _to_grey(opened: Any) -> np.ndarray:
    """8-bit grey pixels of any Pillow image (16-bit scans are scaled, alpha is composited on white)."""
    from PIL import Image

    image = opened
    if image.mode in {"I;16", "I;16B", "I;16L", "I"}:
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        return np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if image.mode in {"RGBA", "LA", "PA"} or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)
    return np.asarray(image.convert("L"), dtype=np.uint8).copy()


def normalise_resolution(image: FingerprintImage) -> tuple[np.ndarray, float | None, str | None]:
    """The pixels at 500 ppi, the original resolution, and a warning when the resolution had to be assumed.

    Raises `FingerprintRejected` outside 250-2000 ppi or when the 500-ppi image would be too small or too large.
    """
    warning = None
    ppi = image.ppi
    pixels = image.pixels
    if ppi is None:
        warning = ("the file does not state its resolution; it was processed as 500 ppi. If it was scanned at "
                   "another resolution, distances between minutiae are off by that factor and scores are "
                   "unreliable: resubmit with the scanning resolution declared")
    elif not MIN_PPI <= ppi <= MAX_PPI:
        raise FingerprintRejected(f"the print is {ppi:g} ppi: fingerprint comparison needs 250-2000 ppi "
                                  "(500 ppi is the standard); rescan it, or declare its real resolution")
    elif abs(ppi - TARGET_PPI) > PPI_TOLERANCE * TARGET_PPI:
        import cv2

        scale = TARGET_PPI / ppi
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        pixels = cv2.resize(pixels, size, interpolation=interpolation)
    height, width = pixels.shape
    if min(height, width) < MIN_SIDE_AT_500_PPI:
        raise FingerprintRejected(f"the print is {width} x {height} pixels at 500 ppi: too small to hold a "
                                  "fingerprint")
    if max(height, width) > MAX_SIDE_AT_500_PPI:
        raise FingerprintRejected(f"the print is {width} x {height} pixels at 500 ppi ({max(height, width) / 500:.1f}"
                                  " inches): cut out the single finger or slap before submitting it")
    return np.ascontiguousarray(pixels), ppi, warning


def ridge_coherence(pixels: np.ndarray, block: int = 16) -> float:
    """Mean coherence of the ridge flow over the textured blocks (structure tensor): 1 = parallel lines, 0 = none."""
    import cv2

    grey = pixels.astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    h, w = (grey.shape[0] // block) * block, (grey.shape[1] // block) * block
    if h == 0 or w == 0:
        return 0.0

    def blocks(values: np.ndarray) -> np.ndarray:
        return values[:h, :w].reshape(h // block, block, w // block, block).sum(axis=(1, 3))

    gxx, gyy, gxy = blocks(gx * gx), blocks(gy * gy), blocks(gx * gy)
    energy = gxx + gyy
    coherence = np.sqrt((gxx - gyy) ** 2 + 4 * gxy**2) / np.maximum(energy, 1e-6)
    textured = energy > 0.25 * np.median(energy[energy > 0]) if np.any(energy > 0) else energy > 0
    std = grey[:h, :w].reshape(h // block, block, w // block, block).std(axis=(1, 3))
    textured &= std > MIN_CONTRAST
    return float(coherence[textured].mean()) if np.any(textured) else 0.0


# --------------------------------------------------------------------------------------------- extraction


class FingerprintExtractor(Model[FingerprintImage, FingerprintTemplate]):
    """MINDTCT minutiae + NFIQ 2 quality of a decoded print, with clear refusals of what is not a fingerprint.

    Refusals (`FingerprintRejected`), in order: resolution out of range; a blank image (grey-level standard
    deviation < `MIN_CONTRAST`); no ridge flow (coherence < `MIN_COHERENCE`: noise, text, most photos); NBIS'
    SIVV check finds no fingerprint spectrum (MINDTCT then returns no minutiae; photos such as skimage's
    camera, astronaut, coffee and ultralytics' bus.jpg end here); fewer than `MIN_MINUTIAE` minutiae.
    Thread-safe: extraction holds a process-wide lock (MINDTCT and NFIQ 2 are C/C++ with global state).

    SIVV is strict on poor latents: it refused 4 of 8 distorted re-impressions of the real latent (the latent
    itself passes). `check_fingerprint=False` skips it (for an examiner who confirms the image is a print);
    photos are then no longer refused, since they have coherent edges and MINDTCT finds 65-131 minutiae on them.
    """

    spec = NBIS_LIBRARY

    def __init__(self, *, check_fingerprint: bool = True, min_minutiae: int = MIN_MINUTIAE) -> None:
        super().__init__()
        self.check_fingerprint = check_fingerprint
        self.min_minutiae = min_minutiae
        self._extractor: Any = None
        self._without_nfiq2: Any = None

    def _load(self, weights: Path) -> None:
        import nbis

        def extractor(nfiq2: bool) -> Any:
            return nbis.new_nbis_extractor(nbis.NbisExtractorSettings(
                min_quality=0.0, get_center=True, check_fingerprint=self.check_fingerprint, compute_nfiq2=nfiq2,
                ppi=TARGET_PPI))

        self._extractor, self._without_nfiq2 = extractor(True), extractor(False)

    def _warm_up(self) -> None:
        y, x = np.mgrid[0:256, 0:256]
        rings = (128 + 100 * np.sin(np.hypot(x - 128, y - 140) * 2 * np.pi / 9)).astype(np.uint8)
        with contextlib.suppress(FingerprintRejected):
            self._run(rings)

    def _predict(self, inputs: FingerprintImage) -> FingerprintTemplate:
        pixels, original_ppi, warning = normalise_resolution(inputs)
        contrast = float(pixels.std())
        if contrast < MIN_CONTRAST:
            raise FingerprintRejected(f"the image is blank or uniform (grey-level spread {contrast:.1f}): there "
                                      "is no print on it")
        coherence = ridge_coherence(pixels)
        if coherence < MIN_COHERENCE:
            raise FingerprintRejected(f"no ridge flow found (coherence {coherence:.2f}, prints measure 0.4-1.0): "
                                      "this does not look like a fingerprint")
        minutiae_obj, raw, nfiq2_error = self._run(pixels)
        if not raw:
            raise SivvRefused("NBIS' fingerprint check (SIVV) found no fingerprint ridge pattern: this "
                                      "looks like a photograph or document, not a fingerprint")
        if len(raw) < self.min_minutiae:
            raise FingerprintRejected(f"only {len(raw)} minutiae found (at least {self.min_minutiae} are needed "
                                      "for a search): the print is too small, smudged or low in contrast")
        quality = minutiae_obj.quality()
        extra = {"nfiq2_error": nfiq2_error} if nfiq2_error else {}
        roi = minutiae_obj.roi()
        iso = bytes(minutiae_obj.to_iso_19794_2_2005())
        minutiae = np.array([[m.x(), m.y(), m.angle(), m.reliability()] for m in raw], np.float32).reshape(-1, 4)
        kinds = np.array([int(m.kind().value) for m in raw], np.uint8)
        return FingerprintTemplate(
            minutiae=minutiae, kinds=kinds, iso=iso, nfiq2=int(quality.score),
            nfiq2_actionable={v.name: float(v.value) for v in quality.actionable},
            roi=(roi.x1, roi.y1, roi.x2, roi.y2) if roi else None,
            center=(roi.center.x, roi.center.y) if roi else None,
            width=int(pixels.shape[1]), height=int(pixels.shape[0]), ppi_used=TARGET_PPI,
            ppi_original=original_ppi, resolution_warning=warning, coherence=coherence, extra=extra)

    def _run(self, pixels: np.ndarray) -> tuple[Any, list[Any], str | None]:
        """MINDTCT (+ NFIQ 2) on the pixels: the nbis Minutiae, its minutia list, and an NFIQ 2 failure if any.

        NFIQ 2 fails on some images that MINDTCT handles (measured: ~1 synthetic print in 30); the minutiae
        are then extracted without it and the template's `nfiq2` is 0 with the failure in `extra`.
        """
        import cv2
        import nbis

        if self._extractor is None:
            raise ModelError("the NBIS extractor is not loaded")
        ok, png = cv2.imencode(".png", pixels)
        if not ok:
            raise FingerprintRejected("the image could not be prepared for extraction")
        try:
            with _EXTRACTION_LOCK:
                try:
                    minutiae = self._extractor.extract_minutiae(png.tobytes())
                    failure = None
                except nbis.NbisError.Nfiq2ComputeFailed as error:
                    minutiae = self._without_nfiq2.extract_minutiae(png.tobytes())
                    failure = f"NFIQ 2 could not grade this image (code {error}); no quality score"
                return minutiae, list(minutiae.get()), failure
        except nbis.NbisError as error:
            raise FingerprintRejected(f"NBIS could not process the image: {error}") from error
