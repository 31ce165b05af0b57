"""Paired minutiae (models.minutiae_pairing): the alignment recovered from a known transform of the real print,
few pairs between different fingers, pair counts that follow Bozorth3, and hostile records.

The real print is the one real latent available (`wsq`'s test file), its re-impressions (elastic distortion,
rotation, pressure, noise) are its mates; synthetic fingers are the other prints (tests/fingerprint_samples.py).
Measured at the defaults (12 px, 22.5 degrees): the rotated latent is paired 140 of 140, at 20.0 degrees and
within 0.3 px of the translation; its re-impressions' drawn rotations within 1.2 degrees; mated pairs here 45-60
pairs, different fingers 6-16 (Bozorth3 60-280 and 4-9); about 10 ms a pairing on one loaded core, 20 ms for the
worst hostile record.
"""

from __future__ import annotations

import json
import struct
import time

import numpy as np
import pytest

from models.fingerprints import FingerprintExtractor, FingerprintImage, FingerprintRejected, decode_fingerprint
from models.minutiae import bozorth3_score, encode_iso_19794_2, iso_minutia_kinds, parse_iso_19794_2
from models.minutiae_pairing import MAX_PAIRING_MINUTIAE, Pairing, pair_minutiae
from tests import fingerprint_samples as samples

ROTATION = 20.0  # degrees, counter-clockwise on screen
SHIFT = np.array([60.0, -25.0])


@pytest.fixture(scope="module")
def real() -> dict[str, bytes]:
    """The real latent's template and two of its re-impressions' (the seeds test_fingerprints uses)."""
    extractor = FingerprintExtractor()
    extractor.load()
    pixels = np.asarray(samples.real_latent())
    prints = {"latent": extractor.predict(decode_fingerprint(samples.real_latent_wsq())).iso}
    for seed in (0, 1):
        mate = samples.reimpress(pixels, seed, noise=3, occlusion=0)
        prints[f"mate{seed}"] = extractor.predict(FingerprintImage(pixels=mate, ppi=500.0, ppi_source="declared",
                                                                   source_format="test")).iso
    return prints


def _screen_rotation(degrees: float) -> np.ndarray:
    """The matrix turning image points (y down) counter-clockwise on screen."""
    a = np.radians(degrees)
    return np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def _moved_copy(iso: bytes, *, drop: int, noise_px: float, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """The record turned by ROTATION about its centre, shifted by SHIFT (+100 px of margin), with positional noise,
    `drop` minutiae removed and the rest shuffled; returns it, the transform's translation about the origin, and
    for each new row the row it came from."""
    parsed = parse_iso_19794_2(iso)
    rng = np.random.default_rng(seed)
    kept = np.sort(rng.permutation(len(parsed.minutiae))[drop:])
    source = kept[rng.permutation(len(kept))]
    centre = np.array([parsed.width / 2, parsed.height / 2])
    turn = _screen_rotation(ROTATION)
    xy = (parsed.minutiae[source, :2] - centre) @ turn.T + centre + SHIFT + 100.0
    xy += rng.normal(0.0, noise_px, xy.shape)
    moved = np.column_stack([xy, (parsed.minutiae[source, 2] + ROTATION) % 360.0, parsed.minutiae[source, 3]])
    record = encode_iso_19794_2(parsed.width + 300, parsed.height + 300, moved, iso_minutia_kinds(iso)[source])
    return record, centre + SHIFT + 100.0 - turn @ centre, source


def _standard(iso: bytes, px_per_cm: int, scale: float) -> bytes:
    """The record in the standard 2005 layout at another resolution (coordinates multiplied by `scale`)."""
    parsed = parse_iso_19794_2(iso)
    minutiae = parsed.minutiae.copy()
    minutiae[:, :2] *= scale
    body = encode_iso_19794_2(1, 1, minutiae, iso_minutia_kinds(iso))[26:]
    count = len(minutiae)
    size = struct.pack(">HH", round(parsed.width * scale), round(parsed.height * scale))
    return (b"FMR\0 20\0" + struct.pack(">I", 30 + 6 * count) + b"\0\0" + size + struct.pack(">HH", px_per_cm,
            px_per_cm) + bytes([1, 0, 0, 0, 60, count]) + body + b"\0\0")


def test_a_known_rotation_and_shift_of_the_real_print_is_recovered(real: dict[str, bytes]) -> None:
    record, translation, source = _moved_copy(real["latent"], drop=10, noise_px=1.5)
    pairing = pair_minutiae(real["latent"], record)
    assert pairing.probe_minutiae == len(parse_iso_19794_2(real["latent"]).minutiae) == len(source) + 10
    assert abs(pairing.rotation_deg - ROTATION) <= 3.0, pairing.rotation_deg
    assert np.hypot(*(np.array(pairing.translation_px) - translation)) <= 4.0, (pairing.translation_px, translation)
    correct = sum(source[pair.candidate_index] == pair.probe_index for pair in pairing.pairs)
    assert correct >= 0.8 * len(source), (correct, len(source))
    assert len(pairing.pairs) - correct <= 2  # wrong pairs are rare
    assert len({p.probe_index for p in pairing.pairs}) == len({p.candidate_index for p in pairing.pairs}) == len(
        pairing.pairs)  # one to one
    first = pairing.pairs[0]
    recorded = parse_iso_19794_2(real["latent"]).minutiae[first.probe_index]
    assert (first.probe_x, first.probe_y) == (float(recorded[0]), float(recorded[1]))
    assert all(pair.residual_px <= pairing.distance_tolerance_px for pair in pairing.pairs)
    chart = json.loads(json.dumps(pairing.as_dict()))
    assert chart["paired"] == len(chart["pairs"]) == len(pairing.pairs)
    assert chart["alignment"]["rotation_deg"] == pytest.approx(pairing.rotation_deg, abs=0.01)
    assert pair_minutiae(real["latent"], record) == pairing  # deterministic

    # the other way round: the inverse transform
    back = pair_minutiae(record, real["latent"])
    assert abs(back.rotation_deg + ROTATION) <= 3.0 and len(back.pairs) == len(pairing.pairs)


def test_resolution_is_taken_from_the_record(real: dict[str, bytes]) -> None:
    record, translation, _ = _moved_copy(real["latent"], drop=10, noise_px=1.5)
    at_500 = pair_minutiae(real["latent"], record)
    at_1000 = pair_minutiae(_standard(real["latent"], 394, 2.0), record)  # 394 px/cm: 1000 ppi
    assert len(at_1000.pairs) >= len(at_500.pairs) - 2
    assert abs(at_1000.rotation_deg - ROTATION) <= 3.0
    assert np.hypot(*(np.array(at_1000.translation_px) - translation)) <= 4.0  # 500-ppi pixels
    by_row = {pair.probe_index: pair for pair in at_500.pairs}
    common = [(pair, by_row[pair.probe_index]) for pair in at_1000.pairs if pair.probe_index in by_row]
    assert len(common) >= len(at_500.pairs) - 2
    assert all((a.probe_x, a.probe_y) == (2 * b.probe_x, 2 * b.probe_y) for a, b in common)  # as recorded
    with pytest.raises(FingerprintRejected, match="99 ppi"):
        pair_minutiae(_standard(real["latent"], 39, 0.2), record)


def _reimpression_transform(seed: int, width: int, height: int) -> tuple[float, np.ndarray]:
    """The rigid part of `samples.reimpress(image, seed)` (its generator's first draws, default limits): the
    print turns counter-clockwise on screen about the image centre, then shifts; as (rotation, translation)."""
    rng = np.random.default_rng([104729, seed])
    rotation, shift = rng.uniform(-30.0, 30.0), rng.uniform(-25.0, 25.0, 2)
    centre = np.array([width / 2, height / 2])
    return rotation, centre + shift - _screen_rotation(rotation) @ centre


def test_the_re_impressions_own_rotation_and_shift_are_recovered(real: dict[str, bytes]) -> None:
    parsed = parse_iso_19794_2(real["latent"])
    for seed in (0, 1):  # drawn: -18.5 and 25.0 degrees; the skin is also stretched by up to ~5 px
        rotation, translation = _reimpression_transform(seed, parsed.width, parsed.height)
        pairing = pair_minutiae(real["latent"], real[f"mate{seed}"])
        assert abs(pairing.rotation_deg - rotation) <= 3.0, (seed, pairing.rotation_deg, rotation)
        assert np.hypot(*(np.array(pairing.translation_px) - translation)) <= 8.0, (seed, pairing.translation_px)
        assert len(pairing.pairs) >= 30


def _mated_and_not(real: dict[str, bytes]) -> tuple[list[tuple[bytes, bytes]], list[tuple[bytes, bytes]]]:
    iso = samples.extracted_iso
    mated = [(real["latent"], real["mate0"]), (real["latent"], real["mate1"]), (real["mate0"], real["mate1"]),
             (iso(21, 0), iso(21, 1)), (iso(21, 1), iso(21, 2)), (iso(22, 0), iso(22, 1)), (iso(23, 1), iso(23, 2))]
    different = [(real["latent"], iso(finger, 1)) for finger in (21, 22, 23)]
    different += [(real["mate0"], iso(finger, 0)) for finger in (21, 22)]
    different += [(iso(a, 1), iso(b, i)) for a, b, i in ((21, 22, 1), (21, 23, 2), (22, 23, 1), (23, 21, 0))]
    return mated, different


def test_different_fingers_pair_few_minutiae_and_pair_counts_follow_bozorth3(real: dict[str, bytes]) -> None:
    mated, different = _mated_and_not(real)
    started = time.perf_counter()
    mated_pairs = [len(pair_minutiae(a, b).pairs) for a, b in mated]
    different_pairs = [len(pair_minutiae(a, b).pairs) for a, b in different]
    per_pair = (time.perf_counter() - started) / (len(mated) + len(different))
    mated_scores = [bozorth3_score(a, b) for a, b in mated]
    different_scores = [bozorth3_score(a, b) for a, b in different]
    print(f"pairs: mated {sorted(mated_pairs)}, different {sorted(different_pairs)}; Bozorth3: mated "
          f"{sorted(mated_scores)}, different {sorted(different_scores)}; {per_pair * 1000:.1f} ms a pairing")
    # measured: mated 45-60 pairs, different fingers 6-16
    assert max(different_pairs) <= 20
    assert min(mated_pairs) >= 2 * max(different_pairs)
    pairs, scores = np.array(mated_pairs + different_pairs), np.array(mated_scores + different_scores)
    assert np.corrcoef(pairs, scores)[0, 1] > 0.8
    assert per_pair < 0.25  # about 10-20 ms measured on one loaded core


def test_empty_and_malformed_records_are_refused_clearly() -> None:
    for data in (b"", b"FMR\0", b"not a minutiae record at all, just text" * 3):
        with pytest.raises(FingerprintRejected, match="minutiae record"):
            pair_minutiae(data, data)
    good = encode_iso_19794_2(256, 256, np.array([[10, 10, 0, 40], [50, 50, 90, 40]]))
    with pytest.raises(FingerprintRejected, match="truncated"):
        pair_minutiae(good, good[:-3])
    with pytest.raises(ValueError, match="tolerances"):
        pair_minutiae(good, good, distance_tolerance_px=0)


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_minutiae_give_no_pairs(real: dict[str, bytes], count: int) -> None:
    sparse = encode_iso_19794_2(256, 256, np.array([[100, 100, 45, 40]] * count).reshape(-1, 4))
    for probe, candidate in ((sparse, real["latent"]), (real["latent"], sparse), (sparse, sparse)):
        pairing = pair_minutiae(probe, candidate)
        assert isinstance(pairing, Pairing) and pairing.pairs == () and pairing.votes == 0
        assert (pairing.rotation_deg, pairing.translation_px) == (0.0, (0.0, 0.0))
        assert json.loads(json.dumps(pairing.as_dict()))["paired"] == 0


def _hostile(minutiae: int, views: int) -> bytes:
    """A record of `minutiae` minutiae all at one spot, one direction, one kind (every vote in one bin)."""
    body = bytes([0x40 | 1, 0, 1, 0, 64, 50]) * minutiae  # ridge ending at (256, 256), 90 degrees
    if views == 1:  # nbis' layout: the count byte cannot say more than 255
        return b"FMR\0 20\0" + struct.pack(">IHHH", 26 + len(body), 0, 512, 512) + bytes([0, 0, 60, 0, 0, 0, 0,
                                                                                           minutiae % 256]) + body
    # the standard layout, several finger views: the first view's 255 are read, the rest trails
    head = bytes([2, 0, 60, 255])
    size = 24 + len(head) + len(body) + 2
    return (b"FMR\0 20\0" + struct.pack(">I", size) + b"\0\0" + struct.pack(">HHHH", 512, 512, 197, 197)
            + bytes([views, 0]) + head + body + b"\0\0")


def test_ten_thousand_minutiae_are_refused_or_capped_and_fast() -> None:
    with pytest.raises(FingerprintRejected, match="inconsistent"):
        pair_minutiae(_hostile(10_000, views=1), _hostile(10_000, views=1))
    hostile = _hostile(10_000, views=2)
    assert len(parse_iso_19794_2(hostile).minutiae) == 255
    started = time.perf_counter()
    pairing = pair_minutiae(hostile, hostile)
    elapsed = time.perf_counter() - started
    assert pairing.probe_minutiae == 255 and pairing.probe_considered == MAX_PAIRING_MINUTIAE
    assert len(pairing.pairs) == MAX_PAIRING_MINUTIAE  # one to one: each considered minutia once
    assert elapsed < 2.0, elapsed  # measured ~0.1 s: the worst case, every vote in one bin
