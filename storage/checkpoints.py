"""Signed checkpoints of the audit and custody chain heads, kept where the record store's users cannot rewrite them.

The HMAC chains (`storage.audit`) show any edit, insertion or reordering, but not what someone with full database
rights can do without the key: delete the newest rows and rewind `chain_heads`, delete everything, or restore an
older backup. A checkpoint fixes a chain's end outside the database:

    {"format", "chain", "sequence", "last_id", "last_hash", "unchained", "at", "signature"}

`signature` is HMAC-SHA256 over the canonical JSON of the other fields, under a key derived from the audit key
with its own label (HMAC(audit key, "locard audit checkpoint v1")), so no chain entry can pass for a checkpoint.
`unchained` is the chain's origin (`chain_origins`), so moving the origin to excuse stripped hashes shows too.

Where they are kept (`CheckpointSink`):
* `BucketCheckpoints`: one object per checkpoint in a bucket of their own (`LOCARD_CHECKPOINT_BUCKET`, not the
  evidence bucket, whose sweep would take them for evidence), written under COMPLIANCE retention: no one can
  delete or overwrite a version. Keys count down (`checkpoints/<chain>/<10^12-1-sequence>-<sequence>.json`), so
  the newest is the first a listing returns and is found in one request. A PUT to an existing key only adds a
  version; every version of the newest key is read and must be genuine.
* `FileCheckpoints`: a JSON line per checkpoint appended to a file the operator keeps (`LOCARD_CHECKPOINT_FILE`);
  it is read backwards to the chain's newest line, and every line read must be genuine.

Writing (`checkpoint`): the worker service every `LOCARD_CHECKPOINT_INTERVAL_SECONDS` (for chains whose head moved)
and `locard audit checkpoint`. A new checkpoint only extends a verified chain: the entries after the newest
checkpoint are verified first (so this is cheap), and a broken chain is not checkpointed. A forged or unreadable
newest checkpoint stops checkpointing as well: it is reported, never written over.

Verification (`verify`): every chain is walked against the newest checkpoint of every sink: each must be genuine
(else the chain is reported as refused), the chain must hold the checkpointed entry with exactly that hash, and
must not end before it. What happens after the newest checkpoint (rows deleted within one interval) is not
covered; nor is an attacker who holds the audit key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from storage import audit
from storage.db import reading
from storage.objectstore import ObjectVersion, StoredObject
from storage.settings import Settings

log = logging.getLogger("locard.checkpoints")

FORMAT = "locard-checkpoint/1"
LABEL = b"locard audit checkpoint v1"
MAX_BYTES = 4096  # a checkpoint is a few hundred bytes
SEQUENCE_SPAN = 10**12
_FIELDS = {"format", "chain", "sequence", "last_id", "last_hash", "unchained", "at", "signature"}


class CheckpointError(Exception):
    """Checkpoints could not be read or written."""


class ForgedCheckpoint(CheckpointError):
    """A checkpoint that is not genuine: unreadable, malformed, or signed without the audit key."""


class ChainBroken(CheckpointError):
    """The chain failed verification, so it was not checkpointed."""

    def __init__(self, result: audit.VerifyResult) -> None:
        super().__init__(f"the {result.chain} chain is broken at entry {result.first_bad_id}: {result.reason}")
        self.result = result


def signing_key(chain_key: bytes) -> bytes:
    """The checkpoint key: derived from the audit key with a label of its own."""
    return hmac.new(chain_key, LABEL, hashlib.sha256).digest()


@dataclass(frozen=True)
class Checkpoint:
    """One chain's end at one moment: entry `last_id` with hash `last_hash`."""

    chain: str
    sequence: int
    last_id: int
    last_hash: str
    unchained: int
    at: dt.datetime

    def _payload(self) -> dict[str, object]:
        return {"format": FORMAT, "chain": self.chain, "sequence": self.sequence, "last_id": self.last_id,
                "last_hash": self.last_hash, "unchained": self.unchained,
                "at": self.at.astimezone(dt.UTC).isoformat(timespec="microseconds")}

    def signature(self, chain_key: bytes) -> str:
        message = json.dumps(self._payload(), sort_keys=True, separators=(",", ":")).encode()
        return hmac.new(signing_key(chain_key), message, hashlib.sha256).hexdigest()

    def to_bytes(self, chain_key: bytes) -> bytes:
        record = {**self._payload(), "signature": self.signature(chain_key)}
        return json.dumps(record, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, data: bytes, chain_key: bytes, where: str) -> Checkpoint:
        """The checkpoint in `data`; ForgedCheckpoint unless it is well formed and its signature verifies."""
        try:
            record = json.loads(data)
            if not isinstance(record, dict) or set(record) != _FIELDS or record["format"] != FORMAT:
                raise ValueError("not a Locard checkpoint")
            ints = [record[name] for name in ("sequence", "last_id", "unchained")]
            if any(type(value) is not int or value < 0 for value in ints):
                raise ValueError("malformed numbers")
            found = cls(str(record["chain"]), ints[0], ints[1], str(record["last_hash"]), ints[2],
                        dt.datetime.fromisoformat(str(record["at"])))
        except (ValueError, TypeError) as exc:
            raise ForgedCheckpoint(f"{where} is not a checkpoint ({exc}): refused") from None
        if found.at.tzinfo is None or found.chain not in audit.CHAINS:
            raise ForgedCheckpoint(f"{where} is not a checkpoint (chain or time): refused")
        if not hmac.compare_digest(found.signature(chain_key), str(record["signature"])):
            raise ForgedCheckpoint(f"{where}: its signature does not verify (forged, or another key): refused")
        return found


@dataclass(frozen=True)
class Located:
    """A genuine checkpoint and where it was read."""

    checkpoint: Checkpoint
    location: str

    def anchor(self) -> audit.Anchor:
        cp = self.checkpoint
        name = f"checkpoint {cp.sequence} of {cp.at.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ} ({self.location})"
        return audit.Anchor(name, cp.last_id, cp.last_hash, cp.unchained)


class CheckpointSink(Protocol):
    """Somewhere checkpoints are kept."""

    def newest(self, chain: str, chain_key: bytes) -> list[Located]: ...

    def write(self, checkpoint: Checkpoint, chain_key: bytes) -> str: ...


@runtime_checkable
class LockedObjectStore(Protocol):
    """What `BucketCheckpoints` needs of an object store (`S3ObjectStore` has it)."""

    def ensure_locked_bucket(self, bucket: str) -> None: ...

    def bucket_exists(self, bucket: str) -> bool: ...

    def put_locked(self, bucket: str, key: str, data: bytes, *, content_type: str) -> StoredObject: ...

    def read_bytes(self, bucket: str, key: str, version_id: str, *, max_bytes: int) -> bytes: ...

    def list_versions(self, bucket: str, prefix: str = "") -> Iterator[ObjectVersion]: ...


class BucketCheckpoints:
    """Checkpoints as write-once objects under COMPLIANCE retention in a locked bucket."""

    def __init__(self, store: LockedObjectStore, bucket: str, prefix: str = "checkpoints") -> None:
        self.store = store
        self.bucket = bucket
        self.prefix = prefix

    def ensure(self) -> None:
        self.store.ensure_locked_bucket(self.bucket)

    def key(self, checkpoint: Checkpoint) -> str:
        countdown = SEQUENCE_SPAN - 1 - checkpoint.sequence
        return f"{self.prefix}/{checkpoint.chain}/{countdown:012d}-{checkpoint.sequence}.json"

    def newest(self, chain: str, chain_key: bytes) -> list[Located]:
        """Every version of the first-listed (newest) key; ForgedCheckpoint if any is not genuine."""
        if not self.store.bucket_exists(self.bucket):
            return []  # none written yet (a bucket holding locked objects cannot be deleted)
        first: list[ObjectVersion] = []
        for version in self.store.list_versions(self.bucket, f"{self.prefix}/{chain}/"):
            if first and version.key != first[0].key:
                break
            first.append(version)
        found = []
        for version in first:
            where = f"s3://{self.bucket}/{version.key}?versionId={version.version_id}"
            data = self.store.read_bytes(self.bucket, version.key, version.version_id, max_bytes=MAX_BYTES)
            checkpoint = Checkpoint.parse(data, chain_key, where)
            if checkpoint.chain != chain or self.key(checkpoint) != version.key:
                raise ForgedCheckpoint(f"{where} holds a checkpoint of another chain or sequence: refused")
            found.append(Located(checkpoint, where))
        return found

    def write(self, checkpoint: Checkpoint, chain_key: bytes) -> str:
        stored = self.store.put_locked(self.bucket, self.key(checkpoint), checkpoint.to_bytes(chain_key),
                                       content_type="application/json")
        return f"s3://{stored.bucket}/{stored.key}?versionId={stored.version_id}"


class FileCheckpoints:
    """Checkpoints as JSON lines appended to a file the operator keeps."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines_backwards(self, block: int = 65536) -> Iterator[bytes]:
        with self.path.open("rb") as handle:
            position = handle.seek(0, os.SEEK_END)
            rest = b""
            while position > 0:
                step = min(block, position)
                position -= step
                handle.seek(position)
                lines = (handle.read(step) + rest).split(b"\n")
                rest = lines.pop(0)
                if len(rest) > MAX_BYTES + block:
                    raise ForgedCheckpoint(f"{self.path} holds a line far longer than a checkpoint: refused")
                yield from reversed(lines)
            yield rest

    def newest(self, chain: str, chain_key: bytes) -> list[Located]:
        """The chain's last line; every line after it (and it) must be a genuine checkpoint."""
        if not self.path.exists():
            return []
        lines = (line for line in self._lines_backwards() if line.strip())
        for number, line in enumerate(lines, start=1):
            checkpoint = Checkpoint.parse(line, chain_key, f"{self.path} (line {number} from the end)")
            if checkpoint.chain == chain:
                return [Located(checkpoint, str(self.path))]
        return []

    def write(self, checkpoint: Checkpoint, chain_key: bytes) -> str:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as handle:
            handle.write(checkpoint.to_bytes(chain_key) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        return str(self.path)


def sinks_for(settings: Settings, store: object | None, *, create: bool = False) -> list[CheckpointSink]:
    """The configured sinks: the checkpoint bucket when `store` can lock objects, and the operator's file."""
    sinks: list[CheckpointSink] = []
    if isinstance(store, LockedObjectStore):
        bucket = BucketCheckpoints(store, settings.checkpoint_bucket)
        if create:
            bucket.ensure()
        sinks.append(bucket)
    if settings.checkpoint_file is not None:
        sinks.append(FileCheckpoints(settings.checkpoint_file.expanduser()))
    return sinks


def _newest(sinks: Sequence[CheckpointSink], chain: str, chain_key: bytes) -> list[list[Located]]:
    """Each sink's newest checkpoints of `chain`; CheckpointError when one is forged or cannot be read."""
    found = []
    for sink in sinks:
        try:
            found.append(sink.newest(chain, chain_key))
        except CheckpointError:
            raise
        except Exception as exc:  # the object store or the file is unreachable: never taken for "no checkpoint"
            raise CheckpointError(f"the checkpoints cannot be read ({type(exc).__name__}: {exc})") from exc
    return found


def checkpoint(session: Session, *, chain_key: bytes, sinks: Sequence[CheckpointSink],
               only_if_moved: bool = False) -> list[Checkpoint]:
    """Verify each chain past its newest checkpoint, then write a checkpoint of its end to every sink."""
    if not sinks:
        raise CheckpointError("no checkpoint store is configured (an object store with object lock, or "
                              "LOCARD_CHECKPOINT_FILE)")
    written = []
    for chain in audit.CHAINS:
        per_sink = _newest(sinks, chain, chain_key)
        found = [located for newest in per_sink for located in newest]
        resume = max(found, key=lambda located: located.checkpoint.last_id).anchor() if found else None
        walked = audit.walk(session, chain=chain, key=chain_key, anchors=[f.anchor() for f in found], resume=resume)
        if not walked.result.ok:
            raise ChainBroken(walked.result)
        if only_if_moved and all(newest and max(n.checkpoint.last_id for n in newest) == walked.last_id
                                 for newest in per_sink):
            continue
        sequence = max((located.checkpoint.sequence for located in found), default=0) + 1
        made = Checkpoint(chain, sequence, walked.last_id, walked.last_hash, walked.origin, dt.datetime.now(dt.UTC))
        for sink in sinks:
            sink.write(made, chain_key)
        written.append(made)
    return written


def verify(session: Session, *, chain_key: bytes, sinks: Sequence[CheckpointSink],
           batch_size: int = audit.VERIFY_BATCH) -> list[audit.VerifyResult]:
    """`audit.verify` of both chains against the newest checkpoint of every sink (refused if one is forged)."""
    results = []
    for chain in audit.CHAINS:
        try:
            found = [located for newest in _newest(sinks, chain, chain_key) for located in newest]
        except CheckpointError as exc:
            results.append(audit.VerifyResult(chain, False, 0, 0, None, str(exc)))
            continue
        results.append(audit.verify(session, chain=chain, key=chain_key, batch_size=batch_size,
                                    anchors=[located.anchor() for located in found]))
    return results


def run_periodically(factory: sessionmaker[Session], *, chain_key: bytes, sinks: Sequence[CheckpointSink],
                     interval: float, stop: threading.Event) -> None:
    """Checkpoint the chains whose heads moved, every `interval` seconds until `stop` is set."""
    while not stop.is_set():
        try:
            with reading(factory) as session:
                for made in checkpoint(session, chain_key=chain_key, sinks=sinks, only_if_moved=True):
                    log.info("checkpoint %d of the %s chain at entry %d", made.sequence, made.chain, made.last_id)
        except CheckpointError as exc:
            log.error("no checkpoint written: %s", exc)
        except Exception:  # a database or object-store outage must not end the loop
            log.exception("checkpointing failed; retrying in %.0f s", interval)
        stop.wait(interval)


def start_periodic(settings: Settings, factory: sessionmaker[Session], store: object,
                   stop: threading.Event) -> threading.Thread:
    """Run `run_periodically` on a daemon thread with the configured sinks (the bucket is created if needed)."""
    sinks = sinks_for(settings, store, create=True)
    thread = threading.Thread(target=run_periodically, name="locard-checkpoints", daemon=True,
                              kwargs={"factory": factory, "chain_key": settings.chain_key, "sinks": sinks,
                                      "interval": settings.checkpoint_interval_seconds, "stop": stop})
    thread.start()
    return thread
