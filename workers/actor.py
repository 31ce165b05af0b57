"""The analyzer actor: one per analyzer (or a pool), loading its models once in `__init__`."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import socket
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from storage.analysis import RunOutcome
from storage.objectstore import IntegrityError, ObjectStoreError, S3ObjectStore
from storage.settings import Settings
from workers.analyzers import registry
from workers.analyzers.base import AnalysisFailed, AnalysisLimits, Analyzer, EvidenceFile, FindingData


class AnalyzerWorker:
    """Runs one analyzer on evidence items fetched (and verified) from the object store."""

    def __init__(self, analyzer_name: str, settings: Settings) -> None:
        self.settings = settings
        self.analyzer: Analyzer = registry.select([analyzer_name])[analyzer_name]()
        self.analyzer.load()
        self.store = S3ObjectStore.from_settings(settings)
        self.limits = AnalysisLimits(max_image_pixels=settings.max_image_pixels)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{analyzer_name}"

    def ping(self) -> str:
        return self.identity

    def run(self, evidence: dict[str, Any]) -> dict[str, Any]:
        """Analyse one evidence item; always returns a RunOutcome (as a dict), never raises."""
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        analyzer = self.analyzer
        outcome = RunOutcome(analyzer=analyzer.name, analyzer_version=analyzer.version, status="failed",
                             worker=self.identity, started_at=started)
        try:
            outcome.models = analyzer.provenance()
            with tempfile.TemporaryDirectory(prefix="locard-") as tmp:
                item = self._fetch(evidence, Path(tmp))
                findings = analyzer.analyze(item, self.limits)
                outcome.findings = [self._store_artifacts(evidence["id"], finding) for finding in findings]
            outcome.status = "succeeded"
        except AnalysisFailed as exc:
            outcome.error = str(exc)
        except IntegrityError as exc:
            outcome.error = f"integrity check failed: {exc}"
        except ObjectStoreError as exc:
            outcome.error = f"object store: {exc}"
            outcome.retryable = True
        except MemoryError:
            outcome.error = "the analyzer ran out of memory on this item"
        except Exception as exc:
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
            outcome.error = f"{type(exc).__name__}: {exc}{where}"
            outcome.retryable = True
        outcome.finished_at = dt.datetime.now(dt.UTC)
        outcome.duration_ms = round((time.perf_counter() - clock) * 1000, 2)
        return asdict(outcome)

    def _fetch(self, evidence: dict[str, Any], workdir: Path) -> EvidenceFile:
        path = workdir / "evidence"
        self.store.download(evidence["bucket"], evidence["object_key"], evidence["version_id"] or "", path,
                            expected_sha256=evidence["sha256"])
        return EvidenceFile(evidence_id=evidence["id"], path=path, sha256=evidence["sha256"],
                            size=path.stat().st_size, media_type=evidence["media_type"],
                            filename=evidence.get("original_filename"), upstream=evidence.get("upstream") or {},
                            declared_kind=evidence.get("declared_kind"), declared_ppi=evidence.get("declared_ppi"))

    def _store_artifacts(self, evidence_id: str, finding: FindingData) -> dict[str, Any]:
        data = dict(finding.data)
        if finding.artifacts:
            stored = []
            for artifact in finding.artifacts:
                key = f"evidence/{evidence_id}/{self.analyzer.name}/{artifact.name}"
                obj = self.store.put_derived(key, artifact.data, content_type=artifact.content_type)
                stored.append({"name": artifact.name, "bucket": obj.bucket, "key": obj.key,
                               "version_id": obj.version_id, "size": obj.size,
                               "sha256": hashlib.sha256(artifact.data).hexdigest(),
                               "content_type": artifact.content_type})
            data["artifacts"] = stored
        return {"kind": finding.kind, "label": finding.label, "confidence": finding.confidence, "data": data}
