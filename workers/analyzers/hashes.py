"""Hashes: cryptographic digests of every file (integrity and hash-set lookups) and PDQ for images.

SHA-256 identifies evidence and is checked against the record; SHA-1 and MD5 are computed in the same pass
because the reference hash sets examiners match against (NSRL, Project VIC / CAID) still publish them.
PDQ (Meta's perceptual hash) finds the same picture after re-encoding, resizing or small edits.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pdqhash

from workers import imaging
from workers.analyzers.base import (
    EVERY_KIND,
    AnalysisFailed,
    AnalysisLimits,
    Analyzer,
    EvidenceFile,
    FindingData,
)
from workers.analyzers.registry import register

CHUNK_BYTES = 1 << 20
# Meta's PDQ documentation: hashes with quality below 50 are too featureless to match on.
PDQ_MIN_QUALITY = 50
PDQ_HEX_LENGTH = 64
# PDQ reduces every image to 64 x 64 luminance, so it is computed on a copy that fits 1024 x 1024: a 120-megapixel
# image then costs the memory of its decoded pixels and under a second, not 3.7 GB and 12 s. Measured against
# hashing at full size: Hamming distance 0-10 on 12 real photos (originals and 6x enlarged JPEGs), 16-18 on
# enlarged textures (brick, grass, a scanned page), all well under Meta's match threshold of 31.
PDQ_SIDE = 1024


@register
class HashesAnalyzer(Analyzer):
    """SHA-256 (checked against the record), SHA-1 and MD5 of every file; PDQ of every decodable image."""

    name = "hashes"
    version = "1.0.0"
    accepts = frozenset({"*"})
    produces = frozenset({"hash.cryptographic", "hash.pdq"})
    runs_on = EVERY_KIND

    def provenance(self) -> dict[str, Any]:
        """The PDQ implementation in use."""
        return {"pdq": {"package": "pdqhash", "version": pdqhash.__version__, "licence": "MIT"}}

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        """A "hash.cryptographic" finding, and "hash.pdq" for images whose pixels could be decoded."""
        digests, size = _digests(item)
        if digests["sha256"] != item.sha256.lower():
            raise AnalysisFailed(f"integrity failure: the file's SHA-256 is {digests['sha256']}, but the "
                                 f"evidence record says {item.sha256}; this copy is not the evidence")
        data: dict[str, Any] = {**digests, "size": size}
        findings = [FindingData("hash.cryptographic", data, label=f"SHA-256 {digests['sha256']}")]
        if item.media_type.startswith("image/"):
            try:
                pdq, quality = pdq_hash(item, limits)
            except AnalysisFailed as exc:
                data["pdq_skipped"] = str(exc)
            else:
                reliable = quality >= PDQ_MIN_QUALITY
                label = f"PDQ {pdq} (quality {quality}{'' if reliable else ', unreliable'})"
                findings.append(FindingData("hash.pdq", {"pdq": pdq, "quality": quality, "reliable": reliable},
                                            label=label, confidence=quality / 100))
        return findings


def _digests(item: EvidenceFile) -> tuple[dict[str, str], int]:
    """SHA-256, SHA-1 and MD5 of the file in one streaming pass, and its size."""
    sha256, sha1, md5 = hashlib.sha256(), hashlib.sha1(), hashlib.md5()
    size = 0
    with item.path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            sha256.update(chunk)
            sha1.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return {"sha256": sha256.hexdigest(), "sha1": sha1.hexdigest(), "md5": md5.hexdigest()}, size


def pdq_hash(item: EvidenceFile, limits: AnalysisLimits) -> tuple[str, int]:
    """PDQ of the upright first frame, shrunk to fit PDQ_SIDE x PDQ_SIDE, as 64 hex digits, with its quality (0-100).

    `pdqhash.compute` returns the 256 bits from bit 255 down to bit 0 of Meta's `Hash256` (words w[15]..w[0],
    most significant bit first). Packing them most-significant-bit first therefore gives exactly the hex
    text of Meta's reference `Hash256::format()`, the form that PDQ hash lists exchange.
    Transparent pixels are flattened onto white; 16-bit images are scaled to 8 bits (`imaging.reduced_rgb`).
    """
    with imaging.open_image_limited(item.path, limits.max_image_pixels) as image:
        rgb = imaging.reduced_rgb(image, PDQ_SIDE)  # the first frame of an animation
    bits, quality = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    return pack_bits(bits), int(quality)


def pack_bits(bits: Any) -> str:
    """256 bits (most significant first) as 64 lower-case hex digits."""
    vector = np.asarray(bits, dtype=np.uint8)
    if vector.shape != (256,) or vector.max(initial=0) > 1:
        raise ValueError(f"a PDQ hash is 256 bits, got shape {vector.shape}")
    return np.packbits(vector).tobytes().hex()


def pdq_distance(hex_a: str, hex_b: str) -> int:
    """Hamming distance (0-256) between two PDQ hashes given as 64 hex digits.

    Meta suggests treating a distance of 31 or less as the same image.
    """
    for value in (hex_a, hex_b):
        if len(value) != PDQ_HEX_LENGTH:
            raise ValueError(f"a PDQ hash is {PDQ_HEX_LENGTH} hex digits, got {len(value)}: {value!r}")
    return (int(hex_a, 16) ^ int(hex_b, 16)).bit_count()
