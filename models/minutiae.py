"""Minutiae records (ISO/IEC 19794-2:2005) and NIST Bozorth3 matching through nbis.

nbis' "ISO 19794-2:2005" record is not the standard layout. nbis-py 0.1.3 writes a 26-byte header: "FMR\\0",
" 20\\0", a 4-byte length, 2 zero bytes, width, height (2 bytes each), finger position, view/impression,
finger quality (the NFIQ 2 score), 4 reserved bytes, the minutia count; then 6 bytes per minutia; no
resolution fields, no finger-view count, no extended-data length. Its loader only reads that layout.
`parse_iso_19794_2` reads both that layout and the standard one (24-byte record header with resolutions,
4-byte finger view header, minutiae, 2-byte extended data length); `to_nbis_iso` turns a standard record from
another system into the layout nbis can load. Minutia quality: nbis stores reliability x 63 (0-63).
Records are loaded for Bozorth3 by `MinutiaeLoader`, a `Model` on the verified nbis library; `load_minutiae`
uses one per process, loaded by its first record (never at import).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from models.base import Model
from models.fingerprints import TARGET_PPI, FingerprintRejected
from models.specs import NBIS_LIBRARY


class IsoTemplate(NamedTuple):
    """What `parse_iso_19794_2` reads: x_res / y_res in pixels per centimetre, 0 when the record has none."""

    width: int
    height: int
    x_res: int
    y_res: int
    minutiae: np.ndarray  # N x 4 float32: x, y, angle (degrees), quality (0-100 as stored; nbis writes 0-63)


# --------------------------------------------------------------------------------------------- ISO records


def _iso_layout(data: bytes) -> tuple[str, int, int]:
    """Which layout a record has: ("nbis" | "standard", offset of the first minutia, minutia count)."""
    if len(data) < 26 or data[:4] != b"FMR\0" or data[4:8] != b" 20\0":
        raise FingerprintRejected("not an ISO/IEC 19794-2:2005 minutiae record (no 'FMR 20' header)")
    length = struct.unpack(">I", data[8:12])[0]
    if length != len(data):
        raise FingerprintRejected(f"the minutiae record says it is {length} bytes but {len(data)} were given "
                                  "(truncated or padded)")
    if len(data) == 26 + 6 * data[25]:
        return "nbis", 26, data[25]
    if len(data) >= 32 and data[22] >= 1:
        count = data[27]
        end = 28 + 6 * count
        if end + 2 <= len(data):
            extended = struct.unpack(">H", data[end:end + 2])[0]
            if end + 2 + extended == len(data) or data[22] > 1:
                return "standard", 28, count
    raise FingerprintRejected("the minutiae record is inconsistent (counts do not add up to its length)")


def _parse_iso(data: bytes) -> tuple[IsoTemplate, np.ndarray, int, str]:
    layout, start, count = _iso_layout(data)
    width, height = struct.unpack(">HH", data[14:18])
    if layout == "nbis":
        x_res = y_res = 0
        finger_quality = data[20]
    else:
        x_res, y_res = struct.unpack(">HH", data[18:22])
        finger_quality = data[26]
    raw = np.frombuffer(data, np.uint8, count * 6, start).reshape(count, 6).astype(np.uint16)
    x = ((raw[:, 0] & 0x3F) << 8) | raw[:, 1]
    y = ((raw[:, 2] & 0x3F) << 8) | raw[:, 3]
    kinds = (raw[:, 0] >> 6).astype(np.uint8)  # ISO: 1 ridge ending, 2 bifurcation, 0 other
    minutiae = np.column_stack([x, y, raw[:, 4] * (360.0 / 256.0), raw[:, 5]]).astype(np.float32)
    return IsoTemplate(width, height, x_res, y_res, minutiae), kinds, finger_quality, layout


def parse_iso_19794_2(data: bytes) -> IsoTemplate:
    """Read an ISO/IEC 19794-2:2005 minutiae record (nbis' layout or the standard one) with numpy and struct only.

    Returns (width, height, x_res, y_res, minutiae N x 4: x, y, angle in degrees, quality). Resolutions are in
    pixels per centimetre (197 = 500 ppi); nbis' layout has none (0). Raises `FingerprintRejected` when the
    bytes are not a consistent record.
    """
    return _parse_iso(data)[0]


def iso_minutia_kinds(data: bytes) -> np.ndarray:
    """The minutia kinds of a record: 1 ridge ending, 2 bifurcation, 0 other."""
    return _parse_iso(data)[1]


def encode_iso_19794_2(width: int, height: int, minutiae: np.ndarray, kinds: np.ndarray | None = None,
                       finger_quality: int = 0) -> bytes:
    """A record in nbis' layout (what `nbis` loads): minutiae N x 4 (x, y, angle degrees, quality 0-63)."""
    values = np.asarray(minutiae, dtype=np.float64).reshape(-1, 4)
    if len(values) > 255:
        values = values[np.argsort(-values[:, 3], kind="stable")[:255]]
        kinds = None if kinds is None else np.asarray(kinds)[np.argsort(-np.asarray(minutiae)[:, 3])[:255]]
    count = len(values)
    kind = np.ones(count, np.uint16) if kinds is None else np.clip(np.asarray(kinds, np.uint16), 0, 3)
    x = np.clip(np.rint(values[:, 0]), 0, 0x3FFF).astype(np.uint16)
    y = np.clip(np.rint(values[:, 1]), 0, 0x3FFF).astype(np.uint16)
    angle = (np.rint(np.mod(values[:, 2], 360.0) / (360.0 / 256.0)).astype(np.int64) % 256).astype(np.uint8)
    quality = np.clip(np.rint(values[:, 3]), 0, 255).astype(np.uint8)
    body = np.empty((count, 6), np.uint8)
    body[:, 0] = ((kind << 6) | (x >> 8)).astype(np.uint8)
    body[:, 1] = (x & 0xFF).astype(np.uint8)
    body[:, 2] = (y >> 8).astype(np.uint8)
    body[:, 3] = (y & 0xFF).astype(np.uint8)
    body[:, 4] = angle
    body[:, 5] = quality
    header = b"FMR\0 20\0" + struct.pack(">IHHH", 26 + 6 * count, 0, width, height)
    header += bytes([0, 0, max(0, min(100, finger_quality)), 0, 0, 0, 0, count])
    return header + body.tobytes()


def to_nbis_iso(data: bytes) -> bytes:
    """The same record in nbis' layout (a standard record from another system is rewritten; nbis' is returned)."""
    parsed, kinds, finger_quality, layout = _parse_iso(data)
    if layout == "nbis":
        return data
    if parsed.x_res and abs(parsed.x_res - 197) > 10:
        raise FingerprintRejected(f"the minutiae record is at {parsed.x_res * 2.54:.0f} ppi; Bozorth3 needs 500 ppi")
    quality = np.rint(parsed.minutiae[:, 3] * 63.0 / 100.0)
    minutiae = np.column_stack([parsed.minutiae[:, :3], quality])
    return encode_iso_19794_2(parsed.width, parsed.height, minutiae, kinds, finger_quality)


# --------------------------------------------------------------------------------------------- matching


class MinutiaeLoader(Model[bytes, Any]):
    """Minutiae records (either layout) as `nbis.Minutiae`, ready for Bozorth3: one nbis extractor used only to
    load ISO records (loading does not touch MINDTCT), on the verified nbis library."""

    spec = NBIS_LIBRARY

    def __init__(self) -> None:
        super().__init__()
        self._extractor: Any = None

    def _load(self, weights: Path) -> None:
        import nbis

        self._extractor = nbis.new_nbis_extractor(nbis.NbisExtractorSettings(
            min_quality=0.0, get_center=False, check_fingerprint=False, compute_nfiq2=False, ppi=TARGET_PPI))

    def _warm_up(self) -> None:
        ring = np.array([[128 + 60 * np.cos(a), 128 + 60 * np.sin(a), np.degrees(a) % 360, 40]
                         for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)])
        self._predict(encode_iso_19794_2(256, 256, ring))

    def _predict(self, inputs: bytes) -> Any:
        import nbis

        try:
            return self._extractor.load_iso_19794_2_2005(to_nbis_iso(inputs))
        except nbis.NbisError.InvalidTemplate as error:
            raise FingerprintRejected(f"the minutiae record cannot be loaded: {error}") from error


_SHARED = MinutiaeLoader()  # loaded by the first record that `load_minutiae` is given


def load_minutiae(iso: bytes) -> Any:
    """An `nbis.Minutiae` from a record (either layout), ready for Bozorth3."""
    if not _SHARED.loaded:
        _SHARED.load()
    return _SHARED.predict(iso)


class Bozorth3:
    """NIST Bozorth3 with the probe loaded once: `score(gallery_iso)` for each candidate.

    Bozorth3 is rotation and translation invariant; scores are unbounded integers (0 for unrelated prints, tens
    for weak agreement, hundreds for good mates). nbis serialises all Bozorth3 calls of a process behind one
    mutex (the C code keeps global state), so threads do not speed it up: use processes (Ray actors).
    """

    def __init__(self, probe_iso: bytes) -> None:
        self.probe = load_minutiae(probe_iso)

    def score(self, gallery: bytes | Any) -> int:
        other = load_minutiae(bytes(gallery)) if isinstance(gallery, bytes | bytearray) else gallery
        return int(self.probe.compare(other))


def bozorth3_score(a_iso: bytes, b_iso: bytes) -> int:
    """Bozorth3 score of two minutiae records (>= 40 is NIST's usual guidance for a probable match)."""
    return Bozorth3(a_iso).score(b_iso)


