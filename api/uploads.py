"""Streaming multipart upload: the file part goes to a spool file, hashed as it arrives, never held in memory.

The limits are enforced while streaming: an oversized file is refused after at most `limit` bytes, text fields
by their number and total size, part headers by their size. A body that does not end with its closing boundary
(truncated) is refused, and its spool file removed.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from api.limits import BodyRefused
from api.problems import Problem

MAX_PART_HEADER_BYTES = 16 * 1024


@dataclass
class SpooledUpload:
    """An uploaded file on local disk, with the SHA-256 and size computed while it streamed in."""

    path: Path
    filename: str | None
    content_type: str | None
    sha256: str
    size: int
    fields: dict[str, str] = field(default_factory=dict)


class _PartCollector:
    """Multipart parser callbacks that write the `file` part to disk and keep small text fields."""

    def __init__(self, dest: Path, limit: int, *, max_fields: int, max_field_bytes: int) -> None:
        self.dest = dest
        self.limit = limit
        self.max_fields = max_fields
        self.max_field_bytes = max_field_bytes
        self.fields_seen = 0
        self.field_bytes = 0
        self._header_bytes = 0
        self.out = dest.open("wb")
        self.digest = hashlib.sha256()
        self.size = 0
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.content_type: str | None = None
        self.files_seen = 0
        self._headers: dict[bytes, bytes] = {}
        self._field = b""
        self._value = b""
        self._name = ""
        self._is_file = False
        self._text = bytearray()

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self.part_begin, "on_header_field": self.header_field,
                "on_header_value": self.header_value, "on_header_end": self.header_end,
                "on_headers_finished": self.headers_finished, "on_part_data": self.part_data,
                "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self._headers, self._field, self._value, self._text = {}, b"", b"", bytearray()
        self._header_bytes = 0

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_PART_HEADER_BYTES:
            raise Problem(400, "Part headers too large", f"A part's headers are over {MAX_PART_HEADER_BYTES} bytes.")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        self._is_file = self._name == "file"
        if self._is_file:
            self.files_seen += 1
            if self.files_seen > 1:
                raise Problem(400, "One file per upload", "Send exactly one part named 'file'.")
            raw_name = options.get(b"filename")
            self.filename = raw_name.decode("utf-8", "replace") if raw_name is not None else None
            ctype = self._headers.get(b"content-type")
            self.content_type = ctype.decode("latin-1") if ctype else None
        else:
            self.fields_seen += 1
            if self.fields_seen > self.max_fields:
                raise Problem(413, "Too many form fields",
                              f"An upload carries at most {self.max_fields} text fields besides 'file'.")

    def part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._is_file:
            self.size += len(chunk)
            if self.size > self.limit:
                raise Problem(413, "Upload too large",
                              f"The file is larger than the limit of {self.limit} bytes; "
                              "use a presigned upload for large evidence.")
            self.digest.update(chunk)
            self.out.write(chunk)
        else:
            self._text += chunk
            self.field_bytes += len(chunk)
            if self.field_bytes > self.max_field_bytes:
                raise Problem(413, "Form fields too large",
                              f"The upload's text fields hold more than {self.max_field_bytes} bytes in all.")

    def part_end(self) -> None:
        if not self._is_file and self._name:
            self.fields[self._name] = self._text.decode("utf-8", "replace")


async def receive_upload(request: Request, *, limit: int, workdir: Path | None = None, max_fields: int = 16,
                         max_field_bytes: int = 64 * 1024) -> SpooledUpload:
    """Stream a `multipart/form-data` request with one `file` part to a spool file in `workdir`."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise Problem(415, "Multipart upload expected",
                      "Send the evidence as multipart/form-data with a part named 'file'.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 1024 * 1024:
        raise Problem(413, "Upload too large", f"The request is larger than the limit of {limit} bytes.")
    handle = tempfile.NamedTemporaryFile(prefix="locard-upload-", dir=workdir, delete=False)  # noqa: SIM115
    handle.close()
    dest = Path(handle.name)
    collector = _PartCollector(dest, limit, max_fields=max_fields, max_field_bytes=max_field_bytes)
    parser = MultipartParser(options[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
        if parser.state != MultipartState.END:
            raise Problem(400, "Incomplete multipart body",
                          "The body ended before its closing boundary (it was cut short); nothing was stored.")
    except (Problem, BodyRefused):
        collector.out.close()
        dest.unlink(missing_ok=True)
        raise
    except Exception as exc:
        collector.out.close()
        dest.unlink(missing_ok=True)
        raise Problem(400, "Malformed multipart body", str(exc)[:300]) from exc
    collector.out.close()
    if collector.files_seen == 0:
        dest.unlink(missing_ok=True)
        raise Problem(422, "No file", "The upload has no part named 'file'.")
    if collector.size == 0:
        dest.unlink(missing_ok=True)
        raise Problem(422, "Empty file", "The uploaded file is empty (0 bytes); there is nothing to record.")
    return SpooledUpload(dest, collector.filename, collector.content_type, collector.digest.hexdigest(),
                         collector.size, collector.fields)
