"""PDQ on a shrunk copy: a 10,900 x 11,000 PNG hashes in bounded time and memory, and the hashes of real photos
agree with hashing them at full size."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pdqhash
import pytest
import skimage.data
from PIL import Image

from tests.hostile_files import grey_png_idat, png_bytes
from tests.hostile_runner import evidence_for
from tests.media_samples import bus_jpg_path, zidane_jpg_path
from workers import imaging
from workers.analyzers.base import AnalysisLimits
from workers.analyzers.hashes import PDQ_SIDE, HashesAnalyzer, pack_bits, pdq_distance

LIMITS = AnalysisLimits()


def _full_size_pdq(path: Path) -> str:
    """PDQ as it was computed before: the whole decoded, upright RGB image."""
    with imaging.open_image_limited(path, LIMITS.max_image_pixels) as image:
        imaging.decode(image)
        rgb = imaging.to_rgb(imaging.upright(image))
    bits, _ = pdqhash.compute(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)))
    return pack_bits(bits)


def _pdq(path: Path) -> str:
    found = {f.kind: f for f in HashesAnalyzer().analyze(evidence_for(path), LIMITS)}
    return str(found["hash.pdq"].data["pdq"])


def test_a_120_megapixel_png_hashes_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "large.png"
    path.write_bytes(png_bytes(10_900, 11_000, grey_png_idat(10_900, 11_000)))  # 117 KB, 119.9 Mpx
    script = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from tests.hostile_runner import evidence_for
        from workers.analyzers.base import AnalysisLimits
        from workers.analyzers.hashes import HashesAnalyzer
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kinds = [f.kind for f in HashesAnalyzer().analyze(evidence_for(Path({str(path)!r})), AnalysisLimits())]
        print(kinds, before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1], check=True)
    kinds, before, peak = result.stdout.strip().rsplit(" ", 2)
    assert "hash.pdq" in kinds
    # measured: 3.7 GB at full size; now the 120 MB of decoded grey pixels and a 1024-pixel copy
    assert (int(peak) - int(before)) / 1024 < 400


@pytest.mark.parametrize("name", ["bus", "zidane", "astronaut", "coffee", "chelsea", "camera", "rocket",
                                  "hubble_deep_field", "immunohistochemistry", "retina"])
def test_shrunk_pdq_agrees_with_full_size_pdq_on_real_photos(name: str, tmp_path: Path) -> None:
    if name in ("bus", "zidane"):
        original = {"bus": bus_jpg_path, "zidane": zidane_jpg_path}[name]()
    else:
        original = tmp_path / f"{name}.png"
        Image.fromarray(getattr(skimage.data, name)()).save(original)
    enlarged = tmp_path / f"{name}-x6.jpg"
    with Image.open(original) as image:
        image.convert("RGB").resize((image.width * 6, image.height * 6), Image.Resampling.BICUBIC).save(enlarged,
                                                                                                         quality=92)
    for path in (original, enlarged):
        with Image.open(path) as image:
            assert max(image.size) > PDQ_SIDE or path == original
        assert pdq_distance(_pdq(path), _full_size_pdq(path)) <= 12, path.name  # measured 0-10
