"""A private embedded stack for a benchmark: its own home, started clean, stopped and removed afterwards.

The home (and a scratch folder for generated files) is kept for inspection when the run fails or asks for it.
Before anything starts, LOCARD_* and RAY_ADDRESS are dropped from this process's environment, which the stack
hands its processes: otherwise a user's LOCARD_DATABASE_URL or RAY_ADDRESS would point the benchmark at their data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from locard.stack import EmbeddedStack
from storage.settings import Settings

Say = Callable[[str], None]


def hermetic_environment() -> list[str]:
    """Drop LOCARD_* and RAY_ADDRESS from this process's environment; the names dropped."""
    dropped = sorted(key for key in os.environ if key.startswith("LOCARD_") or key == "RAY_ADDRESS")
    for key in dropped:
        del os.environ[key]
    return dropped


@dataclass
class PrivateStack:
    """The stack (not yet started), its home, a scratch folder, and whether to keep the home afterwards."""

    stack: EmbeddedStack
    home: Path
    work: Path
    keep: bool = False


@contextmanager
def private_stack(say: Say, *, keep_home: bool = False, prefix: str = "locard-bench") -> Iterator[PrivateStack]:
    """A stack with a fresh home; the caller starts it. On the way out it is stopped, the scratch folder removed,
    and the home removed unless the run failed or `keep` was set."""
    dropped = hermetic_environment()
    if dropped:
        say(f"(ignoring {', '.join(dropped)} from the environment: the benchmark runs its own stack)")
    home = Path(tempfile.mkdtemp(prefix=f"{prefix}-home-"))
    run = PrivateStack(EmbeddedStack(Settings(home=home)), home, Path(tempfile.mkdtemp(prefix=f"{prefix}-files-")),
                       keep=keep_home)
    try:
        yield run
    except BaseException:
        run.keep = True
        raise
    finally:
        try:
            run.stack.down(say)
        finally:
            shutil.rmtree(run.work, ignore_errors=True)
            if run.keep:
                say(f"Kept the benchmark's home for inspection: {home} (logs in {home / 'logs'})")
            else:
                shutil.rmtree(home, ignore_errors=True)
