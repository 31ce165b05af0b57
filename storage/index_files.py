"""Files of Locard's in-memory indexes (vector and PDQ), written atomically and checked when read.

An index is a directory under the Locard home holding a few data files and a `manifest.json` that records the
SHA-256 and size of each. Every file is written to a temporary name, flushed and fsynced, then renamed over the
old one; the manifest is written last the same way, and the directory is fsynced. A crash part-way leaves
files that do not match the manifest, and an edited or truncated file no longer matches its digest: reading
then raises `IndexCorrupt`, which the index's opener answers by rebuilding from the record store (the truth;
an index is only a cache of it), never by crashing or by serving a damaged index.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FORMAT = 1
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class IndexCorrupt(Exception):
    """An index on disk is missing, torn, tampered with or of another format or space: rebuild it."""


def index_directory(home: Path, family: str, name: str) -> Path:
    """`<home>/indexes/<family>/<name>`, for a name made of lower-case letters, digits, '.', '_' and '-'."""
    if not _NAME.match(name):
        raise ValueError(f"index name {name!r}: use 1-64 lower-case letters, digits, '.', '_' or '-'")
    return Path(home) / "indexes" / family / name


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform can open a directory
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def write_index(directory: Path, *, files: dict[str, bytes], meta: dict[str, Any]) -> None:
    """Write each file atomically, then a manifest holding `meta` and each file's SHA-256 and size."""
    directory.mkdir(parents=True, exist_ok=True)
    digests = {}
    for name, data in files.items():
        _write_atomically(directory / name, data)
        digests[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    _fsync_directory(directory)
    manifest = {"format": FORMAT, **meta, "files": digests}
    _write_atomically(directory / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
    _fsync_directory(directory)


def read_index(directory: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and the files it lists, each checked against its digest; `IndexCorrupt` if anything is off."""
    try:
        manifest = json.loads((directory / MANIFEST).read_bytes())
    except FileNotFoundError as exc:
        raise IndexCorrupt(f"{directory}: no manifest") from exc
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(f"{directory}: unreadable manifest: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT \
            or not isinstance(manifest.get("files"), dict):
        raise IndexCorrupt(f"{directory}: manifest of an unknown format")
    files = {}
    for name, expected in manifest["files"].items():
        try:
            data = (directory / name).read_bytes()
        except OSError as exc:
            raise IndexCorrupt(f"{directory / name}: unreadable: {exc}") from exc
        if len(data) != expected.get("bytes") or hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise IndexCorrupt(f"{directory / name}: does not match its manifest (torn or altered)")
        files[name] = data
    return manifest, files
