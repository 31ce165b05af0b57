"""The fault benchmark's evidence: distinct small files, and repeats of earlier ones on purpose."""

from __future__ import annotations

import hashlib
from collections import Counter

from evaluation.fault_checks import make_evidence


def test_evidence_is_distinct_apart_from_the_repeats() -> None:
    uploads = make_evidence(24, 5)
    assert len(uploads) == 29
    originals = [u for u in uploads if u.duplicate_of is None]
    repeats = [u for u in uploads if u.duplicate_of is not None]
    assert len({u.sha256 for u in originals}) == 24 and len(repeats) == 5
    assert all(hashlib.sha256(u.data).hexdigest() == u.sha256 for u in uploads)
    by_name = {u.name: u for u in originals}
    assert all(by_name[u.duplicate_of].sha256 == u.sha256 for u in repeats if u.duplicate_of)
    kinds = Counter(u.name.rsplit(".", 1)[1] for u in originals)
    assert kinds == {"jpg": 6, "txt": 18}
    assert all(u.data.startswith(b"\xff\xd8") and len(u.data) < 20_000 for u in originals if u.name.endswith(".jpg"))
    assert make_evidence(24, 5)[0].sha256 == uploads[0].sha256  # seeded: the same files every run
