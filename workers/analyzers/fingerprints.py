"""Fingerprints: NIST MINDTCT minutiae, NFIQ 2 quality and an ISO/IEC 19794-2 template for matching.

An item reaches this analyzer when it is declared a fingerprint at upload (`evidence_kind=fingerprint`, or a
`fingerprints/` folder in its bucket key), when it is a WSQ file, or when an undeclared grayscale image looks
like one (`looks_like_fingerprint`: its centre's spectrum has its energy in the ridge-frequency band of a
500 ppi print). A declared print that yields no usable template is a failed run with the reason (blank, not a
fingerprint, too few minutiae, resolution out of range, truncated); an undeclared image that turns out not
to be a print is a succeeded run without findings.

The `fingerprint.template` finding holds the minutiae (x, y, direction, reliability), NFIQ 2 with its
actionable feedback, the resolution used and any warning about it (an unknown resolution is assumed to be
500 ppi, and said so); the ISO template is stored as an artifact and handed to the matcher's gallery.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from models.fingerprints import (
    MINUTIA_KINDS,
    FingerprintExtractor,
    FingerprintImage,
    FingerprintRejected,
    FingerprintTemplate,
    SivvRefused,
    decode_fingerprint,
)
from storage.messages import HeldTemplate
from workers import imaging
from workers.analyzers.base import (
    AnalysisFailed,
    AnalysisLimits,
    Analyzer,
    Artifact,
    EvidenceFile,
    FindingData,
    evidence_kind,
)
from workers.analyzers.registry import register

KIND = "fingerprint.template"
SCREEN_MIN_SIDE, SCREEN_MAX_SIDE = 150, 4000
SCREEN_MAX_SATURATION = 0.08  # mean HSV saturation of a grey print scanned or photographed in colour
SCREEN_PATCH = 256
# Ridges of a 500 ppi print are 7-13 px apart; a print puts most of its spectral energy there, a photo does not.
SCREEN_BAND_PERIODS = (6.0, 16.0)
SCREEN_MIN_BAND_SHARE = 0.45
# A declared print that NBIS' SIVV check refuses is still extracted when its spectrum is that of a print:
# measured, the real latent and its re-impressions 0.52-0.58, synthetic prints 0.92-0.97; photos 0.19-0.35
# (bus.jpg 0.26, camera 0.34, astronaut 0.35), textures 0.42-0.51 (brick, gravel, a photographed sign).
DECLARED_MIN_BAND_SHARE = 0.50


@register
class FingerprintsAnalyzer(Analyzer):
    """Extracts minutiae (MINDTCT), quality (NFIQ 2) and an ISO/IEC 19794-2 template from fingerprint images."""

    name = "fingerprints"
    version = "1.0.0"
    accepts = frozenset({"image/*"})
    produces = frozenset({KIND})
    sensitive_fields = frozenset({"minutiae_points"})
    runs_on = frozenset({None, "fingerprint"})
    num_cpus = 0.5

    def __init__(self) -> None:
        self.extractor = FingerprintExtractor()
        self.without_sivv = FingerprintExtractor(check_fingerprint=False)

    def load(self) -> None:
        self.extractor.load()
        self.without_sivv.load()

    def provenance(self) -> dict[str, Any]:
        return {"nbis": self.extractor.provenance()}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        declared = evidence_kind(item.media_type, item.declared_kind) == "fingerprint"
        if item.size > 64 * 1024 * 1024:
            raise AnalysisFailed(f"a fingerprint image of {item.size:,} bytes is implausibly large; not decoded")
        if not declared and colour_saturation(item.path, limits) > SCREEN_MAX_SATURATION:
            return []  # a colour photo: not a print (and not worth decoding as one)
        try:
            image = decode_fingerprint(item.path.read_bytes(), declared_ppi=item.declared_ppi)
        except FingerprintRejected as exc:
            if declared:
                raise AnalysisFailed(str(exc)) from exc
            return []
        if not declared and not looks_like_fingerprint(image.pixels)[0]:
            return []
        try:
            template, sivv = self._extract(image, declared)
        except FingerprintRejected as exc:
            if declared:
                raise AnalysisFailed(str(exc)) from exc
            return []
        summary = {**template.to_dict(), **sivv}
        digest = hashlib.sha256(template.iso).hexdigest()
        count = len(template.minutiae)
        points = [[round(float(x), 1), round(float(y), 1), round(float(angle), 2), round(float(reliability), 3),
                   MINUTIA_KINDS.get(int(kind), "other")]
                  for (x, y, angle, reliability), kind in zip(template.minutiae, template.kinds, strict=True)]
        finding = {**summary, "declared": declared, "iso_sha256": digest, "iso_size": len(template.iso),
                   "ppi_source": image.ppi_source, "source_format": image.source_format,
                   "minutiae_points": points, "minutiae_columns": ["x", "y", "angle", "reliability", "kind"]}
        return [FindingData(kind=KIND, label=f"{count} minutiae, NFIQ 2 {template.nfiq2}",
                            confidence=round(template.nfiq2 / 100.0, 3), data=finding,
                            artifacts=[Artifact("template.ist", "application/octet-stream", template.iso)],
                            held=HeldTemplate(iso=template.iso, minutiae=count, nfiq2=int(template.nfiq2)))]

    def _extract(self, image: FingerprintImage, declared: bool) -> tuple[FingerprintTemplate, dict[str, Any]]:
        """The template, and whether SIVV accepted the print; a declared print SIVV refuses may still qualify."""
        try:
            return self.extractor.predict(image), {"sivv": "passed"}
        except SivvRefused as refused:
            if not declared:
                raise
            share = ridge_band_share(image.pixels)
            if share < DECLARED_MIN_BAND_SHARE:
                raise FingerprintRejected(f"{refused}; its spectrum is not a print's either ({share:.2f} of it in "
                                          f"the ridge band, prints measure {DECLARED_MIN_BAND_SHARE:.2f} or "
                                          "more)") from refused
            warning = (f"NBIS' SIVV check did not recognise this print (common for latents); it was processed "
                       f"because it was declared a fingerprint and {share:.2f} of its spectrum lies in the ridge "
                       "band. Examine it before relying on the template.")
            return self.without_sivv.predict(image), {"sivv": "refused", "sivv_warning": warning}


def colour_saturation(path: Path, limits: AnalysisLimits) -> float:
    """Mean HSV saturation (0-1) of a small copy of the image; 0 for grey images and unreadable files."""
    try:
        with imaging.open_image_limited(path, limits.max_image_pixels) as image:
            if image.mode in ("1", "L", "LA", "I", "I;16", "F"):
                return 0.0
            image.draft("RGB", (256, 256))  # JPEG: decode at a reduced scale
            imaging.decode(image)
            small = imaging.to_rgb(image).resize((128, 128))
    except AnalysisFailed:
        return 0.0  # the decoder of the fingerprint path reports the file's problem
    return float(np.asarray(small.convert("HSV"), dtype=np.float32)[..., 1].mean() / 255.0)


def looks_like_fingerprint(gray: np.ndarray) -> tuple[bool, str]:
    """A cheap screen for undeclared grey images: print-sized, and ridge-periodic at its centre."""
    height, width = gray.shape[:2]
    if min(height, width) < SCREEN_MIN_SIDE or max(height, width) > SCREEN_MAX_SIDE:
        return False, f"{width} x {height} pixels is not the size of a fingerprint image"
    share = ridge_band_share(gray)
    if share < SCREEN_MIN_BAND_SHARE:
        return False, f"no ridge pattern ({share:.2f} of the spectrum in the ridge band)"
    return True, f"ridge pattern ({share:.2f} of the spectrum in the ridge band)"


def ridge_band_share(gray: np.ndarray) -> float:
    """Share of the centre patch's spectral energy (DC and the lowest frequencies left out) at ridge periods."""
    height, width = gray.shape[:2]
    side = min(SCREEN_PATCH, height, width)
    top, left = (height - side) // 2, (width - side) // 2
    patch = gray[top:top + side, left:left + side].astype(np.float32)
    patch -= patch.mean()
    window = np.outer(np.hanning(side), np.hanning(side)).astype(np.float32)
    power = np.abs(np.fft.fftshift(np.fft.fft2(patch * window))) ** 2
    ys, xs = np.indices(power.shape)
    radius = np.hypot(ys - side // 2, xs - side // 2)
    period = np.divide(side, radius, out=np.full_like(radius, np.inf), where=radius > 0)
    considered = period <= 40.0  # below 1/40 px^-1 is illumination and background, not texture
    band = considered & (period >= SCREEN_BAND_PERIODS[0]) & (period <= SCREEN_BAND_PERIODS[1])
    total = float(power[considered].sum())
    return float(power[band].sum()) / total if total > 0 else 0.0
