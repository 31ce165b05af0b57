"""Re-matching older evidence when a register record is added or changed: the queueing side (keyword-only access).

Cross-matching (`workers.crossmatch`) runs when an item's analysis ends, so it sees the registers as they were
then. A register record written later (a vehicle registered or given a new status, a person registered or
given a reference photo, a print enrolled in the tenprint gallery) must reach the older items it may match:
the storage write paths call `queue_rematch`, which adds ONE durable job of kind REMATCH naming the records
(`target_kind`, `target_ids`) and why (`reason`). Nothing is searched at write time, so a bulk import stays a
bulk write: one job per import batch, whatever its size. The job is run by `workers.rematch.rematch` (on a
matcher actor), which finds the older items that may now match and queues their cross-matching again.

The job is deduplicated on its payload: queueing the same records for the same reason twice adds one job. A
reason therefore names the change (e.g. "status:stolen:<updated_at>"), so a record changed again is re-matched
again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from sqlalchemy.orm import Session

from storage import jobs

REMATCH = "rematch"  # the job kind
TARGET_KINDS = ("vehicle", "person", "tenprint")  # a register vehicle, a person, a tenprint record


def rematch_payload(*, target_kind: str, target_ids: Sequence[str], reason: str) -> dict[str, object]:
    """The payload of a re-matching job: the records (sorted, each once) and the reason."""
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"{target_kind!r} is not one of {', '.join(TARGET_KINDS)}")
    return {"target_kind": target_kind, "target_ids": sorted(set(target_ids)), "reason": reason}


def queue_rematch(session: Session, *, target_kind: str, target_ids: Sequence[str], reason: str) -> bool:
    """Queue one job re-matching older evidence with these records (none when `target_ids` is empty); whether a
    job was newly queued (False: the same records for the same reason were queued already)."""
    payload = rematch_payload(target_kind=target_kind, target_ids=target_ids, reason=reason)
    if not payload["target_ids"]:
        return False
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
    _, new = jobs.enqueue(session, kind=REMATCH, dedupe_key=f"{REMATCH}:{target_kind}:{digest}", payload=payload)
    return new
