"""A WSQ file cut inside its header is refused before NBIS' decoder sees it (which aborts the process on it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from models.wsq import wsq_header_problem
from tests.fingerprint_samples import real_latent_wsq


def test_every_cut_of_a_real_print_is_refused_or_decoded_without_crashing() -> None:
    script = textwrap.dedent("""
        from models.fingerprints import FingerprintRejected, decode_fingerprint
        from tests.fingerprint_samples import real_latent_wsq
        data = real_latent_wsq()
        refused = 0
        for cut in range(16, 800):
            try:
                decode_fingerprint(data[:cut])
            except FingerprintRejected:
                refused += 1
        print(refused)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-500:]  # before the check: "double free detected", SIGABRT
    assert int(result.stdout.strip()) == 784


def test_the_header_check() -> None:
    data = real_latent_wsq()
    assert wsq_header_problem(data) is None
    assert "transform table" in (wsq_header_problem(data[:40]) or "")
    assert "start-of-image" in (wsq_header_problem(b"\xff\xd8\xff" + data[3:]) or "")
    assert "not a WSQ marker" in (wsq_header_problem(data[:2] + b"\x12\x34" + data[4:]) or "")
