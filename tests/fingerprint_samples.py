"""Fingerprint samples for tests and benchmarks, all generated here: nothing is downloaded.

Only ONE real fingerprint exists among the installed packages: the latent print that `wsq` ships as its test
file (`wsq/tests/test.wsq`, 520 x 540, 8-bit grey, no resolution in the header; 500 ppi is assumed).
Everything else is synthetic:

* `real_latent()`: that print, decoded with `_wsq` (not the `wsq` Pillow plugin, which shears non-square
  images).
* `reimpress(image, seed)`: a new "impression" of the same finger: non-linear elastic skin distortion,
  rotation (up to `max_rotation` degrees), translation, partial crop / occlusion, pressure or dryness (grey
  erosion / dilation), contrast change and sensor noise.
* `synthetic_finger(finger)`: an SFinGe-style master print: an orientation field from core/delta singular
  points (Sherlock-Monroe model, random per finger: loop, whorl or arch, a rotation and a smooth random
  perturbation), a ridge period of 8.5-10.5 px (500 ppi), and ridges grown from sparse random noise by
  iterative orientation-selective Gabor filtering (done in the Fourier domain, ~50 ms), inside a
  fingertip-shaped mask. Every finger number gives a different finger, the same number the same finger.
  `synthetic_impression(finger, impression)` is `reimpress` of that master.
* `synthetic_templates(n, seed)`: n minutiae templates (ISO bytes) for the 1:N benchmark, see its docstring.

Synthetic prints look like fingerprints to MINDTCT (ridges, endings, bifurcations, a fingertip outline) but
they are not real skin: scores measured on them say how the engine behaves, not what it achieves on
case work.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import math
import os
import tempfile
from pathlib import Path

import numpy as np

SYNTHETIC_SIZE = (416, 352)  # height, width in pixels at 500 ppi (0.83 x 0.70 inch)
BACKGROUND = 235  # grey level of paper / platen where no skin touches
_CACHE_VERSION = "v1"


def _package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed")
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def real_latent_wsq() -> bytes:
    """The WSQ file of the one real print available: `wsq`'s own test file."""
    return _package_file("wsq", "tests", "test.wsq").read_bytes()


@functools.cache
def real_latent() -> np.ndarray:
    """The real latent print, H x W = 540 x 520 uint8 (dark ridges), decoded with `_wsq` directly."""
    import _wsq

    pixels, height, width, _ppi = _wsq.decompress(real_latent_wsq())
    image = np.frombuffer(pixels, np.uint8).reshape(height, width).copy()
    image.flags.writeable = False
    return image


def bus_jpg() -> Path:
    """ultralytics' bus.jpg (a street photo: no fingerprint)."""
    return _package_file("ultralytics", "assets", "bus.jpg")


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int, amplitude: float) -> np.ndarray:
    """A smooth random field: a coarse grid of normal values upsampled bicubically, scaled to `amplitude`."""
    import cv2

    coarse = rng.normal(0.0, 1.0, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC) * amplitude


def _finger_flow(rng: np.random.Generator, height: int, width: int) -> dict[str, np.ndarray]:
    """Random singular points (Sherlock-Monroe), rotation and low-frequency waves of one finger's ridge flow."""
    pattern = rng.choice(["loop_left", "loop_right", "whorl", "arch"], p=[0.3, 0.3, 0.25, 0.15])
    cx, cy = width / 2 + rng.uniform(-30, 30), height * 0.42 + rng.uniform(-30, 30)
    if pattern == "whorl":
        gap = rng.uniform(12, 30)
        cores = [complex(cx, cy - gap), complex(cx + rng.uniform(-8, 8), cy + gap)]
        deltas = [complex(cx - rng.uniform(90, 140), cy + rng.uniform(110, 170)),
                  complex(cx + rng.uniform(90, 140), cy + rng.uniform(110, 170))]
    elif pattern == "arch":
        cores = [complex(cx, height + rng.uniform(60, 160))]
        deltas = [complex(cx + rng.uniform(-20, 20), height + rng.uniform(260, 420))]
    else:
        side = -1.0 if pattern == "loop_left" else 1.0
        cores = [complex(cx, cy)]
        deltas = [complex(cx + side * rng.uniform(70, 130), cy + rng.uniform(110, 170))]
    waves = np.column_stack([rng.uniform(-1, 1, (3, 2)) * 2 * np.pi / np.array([width, height]),
                             rng.uniform(0, 2 * np.pi, 3), rng.normal(0, 0.07, 3)])
    return {"cores": np.array(cores), "deltas": np.array(deltas), "rotation": np.array(rng.uniform(-0.25, 0.25)),
            "waves": waves}


def _orientation_at(flow: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ridge direction (radians modulo pi, image axes: x right, y down) of a flow at points x, y."""
    z = x + 1j * y
    theta = np.zeros(np.shape(x))
    for delta in flow["deltas"]:
        theta += np.angle(z - delta)
    for core in flow["cores"]:
        theta -= np.angle(z - core)
    theta = 0.5 * theta + float(flow["rotation"]) + np.pi / 2
    for fx, fy, phase, amplitude in flow["waves"]:
        theta += amplitude * np.sin(fx * x + fy * y + phase)
    return np.mod(theta, np.pi)


def _orientation_field(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Ridge directions (radians, modulo pi) of a random finger over the whole image."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    return _orientation_at(_finger_flow(rng, height, width), x, y)


def _fingertip_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """1 inside a fingertip outline (half ellipse on top of straight sides), 0 outside; soft 4-px edge."""
    import cv2

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2 + rng.uniform(-10, 10), height * 0.5 + rng.uniform(-10, 10)
    a, b = width * rng.uniform(0.40, 0.47), height * rng.uniform(0.42, 0.5)
    inside = np.where(y < cy, ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 <= 1.0, np.abs(x - cx) <= a)
    inside &= y < height - rng.uniform(5, 30)
    return cv2.GaussianBlur(inside.astype(np.float32), (0, 0), 2.0)


def _grow_ridges(rng: np.random.Generator, theta: np.ndarray, period: float, iterations: int = 9,
                 bins: int = 16) -> np.ndarray:
    """Ridges grown from sparse noise by orientation-selective band-pass (Gabor) filtering, values in [-1, 1]."""
    height, width = theta.shape
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    f0, spread = 1.0 / period, 0.022
    filters = []
    for k in range(bins):
        normal = k * np.pi / bins + np.pi / 2  # ridges run along theta: the wave runs along its normal
        ux, uy = math.cos(normal) * f0, math.sin(normal) * f0
        gain = (np.exp(-((fx - ux) ** 2 + (fy - uy) ** 2) / (2 * spread**2))
                + np.exp(-((fx + ux) ** 2 + (fy + uy) ** 2) / (2 * spread**2)))
        filters.append(gain.astype(np.float32))
    selector = np.round(theta / (np.pi / bins)).astype(np.int64) % bins
    image = np.zeros((height, width), np.float32)
    seeds = rng.random((height, width)) < 0.004
    image[seeds] = rng.choice([-1.0, 1.0], int(seeds.sum()))
    for _ in range(iterations):
        spectrum = np.fft.rfft2(image)
        out = np.empty_like(image)
        for k, gain in enumerate(filters):
            chosen = selector == k
            if chosen.any():
                out[chosen] = np.fft.irfft2(spectrum * gain, s=(height, width))[chosen]
        scale = float(np.std(out)) or 1.0
        image = np.clip(out / scale * 1.6, -1.0, 1.0).astype(np.float32)
    return image


@functools.lru_cache(maxsize=256)
def synthetic_finger(finger: int) -> np.ndarray:
    """The master print of synthetic finger number `finger`: H x W uint8, dark ridges on a light background."""
    import cv2

    rng = np.random.default_rng([7919, finger])
    height, width = SYNTHETIC_SIZE
    theta = _orientation_field(rng, height, width)
    ridges = _grow_ridges(rng, theta, period=rng.uniform(8.5, 10.5))
    ridges = cv2.GaussianBlur(ridges, (0, 0), 0.8)
    mask = _fingertip_mask(rng, height, width)
    grey = BACKGROUND - mask * (100 + 90 * ridges)
    image = np.clip(grey, 0, 255).astype(np.uint8)
    image.flags.writeable = False
    return image


def reimpress(image: np.ndarray, seed: int, *, max_rotation: float = 30.0, max_shift: float = 25.0,
              elastic_px: float = 5.0, occlusion: float = 0.25, noise: float = 8.0) -> np.ndarray:
    """Another impression of the print in `image` (uint8, dark ridges): same finger, different contact.

    Elastic distortion: a smooth random displacement field of up to about `elastic_px` pixels (skin is not
    rigid); a rotation of up to `max_rotation` degrees about the centre and a shift of up to `max_shift`
    pixels; with probability `occlusion` a straight cut removes part of the print (partial contact); grey
    erosion (heavy pressure, wet: thicker ridges) or dilation (light pressure, dry: thinner, broken ridges);
    a contrast and brightness change; Gaussian sensor noise of standard deviation `noise`.
    """
    import cv2

    rng = np.random.default_rng([104729, seed])
    height, width = image.shape
    background = float(np.percentile(image, 95))
    angle = math.radians(rng.uniform(-max_rotation, max_rotation))
    shift = rng.uniform(-max_shift, max_shift, 2)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    # inverse mapping: for each output pixel, where it comes from in the source
    xs = math.cos(angle) * (x - cx - shift[0]) - math.sin(angle) * (y - cy - shift[1]) + cx
    ys = math.sin(angle) * (x - cx - shift[0]) + math.cos(angle) * (y - cy - shift[1]) + cy
    xs = xs + _smooth_field(rng, (height, width), 4, elastic_px / 2)
    ys = ys + _smooth_field(rng, (height, width), 4, elastic_px / 2)
    out = cv2.remap(image.astype(np.float32), xs.astype(np.float32), ys.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=background)
    if rng.random() < occlusion:
        normal = rng.uniform(0, 2 * math.pi)
        offset = rng.uniform(0.15, 0.35) * min(height, width)
        side = (x - cx) * math.cos(normal) + (y - cy) * math.sin(normal)
        out[side > offset] = background
    pressure = rng.choice(["none", "heavy", "dry"], p=[0.5, 0.25, 0.25])
    if pressure == "heavy":
        out = cv2.erode(out, np.ones((2, 2), np.uint8))
    elif pressure == "dry":
        out = cv2.dilate(out, np.ones((2, 2), np.uint8))
    contrast, brightness = rng.uniform(0.75, 1.15), rng.uniform(-15, 15)
    out = (out - 128.0) * contrast + 128.0 + brightness + rng.normal(0.0, noise, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def synthetic_impression(finger: int, impression: int, **distortion: float) -> np.ndarray:
    """Impression number `impression` of synthetic finger `finger` (0 is the undistorted master)."""
    master = synthetic_finger(finger)
    if impression == 0:
        return master.copy()
    return reimpress(master, finger * 1000 + impression, **distortion)


def encode_png(image: np.ndarray, dpi: float | None = None) -> bytes:
    """PNG bytes of a grey image, with a pHYs resolution when `dpi` is given."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    kwargs = {"dpi": (dpi, dpi)} if dpi else {}
    Image.fromarray(image).save(buffer, "PNG", **kwargs)
    return buffer.getvalue()


def _cache_dir() -> Path:
    folder = Path(os.environ.get("LOCARD_FINGERPRINT_CACHE", Path(tempfile.gettempdir()) / "locard-fingerprints"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def extracted_iso(finger: int, impression: int) -> bytes:
    """The ISO template MINDTCT extracts from a synthetic impression, cached on disk (extraction ~0.2 s)."""
    from models.fingerprints import FingerprintExtractor, FingerprintImage

    path = _cache_dir() / f"{_CACHE_VERSION}-f{finger}-i{impression}.iso"
    if path.is_file():
        return path.read_bytes()
    extractor = _shared_extractor()
    image = FingerprintImage(pixels=synthetic_impression(finger, impression), ppi=500.0, ppi_source="declared",
                             source_format="synthetic")
    iso = extractor.predict(image).iso if isinstance(extractor, FingerprintExtractor) else b""
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(iso)
    tmp.replace(path)
    return iso


@functools.cache
def _shared_extractor() -> object:
    from models.fingerprints import FingerprintExtractor

    extractor = FingerprintExtractor()
    extractor.load()
    return extractor


def _field_template(rng: np.random.Generator, count: int, reliabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A minutiae set drawn from a random finger's ridge flow (no image, no extraction), vectorised."""
    height, width = SYNTHETIC_SIZE
    flow = _finger_flow(rng, height, width)
    step = 22.0  # a jittered grid: neighbours stay at least 22 - 2 x 7 = 8 px apart
    gy, gx = np.mgrid[10:height - 20:step, 10:width - 10:step]
    px = (gx.ravel() + rng.uniform(-7, 7, gx.size)).astype(np.float64)
    py = (gy.ravel() + rng.uniform(-7, 7, gy.size)).astype(np.float64)
    cx, cy = width / 2 + rng.uniform(-10, 10), height * 0.5
    a, b = width * rng.uniform(0.38, 0.46), height * rng.uniform(0.40, 0.48)
    inside = np.where(py < cy, ((px - cx) / a) ** 2 + ((py - cy) / b) ** 2 <= 1.0, np.abs(px - cx) <= a)
    chosen = rng.permutation(np.flatnonzero(inside))[:count]
    px, py = px[chosen], py[chosen]
    ridge = _orientation_at(flow, px, py)
    # ISO angle: counter-clockwise from east as seen on screen (image y axis down), i.e. minus the direction
    angle = np.degrees(-ridge + np.pi * rng.integers(0, 2, len(px))) % 360.0
    quality = rng.choice(reliabilities, len(px))
    minutiae = np.column_stack([px, py, angle, quality]).astype(np.float32)
    kinds = rng.integers(1, 3, len(px)).astype(np.uint8)
    return minutiae, kinds


def synthetic_templates(n: int, seed: int = 0, *, extracted: int = 200) -> tuple[list[str], list[bytes]]:
    """n distinct minutiae templates (ISO bytes, nbis layout) with their ids, quickly, for 1:N benchmarks.

    What they are, honestly: the first `extracted` (default 200) are real MINDTCT extractions of synthetic
    prints: impression 1 of synthetic fingers 0..extracted-1 (ids ``f{finger}``; their other impressions are
    the probes of a search, so their mates are known). Extraction costs ~0.3 s a print, so the rest (ids
    ``s{seed}-{k}``) are *field-synthesised*: for each one a new random orientation field (the same model as
    the synthetic prints), minutiae positions drawn inside a fingertip outline at least 8 px apart, counts
    and qualities drawn from the extracted templates' distributions, directions along the local ridge flow
    (either sense) and random kinds. They are distinct fingers with realistic pair statistics (distances and
    relative directions follow a ridge flow), not images, and MINDTCT never saw them.
    """
    from models.minutiae import encode_iso_19794_2, parse_iso_19794_2

    real = min(n, extracted)
    ids = [f"f{finger}" for finger in range(real)]
    isos = [extracted_iso(finger, 1) for finger in range(real)]
    parsed = [parse_iso_19794_2(iso).minutiae for iso in isos] or [np.zeros((40, 4), np.float32)]
    counts = np.array([len(m) for m in parsed])
    reliabilities = np.concatenate([m[:, 3] for m in parsed])
    digest = int.from_bytes(hashlib.sha256(f"templates-{seed}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(digest)
    height, width = SYNTHETIC_SIZE
    for k in range(n - real):
        minutiae, kinds = _field_template(rng, int(rng.choice(counts)), reliabilities)
        ids.append(f"s{seed}-{k}")
        isos.append(encode_iso_19794_2(width, height, minutiae, kinds))
    return ids, isos
