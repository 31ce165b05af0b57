"""A structural check of a WSQ file's header, made before NBIS' decoder sees it.

NBIS' WSQ decoder (the `wsq` package's `_wsq` C module) frees its tables twice, and aborts the whole process,
when a file ends inside a table segment: measured, every cut of the real latent's file between bytes 12 and 65
(inside its transform table) crashes the interpreter. The segments up to the first block are therefore walked
here: every marker must be a WSQ marker and every segment must lie inside the file, the frame header first.
"""

from __future__ import annotations

SOI, SOF, SOB = 0xFFA0, 0xFFA2, 0xFFA3
_TABLES = {0xFFA4: "transform table", 0xFFA5: "quantisation table", 0xFFA6: "Huffman table",
           0xFFA7: "restart interval", 0xFFA8: "comment"}


def wsq_header_problem(data: bytes) -> str | None:
    """Why the header of a WSQ file is unusable (truncated or not WSQ), or None when it is whole."""
    if int.from_bytes(data[:2], "big") != SOI:
        return "it does not start with the WSQ start-of-image marker"
    pos, frame = 2, False
    while True:
        if pos + 4 > len(data):
            return f"it ends at byte {len(data):,}, inside its header"
        marker, length = int.from_bytes(data[pos:pos + 2], "big"), int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker not in _TABLES and marker not in (SOF, SOB):
            return f"byte {pos:,} holds 0x{marker:04X}, not a WSQ marker"
        if length < 2 or pos + 2 + length > len(data):
            name = _TABLES.get(marker, "frame header" if marker == SOF else "block header")
            return f"its {name} at byte {pos:,} runs past the end of the file"
        if marker == SOB:
            return None if frame else "a block comes before the frame header"
        frame = frame or marker == SOF
        pos += 2 + length
