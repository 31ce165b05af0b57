"""Per-process spool folders for request bodies (`<home>/spool/<pid>`); a dead process's folder is removed at start.

An upload streams to a file here before it is stored; a process killed mid-upload leaves its file behind, and
the next API process to start removes it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

SPOOL_FOLDER = "spool"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def prepare_spool(home: Path) -> Path:
    """This process's spool folder, created empty, after removing the folders of processes that are gone."""
    root = home / SPOOL_FOLDER
    root.mkdir(parents=True, exist_ok=True)
    for entry in root.iterdir():
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) != os.getpid() and not _alive(int(entry.name)):
            shutil.rmtree(entry, ignore_errors=True)
    own = root / str(os.getpid())
    own.mkdir(exist_ok=True)
    return own


def remove_spool(folder: Path) -> None:
    """Remove this process's spool folder (at shutdown)."""
    shutil.rmtree(folder, ignore_errors=True)
