"""Files a decoder cannot read end in one failed run with the reason, never retried as if the fault were transient."""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from sqlalchemy.orm import Session, sessionmaker

from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from tests.hostile_files import pdf_from_objects
from tests.worker_helpers import ingest, jobs_of, new_case, runs_of, step_until_settled
from workers.actor import AnalyzerWorker
from workers.analyzers import registry
from workers.analyzers.base import Analyzer
from workers.badinput import as_bad_input, describe
from workers.dispatcher import Dispatcher
from workers.runtime import LocalRuntime

pytestmark = pytest.mark.timeout(600)
ANALYZERS = ("media_probe", "similarity", "ocr")


def truncated_tiff(path: Path) -> Path:
    """A three-page TIFF cut in half: the second page's directory points past the end of the file."""
    rng = np.random.default_rng(3)
    pages = [Image.fromarray(rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)) for _ in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, "TIFF", save_all=True, append_images=pages[1:])
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def one_pixel_png(path: Path) -> Path:
    Image.new("RGB", (1, 1), (200, 30, 30)).save(path, "PNG")
    return path


def cyclic_pdf(path: Path) -> Path:
    """A PDF, written by hand, whose page tree loops: the only Pages node below the root lists the root as a kid."""
    path.write_bytes(pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>",
                                       b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                                       b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>"]))
    return path


@pytest.fixture(scope="module")
def loaded() -> dict[str, Analyzer]:
    """The analyzers, loaded once for the module (each worker below wraps the same loaded instance)."""
    return {name: cls() for name, cls in registry.select(list(ANALYZERS)).items()}


def test_hostile_files_end_in_one_failed_run_each(loaded: dict[str, Analyzer], settings: Settings,
                                                  factory: sessionmaker[Session], s3_store: S3ObjectStore,
                                                  tmp_path: Path) -> None:
    case = new_case(factory, "2026-0900")
    tiff = ingest(factory, s3_store, case, truncated_tiff(tmp_path / "scan.tif"))
    dot = ingest(factory, s3_store, case, one_pixel_png(tmp_path / "dot.png"))
    pdf = ingest(factory, s3_store, case, cyclic_pdf(tmp_path / "loop.pdf"))
    analyzers = registry.select(list(ANALYZERS))
    dispatcher = Dispatcher(settings, factory, s3_store, analyzers, runtime=LocalRuntime(),
                            actor_factory=lambda name: AnalyzerWorker(name, settings, analyzer=loaded[name]))
    step_until_settled(dispatcher, factory, timeout=300)

    # Each analyzer that cannot decode an item fails it once, with the decoder's reason, and does not retry.
    # (Where an analyzer checks the file itself, its own words explain; elsewhere the worker's mapping does.)
    expected = {(tiff, "media_probe"): "Missing dimensions", (tiff, "ocr"): "Missing dimensions",
                (tiff, "similarity"): "Missing dimensions", (pdf, "ocr"): "page 1 of 1 cannot be loaded"}
    for (evidence_id, analyzer), detail in expected.items():
        runs = runs_of(factory, evidence_id, analyzer)
        assert [run.status for run in runs] == ["failed"], (analyzer, [run.error for run in runs])
        assert detail in (runs[0].error or "") and "Error:" not in (runs[0].error or ""), runs[0].error
        [job] = jobs_of(factory, evidence_id, analyzer)
        assert (job.state, job.attempts) == ("failed", 1)  # not retried
    assert "the file could not be read as a PDF" in (runs_of(factory, pdf, "ocr")[0].error or "")
    # What the decoders can read is still analysed; the 1x1 PNG is tried once by every analyzer, never again.
    assert [run.status for run in runs_of(factory, dot, "media_probe")] == ["succeeded"]
    assert [run.status for run in runs_of(factory, pdf, "media_probe")] == ["succeeded"]
    for analyzer in ANALYZERS:
        assert [job.attempts for job in jobs_of(factory, dot, analyzer)] == [1], analyzer


def test_only_decoder_errors_are_bad_input(tmp_path: Path) -> None:
    def raised(action: object) -> BaseException:
        try:
            action()  # type: ignore[operator]
        except Exception as exc:
            return exc
        raise AssertionError("nothing was raised")

    def page_count(path: Path) -> int:
        with Image.open(path) as image:
            return int(image.n_frames)  # type: ignore[attr-defined]

    def second_page(path: Path) -> None:
        with Image.open(path) as image:
            image.seek(1)
            image.load()

    truncated = truncated_tiff(tmp_path / "cut.tif")
    for action, detail in ((lambda: page_count(truncated), "Missing dimensions (TypeError in "),
                           (lambda: second_page(truncated), "image file is truncated")):
        bad = as_bad_input(raised(action), "image/tiff")
        assert bad is not None and str(bad).startswith("the file could not be read as a TIFF image:")
        assert detail in str(bad)
    # The same exception types raised by our own code, or by the file system, are not the evidence's fault.
    assert as_bad_input(raised(lambda: json.loads("{")), "image/tiff") is None
    assert as_bad_input(raised(lambda: (tmp_path / "missing").read_bytes()), "image/png") is None
    assert as_bad_input(raised(lambda: int("x")), "application/pdf") is None
    assert as_bad_input(RuntimeError("connection reset"), "image/png") is None
    # OpenCV's assertions (a 1-pixel image scaled to nothing) are the evidence's too, wherever they are raised.
    cv_error = raised(lambda: cv2.resize(np.zeros((1, 1), np.uint8), None, fx=0.01, fy=0.01))
    bad = as_bad_input(cv_error, "image/png")
    assert bad is not None and "could not be read as a PNG image" in str(bad) and "(cv2.error)" in str(bad)
    assert describe("image/x-portable-pixmap") == "a PORTABLE-PIXMAP image" and describe("application/pdf") == "a PDF"
