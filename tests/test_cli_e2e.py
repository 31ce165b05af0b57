"""The embedded stack as a user meets it: `locard up`, `locard demo`, `locard analyze`, `locard down`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.media_samples import bus_jpg_path, jpeg_with_exif, truncated_copy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _locard(home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCARD_")}
    env["LOCARD_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "locard.cli", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_up_demo_analyze_down(tmp_path: Path) -> None:
    home = tmp_path / "locard-home"
    try:
        up = _locard(home, "up")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "Locard is up: http://127.0.0.1:" in up.stdout
        assert (home / "seaweedfs" / "data").is_dir() and (home / "locard.db").is_file()

        demo = _locard(home, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        assert "picked up by intake without any API call" in out
        assert "via bucket" in out and "JPEG image 810\N{MULTIPLICATION SIGN}1080" in out
        assert "PDQ " in out and "0 failed analyzer run(s)" in out
        assert "objects: " in out and " bus" in out and "faces: 2" in out  # bus.jpg; zidane.jpg's two faces
        assert "text: 1 page(s) [eng, tesseract]" in out  # skimage's scanned page
        assert "fingerprint: 150 minutiae" in out and "resolution assumed 500 ppi" in out  # the WSQ latent

        broken = truncated_copy(bus_jpg_path(), tmp_path / "broken.jpg", 0.4)
        photo = jpeg_with_exif(tmp_path / "IMG_2041.jpg")
        analyze = _locard(home, "analyze", str(photo), str(broken), "--case", "CLI-1")
        assert analyze.returncode == 0, analyze.stdout + analyze.stderr
        assert "media_probe failed" in analyze.stdout and "truncated" in analyze.stdout
        assert "EXIF: Canon Canon EOS 5D Mark IV" in analyze.stdout and "GPS 48.858" in analyze.stdout

        verified = _locard(home, "audit", "verify")
        assert verified.returncode == 0 and "audit" in verified.stdout and "custody" in verified.stdout
        assert verified.stdout.count(": intact") == 2, verified.stdout

        status = _locard(home, "status")
        assert status.stdout.count("running") == 3
    finally:
        down = _locard(home, "down")
    assert down.returncode == 0 and "Locard is down." in down.stdout
    assert "running" not in _locard(home, "status").stdout
