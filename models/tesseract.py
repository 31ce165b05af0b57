"""The Tesseract command-line program: one seam for every reader that uses it (plates, pages).

`TesseractBinary.load()` finds the binary, records its version and Leptonica's, and the SHA-256 of the
language data the caller needs (refusing to load when one is missing); `run()` calls it with the image on
stdin, OMP_THREAD_LIMIT=1 (Tesseract's OpenMP threads only slow it down on a shared core) and a timeout.
It is a system binary, so its provenance is its version and the hashes of its language files.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from models.base import ModelError


class TesseractBinary:
    """A located, version-checked `tesseract` with the SHA-256 of the language files in use."""

    def __init__(self, *, binary: str = "tesseract", languages: Sequence[str], timeout_s: float) -> None:
        self.binary, self.languages, self.timeout_s = binary, tuple(languages), timeout_s
        self.path: str | None = None
        self.version = self.leptonica = ""
        self.traineddata: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.path is not None

    def run(self, *args: str, stdin: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run tesseract with `args`; a non-zero exit is a `ModelError` unless `check` is False."""
        if self.path is None:
            raise ModelError("tesseract is not loaded; call load() first")
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            done = subprocess.run([self.path, *args], input=stdin, capture_output=True, env=env,
                                  timeout=self.timeout_s, check=False)
        except subprocess.TimeoutExpired as exc:
            raise ModelError(f"tesseract took more than {self.timeout_s} s") from exc
        if check and done.returncode != 0:
            raise ModelError(f"tesseract failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return done

    def load(self) -> None:
        """Find the binary; record its versions and the SHA-256 of every language file in `languages`."""
        with self._lock:
            if self.path is not None:
                return
            path = shutil.which(self.binary)
            if path is None:
                raise ModelError(f"the Tesseract binary {self.binary!r} is not installed")
            self.path = path
            try:
                version = self.run("--version")
                listing = self.run("--list-langs")
                self.traineddata = self._hash_traineddata((listing.stdout + listing.stderr).decode(errors="replace"))
            except ModelError:
                self.path = None
                raise
            text = (version.stdout + version.stderr).decode(errors="replace")
            found = re.search(r"tesseract\s+v?(\S+)", text)
            self.version = found.group(1) if found else "unknown"
            leptonica = re.search(r"leptonica-(\S+)", text)
            self.leptonica = leptonica.group(1) if leptonica else "unknown"

    def _hash_traineddata(self, listing: str) -> dict[str, dict[str, str]]:
        available = {line.strip() for line in listing.splitlines()[1:]}
        directory = re.search(r'"([^"]+)"', listing)
        missing = sorted(set(self.languages) - available)
        if missing or directory is None:
            raise ModelError(f"Tesseract has no language data for {missing} (has: {sorted(available)})")
        hashes = {}
        for language in sorted(set(self.languages)):
            path = Path(directory.group(1)) / f"{language}.traineddata"
            hashes[language] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return hashes

    def provenance(self) -> dict[str, Any]:
        """Binary, versions and language files (path, SHA-256)."""
        return {"name": "tesseract", "runtime": "tesseract", "binary": self.path, "version": self.version,
                "leptonica": self.leptonica, "traineddata": self.traineddata, "licence": "Apache-2.0"}
