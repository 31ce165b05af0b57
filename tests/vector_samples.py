"""Clustered embeddings shaped like dlib's face descriptors, and PDQ hashes with planted near-duplicates.

Nothing here is downloaded, and the vectors are generated, not real: a face search is measured on what a
gallery of faces looks like, not on uniform random vectors (on which every neighbour is equally far and
no index is realistic). The shape follows real dlib embeddings that Locard computed once with dlib's ResNet
(`dlib_face_recognition_resnet_model_v1`) on the faces of ultralytics' `zidane.jpg` and `bus.jpg`, each at
three scales and with and without jitter:

* every vector has a length of about 1.4 (1.38-1.45): they share a large common component, so the people
  lie on a small cap of the sphere, not all over it;
* different people lie 0.65-0.83 apart (Euclidean), the same face seen again 0.1-0.3 apart, and different
  photos of one person (dlib's documentation) up to 0.5; dlib's own decision threshold is 0.6.

`face_gallery` builds identities as points of that cap: a common mean, plus an identity offset drawn with a
decaying spectrum in a random rotation (real embeddings are not isotropic: a few directions carry more of the
variation than others), scaled so that two people are ~0.75 apart, plus a per-image perturbation whose size
varies with the photo (two images of one person 0.25-0.5 apart). `face_probes` are new images of enrolled
people (and some people never enrolled), which is what a 1:N face search receives.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DLIB_DIMENSION = 128
DLIB_NORM = 1.42  # the mean length of the real dlib embeddings measured above
BETWEEN_PEOPLE = 0.75  # the mean Euclidean distance between two people
IMAGE_SIGMA = (0.014, 0.028)  # per-dimension spread of one photo around its person: two photos 0.25-0.5 apart
PDQ_BITS = 256
PDQ_THRESHOLD = 31


@dataclass(frozen=True)
class Gallery:
    """Gallery vectors (float32, n x d), their string ids, and the identity of each (for building probes)."""

    ids: list[str]
    vectors: np.ndarray
    identities: np.ndarray
    centres: np.ndarray
    mean: np.ndarray
    basis: np.ndarray


def _identity_basis(rng: np.random.Generator, dimension: int) -> np.ndarray:
    """Rows: the directions of identity variation, scaled by a decaying spectrum so people lie BETWEEN_PEOPLE apart."""
    rotation, _ = np.linalg.qr(rng.standard_normal((dimension, dimension)))
    spectrum = 1.0 / np.sqrt(1.0 + np.arange(dimension) / 16.0)
    # E|a - b|^2 = 2 * sum(s_i^2) for two independent identities
    spectrum *= BETWEEN_PEOPLE / np.sqrt(2.0 * float(np.sum(spectrum**2)))
    return (spectrum[:, None] * rotation).astype(np.float64)


def face_gallery(size: int, *, dimension: int = DLIB_DIMENSION, images_per_identity: int = 3,
                 seed: int = 0) -> Gallery:
    """`size` vectors of about size / images_per_identity people (1 to 2 x images_per_identity - 1 photos each)."""
    rng = np.random.default_rng(seed)
    mean = rng.standard_normal(dimension)
    mean *= DLIB_NORM * 0.95 / np.linalg.norm(mean)
    basis = _identity_basis(rng, dimension)
    counts = rng.integers(1, 2 * images_per_identity, size=2 * (size // images_per_identity) + 2)
    identities = np.repeat(np.arange(len(counts)), counts)[:size]
    people = int(identities.max()) + 1
    centres = mean + rng.standard_normal((people, dimension)) @ basis
    vectors = _photos(rng, centres[identities])
    ids = [f"face-{index:08d}" for index in range(size)]
    return Gallery(ids, vectors, identities, centres, mean, basis)


def _photos(rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    sigma = rng.uniform(*IMAGE_SIGMA, size=(len(centres), 1))
    return (centres + sigma * rng.standard_normal(centres.shape)).astype(np.float32)


def face_probes(gallery: Gallery, count: int, *, unknown_fraction: float = 0.2, seed: int = 1) -> np.ndarray:
    """New photos: of enrolled people (a fresh perturbation of their centre) and of people not in the gallery."""
    rng = np.random.default_rng(seed)
    unknown = int(count * unknown_fraction)
    known = rng.choice(len(gallery.centres), size=count - unknown, replace=len(gallery.centres) < count - unknown)
    strangers = gallery.mean + rng.standard_normal((unknown, gallery.basis.shape[0])) @ gallery.basis
    centres = np.vstack([gallery.centres[known], strangers])
    return _photos(rng, centres)


def unit_vectors(size: int, *, dimension: int, clusters: int, spread: float = 0.25, seed: int = 0) -> np.ndarray:
    """Clustered directions (for cosine spaces such as FaceNet's 512-d or the 768-d scene embedding), not normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dimension))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = rng.integers(0, clusters, size=size)
    vectors = centres[members] + spread / np.sqrt(dimension) * rng.standard_normal((size, dimension))
    lengths = rng.uniform(0.5, 3.0, size=(size, 1))  # arbitrary lengths: a cosine space must not care
    return (vectors * lengths).astype(np.float32)


def random_pdq(count: int, *, seed: int = 0) -> np.ndarray:
    """`count` uniformly random 256-bit hashes as (count, 32) uint8 rows."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, PDQ_BITS // 8), dtype=np.uint8)


def flip_bits(hash_bytes: np.ndarray, distance: int, rng: np.random.Generator) -> np.ndarray:
    """A copy of one 32-byte hash with exactly `distance` distinct bits flipped."""
    bits = np.unpackbits(hash_bytes.astype(np.uint8))
    positions = rng.choice(PDQ_BITS, size=distance, replace=False)
    bits[positions] ^= 1
    return np.packbits(bits)


def planted_pdq(count: int, *, probes: int, per_probe: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A collection of `count` hashes with near-duplicates of each probe planted at distances 0-31.

    Returns (collection, probes). Each probe has `per_probe` planted relatives: one at distance 0 when
    `per_probe` > 1, one at exactly PDQ_THRESHOLD, the others spread over 1-31.
    """
    rng = np.random.default_rng(seed)
    collection = random_pdq(count, seed=seed + 1)
    probe_hashes = random_pdq(probes, seed=seed + 2)
    slots = rng.choice(count, size=probes * per_probe, replace=False).reshape(probes, per_probe)
    for number, probe in enumerate(probe_hashes):
        distances = [0, PDQ_THRESHOLD, *rng.integers(1, PDQ_THRESHOLD + 1, size=max(per_probe - 2, 0))]
        for slot, distance in zip(slots[number], distances[:per_probe], strict=True):
            collection[slot] = flip_bits(probe, int(distance), rng)
    return collection, probe_hashes
