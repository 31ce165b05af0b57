"""The Tesseract command-line program: one seam for every reader that uses it (plates, pages).

`TesseractBinary.locate()` finds the binary, records its version and Leptonica's, and the SHA-256 of the
language data the caller needs (refusing when one is missing); `run()` calls it with the image on stdin,
OMP_THREAD_LIMIT=1 (Tesseract's OpenMP threads only slow it down on a shared core) and a timeout. It is a
system binary, so its provenance is its version and the hashes of its language files. The readers that use it
(`models.ocr.TesseractOcr`, `models.plates.TesseractPlateReader`) are `TesseractModel`s: `load()` locates it.
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
from typing import Any, TypeVar

from models.base import Model, ModelError

In = TypeVar("In")
Out = TypeVar("Out")


class TesseractBinary:
    """A located, version-checked `tesseract` with the SHA-256 of the language files in use."""

    def __init__(self, *, binary: str = "tesseract", languages: Sequence[str], timeout_s: float) -> None:
        self.binary, self.languages, self.timeout_s = binary, tuple(languages), timeout_s
        self.path: str | None = None
        self.version = self.leptonica = ""
        self.traineddata: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

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

    def locate(self) -> Path:
        """Find the binary; record its versions and the SHA-256 of every language file in `languages`."""
        with self._lock:
            if self.path is not None:
                return Path(self.path)
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
            return Path(path)

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


class TesseractModel(Model[In, Out]):
    """A reader on the Tesseract binary: `load()` locates it and hashes its language data (the check a pinned
    file's SHA-256 is for other models); there is nothing to read in or warm up, since every run is a process
    of its own. Subclasses set `self.tesseract` before `load()` and implement `_predict` and `provenance`."""

    tesseract: TesseractBinary

    @property
    def name(self) -> str:
        return "tesseract"

    def _weights(self) -> Path:
        return self.tesseract.locate()

    def _load(self, weights: Path) -> None:
        """Nothing to read: `_weights` found the binary and hashed its language data."""

    def _warm_up(self) -> None:
        """Nothing to warm: Tesseract starts afresh for every run."""
