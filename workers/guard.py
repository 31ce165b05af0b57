"""The memory budget of an analysis job, enforced inside its worker process.

Ray runs analyzers in long-lived actor processes, so an address-space limit (`RLIMIT_AS`) would bind the
whole worker and its loaded models, not one job. Instead a watchdog thread samples the process's resident
memory while a job runs; past the budget it raises `MemoryBudgetExceeded` in the job's thread (delivered at
the next Python instruction, so between the library calls that allocate). The actor records the run as
failed and asks to be replaced, which gives the memory back. Should a single native call keep growing
without returning to Python, the watchdog ends the process once it reaches twice the limit: the dispatcher
sees a lost worker and fails the item after `worker_max_losses` of them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

HARD_LIMIT_FACTOR = 2.0  # the process ends when a job holds this multiple of its limit and does not stop
HARD_EXIT_CODE = 70

_raise_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))
_clear_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)(
    ("PyThreadState_SetAsyncExc", ctypes.pythonapi))


class MemoryBudgetExceeded(BaseException):
    """A job grew past its memory budget. A BaseException, so that an analyzer's `except Exception` cannot hide it."""


def rss_mb() -> float:
    """This process's resident memory now, in MiB (from /proc; psutil where there is no /proc)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    import psutil

    return float(psutil.Process().memory_info().rss) / 1024.0**2


def release_free_memory() -> float:
    """Collect garbage and hand freed heap back to the system (glibc keeps it otherwise); the RSS after, MiB."""
    gc.collect()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    return rss_mb()


class MemoryGuard:
    """Watches one job at a time (`watch`) and stops it when the process's memory passes `limit_mb`."""

    def __init__(self, limit_mb: float, *, interval: float = 0.05) -> None:
        self.limit_mb = limit_mb
        self.interval = interval
        self.peak_mb = 0.0  # the highest resident memory seen during the last watched job
        self._lock = threading.Lock()
        self._target: int | None = None  # the thread id of the watched job, while armed
        self._tripped = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self) -> Iterator[None]:
        """Run the body under the budget; raises `MemoryBudgetExceeded` when it grows past it."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="locard-memory-guard", daemon=True)
            self._thread.start()
        with self._lock:
            self._target, self._tripped, self.peak_mb = threading.get_ident(), False, rss_mb()
        self._wake.set()
        try:
            yield
        finally:
            with self._lock:
                target, self._target = self._target, None
                if target is not None:
                    _clear_in(target, None)  # an exception set but not yet delivered must not escape the job
            tripped = self._tripped
        if tripped:
            raise MemoryBudgetExceeded(f"{self.peak_mb:.0f} MiB")

    def _loop(self) -> None:
        while True:
            if self._target is None:
                self._wake.wait()
                self._wake.clear()
                continue
            used = rss_mb()
            with self._lock:
                if self._target is None:
                    continue
                self.peak_mb = max(self.peak_mb, used)
                if used > self.limit_mb and not self._tripped:
                    self._tripped = True
                    _raise_in(self._target, MemoryBudgetExceeded)
                elif self._tripped and used > self.limit_mb * HARD_LIMIT_FACTOR:
                    os._exit(HARD_EXIT_CODE)  # stuck in one native call and still growing: end the worker
            time.sleep(self.interval)
