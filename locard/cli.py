"""`locard`: start and stop the embedded stack, run the demo, analyse your own files.

    locard up        start SeaweedFS, the record store, the workers (local Ray) and the API
    locard demo      ingest sample evidence that ships inside installed packages, print the findings
    locard analyze   the same for your own files
    locard status    what is running
    locard users     manage accounts in the record store (the first administrator: `locard users add`)
    locard import    bulk import into the persons or vehicle register (CSV, JSON Lines)
    locard report    reports as JSON (`locard report calibration`: examiners' verdicts per matcher setting)
    locard down      stop every process of this home
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import sys
import uuid
from pathlib import Path

from locard import calibration, imports, users
from locard.client import ApiError, LocardClient
from locard.report import summarise
from locard.stack import EmbeddedStack, StackError, StackState, with_stack_identity
from storage import checkpoints
from storage.db import make_engine, reading, session_factory
from storage.objectstore import ObjectStoreError, S3ObjectStore
from storage.settings import Settings, get_settings


def say(message: str) -> None:
    print(message, flush=True)


def sample_evidence() -> list[Path]:
    """Real evidence that ships inside installed packages: photos (ultralytics assets, scikit-image data), a
    scanned page of text (scikit-image) and a latent fingerprint in WSQ (the `wsq` package's test file)."""
    import skimage.data
    import ultralytics
    import wsq

    assets = Path(ultralytics.__file__).parent / "assets"
    data = Path(skimage.data.data_dir)
    candidates = [assets / "bus.jpg", assets / "zidane.jpg", data / "astronaut.png", data / "coffee.png",
                  data / "rocket.jpg", data / "multipage.tif", data / "no_time_for_that_tiny.gif",
                  data / "page.png", Path(wsq.__file__).parent / "tests" / "test.wsq"]
    return [path for path in candidates if path.exists()]


def _client(settings: Settings) -> tuple[LocardClient, StackState]:
    state = StackState.load(settings.home.expanduser().resolve())
    if state is None or not state.pids:
        raise StackError("Locard is not running here; start it with `locard up`")
    if not state.operator_password:
        raise StackError("this stack predates accounts; restart it with `locard down` and `locard up`")
    return LocardClient(state.api_url, username=state.operator, password=state.operator_password), state


def analyse_files(settings: Settings, paths: list[Path], *, case_reference: str, title: str,
                  also_direct: Path | None = None) -> int:
    """Upload files through the API (and optionally one straight into the bucket), wait, print findings."""
    client, _state = _client(settings)
    case = client.ensure_case(case_reference, title)
    say(f"Case {case['reference']} ({case['id']})")
    ids: list[str] = []
    for path in paths:
        result = client.upload(case["id"], path)
        verb = "uploaded" if result["created"] else "already held"
        say(f"  {verb}: {path.name} → evidence {result['evidence']['id']}")
        ids.append(result["evidence"]["id"])
    if also_direct is not None:
        ids.append(_direct_upload(settings, case, also_direct, client))
    say("Waiting for analysis ...")
    statuses = client.wait_analysed(sorted(set(ids)))
    say("")
    for evidence_id in sorted(set(ids), key=ids.index):
        say(summarise(client.evidence(evidence_id), statuses[evidence_id], client.findings(evidence_id)))
    failed = sum(1 for s in statuses.values() for r in s["runs"] if r["status"] == "failed")
    say(f"\n{len(set(ids))} item(s) analysed; {failed} failed analyzer run(s). API: {client.http.base_url}")
    return 0


def _direct_upload(settings: Settings, case: dict[str, str], path: Path, client: LocardClient) -> str:
    """Write a file straight into the evidence bucket with an S3 client, then wait for intake to find it."""
    import time

    from minio import Minio

    stack = EmbeddedStack(settings)
    config = stack.seaweed.config
    s3 = Minio(config.s3_endpoint, access_key=config.access_key, secret_key=config.secret_key, secure=False)
    key = f"cases/{case['reference']}/direct/{uuid.uuid4().hex[:8]}-{path.name}"
    data = path.read_bytes()
    s3.put_object(settings.evidence_bucket, key, io.BytesIO(data), len(data))
    say(f"  written straight into the bucket with an S3 client: {key}")
    sha256 = hashlib.sha256(data).hexdigest()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for item in client.case_evidence(case["id"]):
            if item["sha256"] != sha256:
                continue
            custody = client.evidence(item["id"])["custody"]
            if any(key in json.dumps(event["detail"]) for event in custody):
                held = "" if item["object_key"] == key else " (same content already held: recorded as a duplicate)"
                say(f"  picked up by intake without any API call → evidence {item['id']}{held}")
                return str(item["id"])
        time.sleep(0.5)
    raise ApiError(f"{key} was not picked up by intake within 120s")


def verify_chains(settings: Settings) -> int:
    """Recompute the HMAC chains of the audit log and the chain of custody, each against its newest signed
    checkpoint (`storage.checkpoints`); 1 when either is broken or a checkpoint is refused.

    The key is LOCARD_AUDIT_KEY, or the embedded stack's own (in its stack.json) when that is not set.
    """
    settings = with_stack_identity(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        sinks = checkpoints.sinks_for(settings, S3ObjectStore.from_settings(settings))
        with reading(session_factory(engine, chain_key=settings.chain_key)) as session:
            results = checkpoints.verify(session, chain_key=settings.chain_key, sinks=sinks)
    finally:
        engine.dispose()
    for result in results:
        verdict = "intact" if result.ok else f"BROKEN at entry {result.first_bad_id}: {result.reason}"
        unchained = f", {result.unchained} earlier entries not chained" if result.unchained else ""
        anchored = f"; against {result.checkpoint}" if result.checkpoint else "; no checkpoint yet"
        say(f"  {result.chain:8s} {result.checked} entries checked{unchained}: {verdict}{anchored}")
    return 0 if all(result.ok for result in results) else 1


def write_checkpoints(settings: Settings) -> int:
    """Verify both chains past their newest checkpoints and write a signed checkpoint of each; 1 if refused."""
    settings = with_stack_identity(settings)
    engine = make_engine(settings.effective_database_url)
    try:
        sinks = checkpoints.sinks_for(settings, S3ObjectStore.from_settings(settings), create=True)
        with reading(session_factory(engine, chain_key=settings.chain_key)) as session:
            written = checkpoints.checkpoint(session, chain_key=settings.chain_key, sinks=sinks)
    except (checkpoints.CheckpointError, ObjectStoreError) as exc:
        say(f"  no checkpoint written: {exc}")
        return 1
    finally:
        engine.dispose()
    for made in written:
        say(f"  {made.chain:8s} checkpoint {made.sequence} at entry {made.last_id} ({made.last_hash[:16]}...)")
    return 0


def show_status(stack: EmbeddedStack) -> None:
    """Each component with its main process, and any process of this home that belongs to none."""
    status = stack.status()
    for component in status.components:
        if not component.running:
            say(f"  {component.name:10s} stopped")
            continue
        extra = f", {component.processes} processes" if component.processes > 1 else ""
        lost = "; not in stack.json: `locard up` adopts it" if not component.recorded else ""
        say(f"  {component.name:10s} running (pid {component.pid}{extra}{lost})")
    for stray in status.strays:
        say(f"  stray      pid {stray.pid} ({stray.role or 'seaweedfs'}): {stray.describe()}")
    if status.strays:
        say("  `locard up` or `locard down` stops the strays.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="locard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the embedded stack")
    sub.add_parser("down", help="stop the embedded stack")
    sub.add_parser("status", help="show what is running")
    sub.add_parser("demo", help="analyse sample evidence that ships inside installed packages")
    analyze = sub.add_parser("analyze", help="analyse your own files")
    analyze.add_argument("paths", nargs="+", type=Path)
    analyze.add_argument("--case", default=None, help="case reference (default: one per day)")
    audit_parser = sub.add_parser("audit", help="verify the audit log and the chain of custody, or checkpoint them")
    audit_parser.add_argument("action", choices=["verify", "checkpoint"])
    users.add_parser(sub)
    imports.add_parser(sub)
    calibration.add_parser(sub)
    args = parser.parse_args(argv)
    settings = get_settings()
    stack = EmbeddedStack(settings)
    try:
        if args.command == "up":
            state = stack.up(say)
            say(f"Locard is up: {state.api_url}  (API docs: {state.api_url}/docs; logs: {stack.logs})")
        elif args.command == "down":
            stack.down(say)
            say("Locard is down.")
        elif args.command == "status":
            show_status(stack)
        elif args.command == "demo":
            samples = sample_evidence()
            return analyse_files(settings, samples[1:], case_reference="DEMO", title="Locard demonstration case",
                                 also_direct=samples[0])
        elif args.command == "analyze":
            missing = [str(p) for p in args.paths if not p.is_file()]
            if missing:
                say(f"not a file: {', '.join(missing)}")
                return 2
            reference = args.case or f"ANALYZE-{dt.date.today():%Y%m%d}"
            return analyse_files(settings, args.paths, case_reference=reference, title="Files analysed from the CLI")
        elif args.command == "users":
            return users.run(args, settings, say)
        elif args.command == "import":
            return imports.run(args, settings, say)
        elif args.command == "report":
            return calibration.run(args, settings, say)
        elif args.command == "audit":
            return verify_chains(settings) if args.action == "verify" else write_checkpoints(settings)
    except (StackError, ApiError) as exc:
        say(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
