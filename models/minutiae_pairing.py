"""Paired minutiae of two prints, as an examiner charts them: which probe minutia is which candidate minutia, and
under which rigid alignment (pure numpy, no I/O).

NIST Bozorth3 (`models.minutiae`) gives a score and nothing else; a reviewer judging a match needs the chart.
`pair_minutiae` builds it with a Hough-transform alignment in the manner of Ratha, Karu, Chen and Jain (1996,
"A real-time matching system for large fingerprint databases"):

1. **Votes.** Every probe / candidate minutia pair of compatible kind (the same kind, or either "other")
   proposes the rotation that turns the probe minutia's direction into the candidate's and the translation
   that then carries it onto the candidate minutia (about the probe's centroid, so that a rotation error moves
   the translation little). Votes are binned: rotation in `ROTATION_BINS` sectors of `models.fingerprint_index`
   (11.25 degrees, MINDTCT's direction step; sectors centred on its directions), translation in
   `TRANSLATION_BIN_PX` squares. A bin's support is its votes and its 26 neighbours' (soft binning). Unrelated
   prints spread their votes; mates pile them into one bin.
2. **Fit.** Each of the `HYPOTHESES` best-supported bins (distinct peaks) gives a first transform (mean of its
   votes); its votes that fit it within the tolerances are made one to one, and a least-squares rigid fit of
   their positions (2-D Kabsch, closed form) refines it, twice (the second fit uses the pairs of the first).
3. **Pairs.** Under the refined transform, minutiae are paired one to one greedily, nearest first, when they
   lie within `distance_tolerance_px` and their directions within `angle_tolerance_deg`, kinds compatible.
   The hypothesis with the most pairs (then the smallest mean residual) is the answer.

Conventions. Positions and angles are ISO/IEC 19794-2's (pixels, origin top-left, y down; degrees counter-
clockwise from east as seen on screen; see `models.fingerprints`). The transform maps the probe onto the
candidate: a probe point p lands at R(rotation) p + translation, R turning counter-clockwise on screen about the
origin (the image's top-left corner). Geometry is done in 500-ppi pixels, the unit MINDTCT, Bozorth3 and the
index use: a record stating its resolution (the standard layout, pixels per centimetre) is scaled to 500 ppi
first, a record without one (nbis' layout) is taken as 500 ppi; tolerances, residuals and the translation are
500-ppi pixels, and each pair reports both minutiae as recorded. A record under 250 or over 2000 ppi is refused
(`FingerprintRejected`), as prints are.

Cost is bounded whatever the records hold: a record carries at most 255 minutiae (one count byte), and only
the `MAX_PAIRING_MINUTIAE` most reliable of each print (`models.fingerprint_index.most_reliable`) are
considered, so at most 150 x 150 votes. Measured on MINDTCT templates of 54-150 minutiae (the real latent, its
re-impressions, synthetic fingers; 441 pairings): median 8.5 ms, p95 16 ms on one loaded core; a hostile record
with every minutia at one spot (every vote in one bin) 20 ms. Rigid alignment of elastic skin pairs the core of
a mate and loses some minutiae at its edges; the pairs are an examiner's starting chart, not a decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from models.fingerprint_index import ROTATION_BINS, most_reliable
from models.fingerprints import MAX_PPI, MIN_PPI, PPI_TOLERANCE, TARGET_PPI, FingerprintRejected
from models.minutiae import iso_minutia_kinds, parse_iso_19794_2

DISTANCE_TOLERANCE_PX = 12.0  # at 500 ppi: about one and a quarter ridge periods
ANGLE_TOLERANCE_DEG = 22.5  # two MINDTCT direction steps
MAX_PAIRING_MINUTIAE = 150
TRANSLATION_BIN_PX = 10.0
HYPOTHESES = 3
REFINEMENTS = 2
OTHER_KIND = 0  # ISO: 1 ridge ending, 2 bifurcation, 0 other (compatible with both)
_CM_PER_INCH = 2.54


class MinutiaPair(NamedTuple):
    """One charted correspondence: row numbers in each record, both minutiae as recorded, residual (500-ppi px)."""

    probe_index: int
    candidate_index: int
    probe_x: float
    probe_y: float
    probe_angle: float
    candidate_x: float
    candidate_y: float
    candidate_angle: float
    residual_px: float


@dataclass(frozen=True)
class Pairing:
    """The chart of two prints: the pairs, the alignment (probe onto candidate) and what was considered.

    `probe_minutiae` / `candidate_minutiae` count each record's minutiae; `probe_considered` /
    `candidate_considered` those taken into account (the most reliable `MAX_PAIRING_MINUTIAE`). `votes` is the
    Hough support of the chosen alignment. Tolerances are the 500-ppi values used.
    """

    pairs: tuple[MinutiaPair, ...]
    rotation_deg: float
    translation_px: tuple[float, float]
    probe_minutiae: int
    candidate_minutiae: int
    probe_considered: int
    candidate_considered: int
    votes: int
    distance_tolerance_px: float
    angle_tolerance_deg: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the pairs (by probe row), their count, the alignment, and what each print offered."""
        return {
            "pairs": [{"probe_index": p.probe_index, "candidate_index": p.candidate_index,
                       "probe": [round(p.probe_x, 1), round(p.probe_y, 1), round(p.probe_angle, 2)],
                       "candidate": [round(p.candidate_x, 1), round(p.candidate_y, 1), round(p.candidate_angle, 2)],
                       "residual_px": round(p.residual_px, 2)} for p in self.pairs],
            "paired": len(self.pairs),
            "alignment": {
                "rotation_deg": round(self.rotation_deg, 2),
                "translation_px": [round(self.translation_px[0], 1), round(self.translation_px[1], 1)],
                "votes": self.votes,
                "distance_tolerance_px": self.distance_tolerance_px, "angle_tolerance_deg": self.angle_tolerance_deg,
                "method": "Hough-transform rigid alignment, least-squares refined (2-D Kabsch); minutiae paired one "
                          "to one, nearest first, within the tolerances",
                "convention": "minutiae as recorded: [x, y, angle]; the transform maps the probe onto the "
                              "candidate (x' = R x + t, R counter-clockwise on screen about the top-left corner, "
                              "image y down); translation, residuals and tolerances in 500-ppi pixels",
            },
            "probe_minutiae": self.probe_minutiae, "candidate_minutiae": self.candidate_minutiae,
            "probe_considered": self.probe_considered, "candidate_considered": self.candidate_considered,
        }


@dataclass(frozen=True)
class _Print:
    """The considered minutiae of one record in the working frame: 500-ppi pixels with y pointing up."""

    rows: np.ndarray  # row numbers in the record
    recorded: np.ndarray  # N x 3: x, y, angle as recorded
    xy: np.ndarray  # N x 2 float64, 500-ppi pixels, y up (counter-clockwise on screen is counter-clockwise here)
    angle: np.ndarray  # N degrees
    kind: np.ndarray  # N uint8
    total: int


def _ppi(px_per_cm: int, which: str) -> float:
    if px_per_cm == 0:
        return TARGET_PPI  # nbis' layout states none: its records are 500-ppi by construction
    ppi = px_per_cm * _CM_PER_INCH
    if abs(ppi - TARGET_PPI) <= PPI_TOLERANCE * TARGET_PPI:
        return TARGET_PPI  # 197 px/cm is 500 ppi, as for images
    if not MIN_PPI <= ppi <= MAX_PPI:
        raise FingerprintRejected(f"the {which} minutiae record says {ppi:.0f} ppi: minutiae can be paired only "
                                  f"between {MIN_PPI:.0f} and {MAX_PPI:.0f} ppi")
    return ppi


def _print(iso: bytes, which: str, limit: int) -> _Print:
    parsed = parse_iso_19794_2(iso)
    kinds = iso_minutia_kinds(iso)
    rows = most_reliable(parsed.minutiae, limit)
    chosen = parsed.minutiae[rows].astype(np.float64)
    scale = np.array([TARGET_PPI / _ppi(parsed.x_res, which), -TARGET_PPI / _ppi(parsed.y_res, which)])
    return _Print(rows, chosen[:, :3], chosen[:, :2] * scale, chosen[:, 2] % 360.0, kinds[rows],
                  len(parsed.minutiae))


def _rotate(xy: np.ndarray, degrees: np.ndarray | float) -> np.ndarray:
    """Points (N x 2, y up) turned counter-clockwise by `degrees` (one angle, or one per point)."""
    radians = np.radians(degrees)
    cos, sin = np.cos(radians), np.sin(radians)
    return np.column_stack([cos * xy[:, 0] - sin * xy[:, 1], sin * xy[:, 0] + cos * xy[:, 1]])


def _angle_gap(a: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """|a - b| on the circle, degrees in [0, 180]."""
    return np.abs((np.asarray(a) - b + 180.0) % 360.0 - 180.0)


def _kabsch(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """The least-squares rigid transform (rotation degrees, translation) taking `source` points onto `target`."""
    a, b = source - source.mean(axis=0), target - target.mean(axis=0)
    rotation = float(np.degrees(np.arctan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]),
                                           np.sum(a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))))
    return rotation, target.mean(axis=0) - _rotate(source.mean(axis=0)[None, :], rotation)[0]


def _greedy(i: np.ndarray, j: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """Positions (into i, j) of a one-to-one choice of the candidate pairs, smallest residual first."""
    chosen, used_i, used_j = [], set(), set()
    for k in np.lexsort((j, i, residual)):
        if i[k] not in used_i and j[k] not in used_j:
            chosen.append(k)
            used_i.add(i[k])
            used_j.add(j[k])
    return np.asarray(chosen, np.int64)


class _Tolerances(NamedTuple):
    distance: float
    angle: float


def _fits(probe: _Print, candidate: _Print, i: np.ndarray, j: np.ndarray, rotation: float,
          translation: np.ndarray, tolerances: _Tolerances) -> tuple[np.ndarray, np.ndarray]:
    """Which of the candidate pairs (i, j) fit the transform, and every pair's residual (500-ppi px)."""
    moved = _rotate(probe.xy, rotation) + translation
    residual = np.hypot(*(moved[i] - candidate.xy[j]).T)
    fit = (residual <= tolerances.distance) & (_angle_gap(candidate.angle[j] - probe.angle[i], rotation)
                                              <= tolerances.angle)
    return fit, residual


def _peaks(keys: np.ndarray, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The distinct bins, each one's support (its votes and its 26 neighbours'), and its (rot, tx, ty) bins."""
    unique, counts = np.unique(keys, return_counts=True)
    rot, rest = np.divmod(unique, shape[1] * shape[2])
    tx, ty = np.divmod(rest, shape[2])
    support = np.zeros(len(unique), np.int64)
    for dr in (-1, 0, 1):
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                neighbour = ((rot + dr) % shape[0] * shape[1] + tx + dx) * shape[2] + ty + dy
                at = np.minimum(np.searchsorted(unique, neighbour), len(unique) - 1)
                support += np.where(unique[at] == neighbour, counts[at], 0)
    return support, np.column_stack([rot, tx, ty])


def _hypotheses(probe: _Print, candidate: _Print, i: np.ndarray, j: np.ndarray,
                count: int) -> list[tuple[float, np.ndarray, int]]:
    """The `count` best-supported distinct Hough peaks: (rotation degrees, translation, support) each."""
    if len(i) == 0:
        return []
    centre = probe.xy.mean(axis=0)
    rotation = (candidate.angle[j] - probe.angle[i]) % 360.0
    shift = candidate.xy[j] - _rotate(probe.xy[i] - centre, rotation)  # translation about the probe's centroid
    step = 360.0 / ROTATION_BINS
    rot_bin = np.rint(rotation / step).astype(np.int64) % ROTATION_BINS
    cell = np.floor(shift / TRANSLATION_BIN_PX).astype(np.int64)
    cell -= cell.min(axis=0) - 1  # neighbours of every cell stay inside the grid
    shape = (ROTATION_BINS, int(cell[:, 0].max()) + 2, int(cell[:, 1].max()) + 2)
    keys = (rot_bin * shape[1] + cell[:, 0]) * shape[2] + cell[:, 1]
    support, bins = _peaks(keys, shape)
    found: list[tuple[float, np.ndarray, int]] = []
    taken: list[np.ndarray] = []
    for k in np.argsort(-support, kind="stable"):
        if len(found) == count:
            break
        if any(_near(bins[k], other, ROTATION_BINS) for other in taken):
            continue  # the same peak seen from a neighbouring bin
        taken.append(bins[k])
        members = ((_angle_gap(rot_bin * step, bins[k][0] * step) <= step + 1e-9)
                   & np.all(np.abs(cell - bins[k][1:]) <= 1, axis=1))
        angle = float(np.degrees(np.angle(np.exp(1j * np.radians(rotation[members])).mean())))
        moved = _rotate(-centre[None, :], angle)[0]  # the centroid's rotation, taken out of the translation
        found.append((angle, shift[members].mean(axis=0) + moved, int(support[k])))
    return found


def _near(a: np.ndarray, b: np.ndarray, rotations: int) -> bool:
    turn = abs(int(a[0]) - int(b[0])) % rotations
    return min(turn, rotations - turn) <= 1 and bool(np.all(np.abs(a[1:] - b[1:]) <= 1))


def pair_minutiae(probe_iso: bytes, candidate_iso: bytes, *, distance_tolerance_px: float = DISTANCE_TOLERANCE_PX,
                  angle_tolerance_deg: float = ANGLE_TOLERANCE_DEG, max_minutiae: int = MAX_PAIRING_MINUTIAE,
                  hypotheses: int = HYPOTHESES) -> Pairing:
    """The paired minutiae of two ISO/IEC 19794-2 records (either layout) under their best rigid alignment.

    See the module's description. Records that are not consistent raise `FingerprintRejected` (from
    `models.minutiae`), as does a stated resolution outside 250-2000 ppi. Prints with fewer than two minutiae,
    or nothing in common, give a `Pairing` without pairs (rotation and translation 0 when nothing voted).
    """
    if distance_tolerance_px <= 0 or angle_tolerance_deg <= 0 or max_minutiae < 1 or hypotheses < 1:
        raise ValueError("tolerances must be positive and max_minutiae and hypotheses at least 1")
    probe, candidate = _print(probe_iso, "probe", max_minutiae), _print(candidate_iso, "candidate", max_minutiae)
    tolerances = _Tolerances(float(distance_tolerance_px), float(angle_tolerance_deg))
    best: tuple[tuple[int, float], np.ndarray, np.ndarray, float, np.ndarray, int] | None = None
    if len(probe.xy) >= 2 and len(candidate.xy) >= 2:
        i, j = np.nonzero((probe.kind[:, None] == candidate.kind[None, :]) | (probe.kind[:, None] == OTHER_KIND)
                          | (candidate.kind[None, :] == OTHER_KIND))
        for rotation, translation, votes in _hypotheses(probe, candidate, i, j, hypotheses):
            for _ in range(REFINEMENTS):
                fit, residual = _fits(probe, candidate, i, j, rotation, translation, tolerances)
                chosen = np.flatnonzero(fit)[_greedy(i[fit], j[fit], residual[fit])]
                if len(chosen) < 2:
                    break
                rotation, translation = _kabsch(probe.xy[i[chosen]], candidate.xy[j[chosen]])
            fit, residual = _fits(probe, candidate, i, j, rotation, translation, tolerances)
            chosen = np.flatnonzero(fit)[_greedy(i[fit], j[fit], residual[fit])]
            rank = (len(chosen), -float(residual[chosen].mean()) if len(chosen) else 0.0)
            if best is None or rank > best[0]:
                best = (rank, i[chosen], j[chosen], rotation, translation, votes)
    if best is None:
        return Pairing((), 0.0, (0.0, 0.0), probe.total, candidate.total, len(probe.xy), len(candidate.xy), 0,
                       tolerances.distance, tolerances.angle)
    _, pi, cj, rotation, translation, votes = best
    residual = np.hypot(*(_rotate(probe.xy[pi], rotation) + translation - candidate.xy[cj]).T)
    order = np.argsort(probe.rows[pi], kind="stable")
    pairs = tuple(MinutiaPair._make([int(probe.rows[a]), int(candidate.rows[b]), *probe.recorded[a].tolist(),
                                     *candidate.recorded[b].tolist(), float(r)])
                  for a, b, r in zip(pi[order], cj[order], residual[order], strict=True))
    rotation = (rotation + 180.0) % 360.0 - 180.0
    return Pairing(pairs, rotation, (float(translation[0]), -float(translation[1])), probe.total, candidate.total,
                   len(probe.xy), len(candidate.xy), votes, tolerances.distance, tolerances.angle)


__all__ = ["ANGLE_TOLERANCE_DEG", "DISTANCE_TOLERANCE_PX", "MAX_PAIRING_MINUTIAE", "MinutiaPair", "Pairing",
           "pair_minutiae"]
