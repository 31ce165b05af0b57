"""The evidence of the fault benchmark (`evaluation.bench_faults`) and its checks after recovery: nothing lost,
duplicated, half-written or left unfinished."""

from __future__ import annotations

import hashlib
import io
import random
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from evaluation.bench_ingest import BenchmarkError, source_photos
from locard.client import LocardClient
from storage.db import reading
from storage.jobs import LOSSES_KEY
from storage.tables import AnalysisRun, CustodyEvent, Evidence, EvidenceObject, Job

TERMINAL = ("succeeded", "failed")
WORDS = ("evidence", "custody", "witness", "statement", "vehicle", "plate", "receipt", "invoice", "Brussels",
         "Antwerpen", "Liège", "camera", "seized", "phone", "laptop", "report", "signature", "scene")


# -- the evidence --------------------------------------------------------------------------------------


@dataclass
class Upload:
    """One upload: its content, and what the API answered."""

    name: str
    data: bytes
    sha256: str
    duplicate_of: str | None = None  # the name of the upload whose content this one repeats
    evidence_id: str = ""
    created: bool | None = None
    retries: int = 0
    error: str = ""
    started: float = 0.0
    acknowledged_at: float = 0.0


def make_evidence(count: int, duplicates: int, seed: int = 9) -> list[Upload]:
    """`count` small files of distinct content (every fourth a 160-pixel JPEG crop of a real photo, the rest
    short text documents), then `duplicates` repeats of earlier ones, shuffled among them."""
    from PIL import Image

    rng = random.Random(seed)
    photos = []
    for path in source_photos():
        with Image.open(path) as opened:
            photos.append(opened.convert("RGB"))
    uploads: list[Upload] = []
    seen: set[str] = set()
    for index in range(count):
        if index % 4 == 0 and photos:
            photo = photos[index // 4 % len(photos)]
            for attempt in range(100):
                x = rng.randrange(max(1, photo.width - 320))
                y = rng.randrange(max(1, photo.height - 240))
                buffer = io.BytesIO()
                photo.crop((x, y, x + 320, y + 240)).resize((160, 120)).save(buffer, "JPEG", quality=85 - attempt % 20)
                data, name = buffer.getvalue(), f"{index:04d}-still.jpg"
                if hashlib.sha256(data).hexdigest() not in seen:
                    break
        else:
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(20, 80)))
            data, name = f"Locard fault benchmark, document {index}\n{words}\n".encode(), f"{index:04d}-note.txt"
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            raise BenchmarkError(f"generated content {index} is not distinct")
        seen.add(digest)
        uploads.append(Upload(name=name, data=data, sha256=digest))
    repeats = [Upload(name=f"again-{original.name}", data=original.data, sha256=original.sha256,
                      duplicate_of=original.name) for original in rng.sample(uploads, min(duplicates, count))]
    mixed = uploads + repeats
    rng.shuffle(mixed)
    return mixed


def wait_terminal(factory: Any, case_id: str, timeout: float) -> float:
    """Seconds until every job of the case's evidence is terminal (bounded by `timeout`)."""
    begun = time.monotonic()
    while time.monotonic() - begun < timeout:
        with reading(factory) as session:
            open_jobs = session.scalar(select(Job.id).join(Evidence, Evidence.id == Job.evidence_id).where(
                Evidence.case_id == case_id, Job.state.not_in(TERMINAL)).limit(1))
        if open_jobs is None:
            return time.monotonic() - begun
        time.sleep(0.5)
    return time.monotonic() - begun


def check(factory: Any, client: LocardClient, case_id: str, uploads: list[Upload]) -> dict[str, Any]:
    """The must-be-zero numbers, from the record store and the API, with the first offenders of each."""
    with reading(factory) as session:
        items = session.scalars(select(Evidence).where(Evidence.case_id == case_id)).all()
        ids = [item.id for item in items]
        custody = {(e, a) for e, a in session.execute(select(CustodyEvent.evidence_id, CustodyEvent.action)
                                                      .where(CustodyEvent.evidence_id.in_(ids)))}
        originals = set(session.scalars(select(EvidenceObject.evidence_id).where(
            EvidenceObject.evidence_id.in_(ids), EvidenceObject.outcome == "original")))
        jobs = session.scalars(select(Job).where(Job.evidence_id.in_(ids))).all()
        run_jobs = set(session.scalars(select(AnalysisRun.job_id).where(AnalysisRun.evidence_id.in_(ids))))
        runs = session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id.in_(ids))).all()
        orphan_objects = len(session.scalars(select(EvidenceObject.id).where(
            EvidenceObject.evidence_id.in_(ids), EvidenceObject.outcome == "duplicate")).all())
    by_sha: dict[str, list[str]] = {}
    for item in items:
        by_sha.setdefault(item.sha256, []).append(item.id)
    sha_of = {item.id: item.sha256 for item in items}
    acknowledged = [u for u in uploads if u.evidence_id]
    acks_by_sha: dict[str, set[str]] = {}
    for upload in acknowledged:
        acks_by_sha.setdefault(upload.sha256, set()).add(upload.evidence_id)
    duplicated = sorted({sha for sha, found in by_sha.items() if len(found) > 1}
                        | {sha for sha, acked in acks_by_sha.items() if len(acked) > 1})
    lost: list[str] = []
    for evidence_id in sorted({u.evidence_id for u in acknowledged}):
        expected = next(u.sha256 for u in acknowledged if u.evidence_id == evidence_id)
        if sha_of.get(evidence_id) != expected:
            lost.append(evidence_id)
            continue
        response = client.http.get(f"/evidence/{evidence_id}/content")
        if response.status_code != 200 or hashlib.sha256(response.content).hexdigest() != expected:
            lost.append(evidence_id)
    lost += [u.sha256 for u in uploads if u.sha256 not in by_sha and u.sha256 not in lost]
    jobs_of: dict[str, list[Job]] = {}
    for job in jobs:
        jobs_of.setdefault(str(job.evidence_id), []).append(job)
    half: list[str] = []
    not_terminal: list[str] = []
    for item in items:
        own = jobs_of.get(item.id, [])
        plan = [j for j in own if j.kind == "plan"]
        analysis = [j for j in own if j.kind == "analysis"]
        if any(j.state not in TERMINAL for j in own):
            not_terminal.append(item.id)
        if ((item.id, "received") not in custody or item.id not in originals or not plan
                or (all(j.state == "succeeded" for j in plan) and not analysis)
                or any(j.state in TERMINAL and j.id not in run_jobs for j in analysis)):
            half.append(item.id)
    failures = [{"evidence_id": r.evidence_id, "analyzer": r.analyzer, "attempt": r.attempt, "error": r.error}
                for r in runs if r.status == "failed"]
    return {
        "lost": len(lost), "duplicated": len(duplicated), "half_written": len(half),
        "not_terminal": len(not_terminal), "unacknowledged": sum(1 for u in uploads if not u.evidence_id),
        "offenders": {"lost": lost[:20], "duplicated": duplicated[:20], "half_written": half[:20],
                      "not_terminal": not_terminal[:20],
                      "unacknowledged": [f"{u.name}: {u.error}" for u in uploads if not u.evidence_id][:20]},
        "evidence_items": len(items), "distinct_contents": len({u.sha256 for u in uploads}),
        "orphan_objects_recorded_as_duplicates": orphan_objects,
        "jobs": len(jobs), "failed_jobs": sum(1 for j in jobs if j.state == "failed"),
        "jobs_requeued_after_worker_loss": sum(1 for j in jobs if int(j.payload.get(LOSSES_KEY, 0)) > 0),
        "runs": len(runs), "failed_runs": len(failures), "run_failures": failures[:20],
    }
