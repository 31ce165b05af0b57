"""Fault-injection benchmark: uploads at concurrency 20 while an analyzer actor, the object store and the API fail.

    python -m evaluation.bench_faults [--files N] [--duplicates D] [--stall-seconds S] [--short] [--out PATH]

It starts its own embedded stack in a fresh temporary `LOCARD_HOME` (as `bench_ingest` does) and uploads N
generated small evidence files of distinct content (small JPEG crops of real photos, and text documents), plus
D uploads that repeat earlier content on purpose, through the API with 20 concurrent uploaders, in bursts of
up to 20 that the fault schedule releases:

1. the first burst goes, and one analyzer actor process (`ray::AnalyzerWorker`, a busy one when there is one)
   is SIGKILLed;
2. the object store is stalled: SeaweedFS gets SIGSTOP, the second burst is sent into it, and SIGCONT comes
   after S seconds (default 30);
3. the third burst goes and, with uploads in flight, the API is SIGKILLed once; `EmbeddedStack.up` restarts
   it (and only it);
4. the remaining bursts follow, one every two seconds.

An upload that fails meanwhile (refused connection, timeout, 502/503/504) is retried with the same content:
within a case the same content is one evidence item, so a retry is safe. Once every fault is over, the
benchmark waits (bounded) until every job of the case is terminal, then checks, from the record store and by
downloading every item through the API (its SHA-256 checked):

* lost: an acknowledged upload with no evidence item, or whose object is missing or does not match;
* duplicated: more than one evidence item for one content in the case, or acknowledgements of one content
  that name different items;
* half-written: an item without its `received` custody entry, its original object record, its plan job, or
  with a finished analysis job that has no run;
* not terminal: an item whose plan or analysis jobs are still queued or running after recovery;
* unacknowledged: an upload still failing when its retries ran out.

All five must be 0; the exit status is 1 otherwise. The results (JSON) go to `evaluation/results/bench_faults.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from evaluation.bench_ingest import BenchmarkError
from evaluation.common import RESULTS, describe, locard_commit, machine_info
from evaluation.fault_checks import Upload, check, make_evidence, wait_terminal
from evaluation.private_stack import private_stack
from locard import processes
from locard.client import ApiError, LocardClient
from locard.stack import EmbeddedStack, StackError, StackState
from storage.db import make_engine, session_factory
from storage.settings import Settings

DEFAULT_OUT = RESULTS / "bench_faults.json"
CONCURRENCY = 20
BURSTS = 4  # at least: one per fault, and one after them
Say = Callable[[str], None]


# -- the faults ----------------------------------------------------------------------------------------


@dataclass
class Fault:
    """One injected fault and when it happened (seconds since the uploads began)."""

    fault: str
    at_s: float
    cleared_s: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    # From clearing to the first upload acknowledged after it; for the actor, until Ray has replaced it.
    recovered_after_s: float | None = None


class Faults:
    """Injects the three faults into one running embedded stack, in order."""

    def __init__(self, stack: EmbeddedStack, state: StackState, stall_seconds: float, clock: float,
                 say: Say) -> None:
        self.stack, self.state, self.stall, self.clock, self.say = stack, state, stall_seconds, clock, say
        self.timeline: list[Fault] = []

    def now(self) -> float:
        return time.monotonic() - self.clock

    def actors(self) -> list[processes.ProcessInfo]:
        return [p for p in processes.processes_of_home(self.stack.home)
                if p.cmdline and p.cmdline[0].startswith("ray::AnalyzerWorker")]

    def kill_actor(self) -> None:
        before = self.actors()
        deadline = time.monotonic() + 15
        busy: list[processes.ProcessInfo] = []
        while not busy and time.monotonic() < deadline:  # prefer an actor in the middle of a run
            busy = [p for p in self.actors() if "." in p.cmdline[0]]
            time.sleep(0.1)
        victim = (busy or before)[0]
        fault = Fault("kill_analyzer_actor", self.now(), detail={"pid": victim.pid, "title": victim.cmdline[0],
                                                                "busy": bool(busy), "actors": len(before)})
        processes.send(victim.identity, signal.SIGKILL)
        fault.cleared_s = self.now()
        self.timeline.append(fault)
        self.say(f"  [{fault.at_s:5.1f}s] SIGKILL analyzer actor pid {victim.pid} ({victim.cmdline[0]})")
        threading.Thread(target=self._watch_restart, args=(fault, victim.pid, len(before)), daemon=True).start()

    def _watch_restart(self, fault: Fault, victim: int, actors: int) -> None:
        """Note when Ray has replaced the killed actor (max_restarts=-1), without holding up the next fault."""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if len([p for p in self.actors() if p.pid != victim]) >= actors:
                fault.detail["actor_replaced_after_s"] = round(self.now() - fault.cleared_s, 2)
                return
            time.sleep(0.2)

    def kill_api(self, in_flight: int) -> None:
        api = self.state.identity("api")
        worker = self.state.identity("worker")
        assert api is not None and worker is not None
        fault = Fault("kill_api", self.now(), detail={"pid": api.pid, "uploads_in_flight": in_flight})
        processes.send(api, signal.SIGKILL)
        if processes.wait_gone([api], 10):
            raise BenchmarkError(f"the API (pid {api.pid}) survived SIGKILL")
        self.say(f"  [{fault.at_s:5.1f}s] SIGKILL API pid {api.pid} ({in_flight} uploads in flight); `up` again")
        begun = time.monotonic()
        self.state = self.stack.up(lambda line: self.say(f"      {line}"))
        fault.cleared_s = self.now()
        survey = self.stack.survey(self.state)
        fault.detail.update(restart_seconds=round(time.monotonic() - begun, 2), new_pid=self.state.pids["api"],
                            worker_pid_unchanged=self.state.pids["worker"] == worker.pid,
                            worker_services=len(survey.leaders["worker"]), api_processes=len(survey.leaders["api"]))
        self.timeline.append(fault)

    def run(self, uploader: Uploader) -> None:
        """The schedule: a burst of uploads and an actor killed mid-run; a burst sent into the stalled object
        store; a burst with the API killed under it; then the remaining bursts, one every two seconds."""
        burst = 0
        first = uploader.release(burst)
        self.kill_actor()
        uploader.wait_acknowledged(first, 120)
        pid = self.stack.seaweed.running_pid()
        if pid is None:
            raise BenchmarkError("SeaweedFS is not running")
        stall = Fault("stall_object_store", self.now(), detail={"pid": pid, "seconds": self.stall})
        os.kill(pid, signal.SIGSTOP)
        self.say(f"  [{stall.at_s:5.1f}s] SIGSTOP SeaweedFS pid {pid} for {self.stall:.0f}s")
        try:
            burst += 1
            stalled = uploader.release(burst)
            stall.detail["uploads_sent_into_it"] = len(stalled)
            time.sleep(self.stall)  # the fault itself: the object store does not answer for this long
        finally:
            os.kill(pid, signal.SIGCONT)
        stall.cleared_s = self.now()
        self.timeline.append(stall)
        self.say(f"  [{stall.cleared_s:5.1f}s] SIGCONT SeaweedFS")
        uploader.wait_acknowledged(stalled, 120)
        burst += 1
        uploader.release(burst)
        in_flight = uploader.wait_in_flight(max(1, len(uploader.bursts[min(burst, len(uploader.bursts) - 1)]) // 2),
                                            10)
        self.kill_api(in_flight)
        while uploader.release(burst + 1):
            burst += 1
            time.sleep(2.0)


# -- uploads and checks --------------------------------------------------------------------------------


class Uploader:
    """CONCURRENCY uploaders working through the uploads in bursts that the fault schedule releases."""

    def __init__(self, client: LocardClient, case_id: str, uploads: list[Upload], clock: float,
                 retry_seconds: float) -> None:
        self.client, self.case_id, self.uploads, self.clock = client, case_id, uploads, clock
        self.retry_seconds = retry_seconds
        size = max(1, min(CONCURRENCY, math.ceil(len(uploads) / BURSTS)))
        self.bursts = [uploads[start:start + size] for start in range(0, len(uploads), size)]
        self.gates = [threading.Event() for _ in self.bursts]
        self.lock = threading.Lock()
        self.in_flight = 0

    def release(self, burst: int) -> list[Upload]:
        """Let one burst go; returns its uploads (none when the bursts have run out)."""
        if burst >= len(self.gates):
            return []
        self.gates[burst].set()
        return self.bursts[burst]

    def wait_acknowledged(self, uploads: list[Upload], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(not (u.evidence_id or u.error) for u in uploads) and time.monotonic() < deadline:
            time.sleep(0.05)

    def wait_in_flight(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.in_flight < count and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.in_flight

    def _one(self, numbered: tuple[int, Upload]) -> None:
        burst, upload = numbered
        self.gates[burst].wait()
        upload.started = time.monotonic() - self.clock

        def retried(_reason: str) -> None:
            with self.lock:
                upload.retries += 1

        with self.lock:
            self.in_flight += 1
        try:
            answer = self.client.upload_data(self.case_id, upload.name, upload.data,
                                             retry_seconds=self.retry_seconds, on_retry=retried)
            upload.evidence_id, upload.created = str(answer["evidence"]["id"]), bool(answer["created"])
            upload.acknowledged_at = time.monotonic() - self.clock
        except ApiError as exc:
            upload.error = str(exc)
        finally:
            with self.lock:
                self.in_flight -= 1

    def run(self) -> None:
        numbered = [(index, upload) for index, burst in enumerate(self.bursts) for upload in burst]
        with ThreadPoolExecutor(max_workers=CONCURRENCY) as pool:
            list(pool.map(self._one, numbered))


# -- the run -------------------------------------------------------------------------------------------


def run_benchmark(files: int, duplicates: int, stall_seconds: float, say: Say, *, keep_home: bool = False,
                  recovery_timeout: float = 900.0) -> dict[str, Any]:
    if files < 10:
        raise ValueError("--files must be at least 10")
    started_at = dt.datetime.now(dt.UTC)
    total_clock = time.perf_counter()
    with private_stack(say, keep_home=keep_home, prefix="locard-faults") as bench:
        uploads = make_evidence(files, duplicates)
        say(f"Made {files} distinct files and {len(uploads) - files} repeats "
            f"({sum(len(u.data) for u in uploads) / 1e6:.1f} MB)")
        up_clock = time.perf_counter()
        state = bench.stack.up(say)
        up_seconds = time.perf_counter() - up_clock
        client = LocardClient(state.api_url, username=state.operator, password=state.operator_password,
                              timeout=max(60.0, stall_seconds + 30))
        case_id = str(client.ensure_case(f"FAULTS-{started_at:%Y%m%d%H%M%S}", "Locard fault benchmark")["id"])
        clock = time.monotonic()
        uploader = Uploader(client, case_id, uploads, clock, retry_seconds=max(300.0, stall_seconds * 4))
        faults = Faults(bench.stack, state, stall_seconds, clock, say)
        say(f"Uploading {len(uploads)} files in {len(uploader.bursts)} bursts, {CONCURRENCY} uploaders, "
            "while injecting faults")
        injector_error: list[BaseException] = []

        def inject() -> None:
            try:
                faults.run(uploader)
            except BaseException as exc:  # reported after the uploads
                injector_error.append(exc)
                for index in range(len(uploader.bursts)):
                    uploader.release(index)

        injector = threading.Thread(target=inject, name="faults")
        injector.start()
        uploader.run()
        injector.join()
        if injector_error:
            raise BenchmarkError(f"a fault could not be injected: {injector_error[0]!r}")
        for fault in faults.timeline:
            if fault.fault == "kill_analyzer_actor":  # its recovery: Ray has replaced the actor
                fault.recovered_after_s = fault.detail.get("actor_replaced_after_s")
                continue
            after = [u.acknowledged_at for u in uploads if u.acknowledged_at and u.started >= fault.cleared_s]
            fault.recovered_after_s = round(min(after) - fault.cleared_s, 2) if after else None
        say("Uploads done; waiting for every job to finish ...")
        engine = make_engine(Settings(home=bench.home).effective_database_url)
        factory = session_factory(engine)
        try:
            recovery = wait_terminal(factory, case_id, recovery_timeout)
            result = check(factory, client, case_id, uploads)
        finally:
            engine.dispose()
        last_cleared = max(f.cleared_s for f in faults.timeline)
        must_be_zero = {key: result[key] for key in ("lost", "duplicated", "half_written", "not_terminal",
                                                     "unacknowledged")}
        bench.keep = bench.keep or any(must_be_zero.values())
        acknowledged = [u for u in uploads if u.evidence_id]
        return {
            "benchmark": "faults",
            "timestamp": started_at.isoformat(timespec="seconds"),
            "locard": locard_commit(),
            "machine": machine_info(),
            "config": {"files": files, "repeats": len(uploads) - files, "concurrency": CONCURRENCY,
                       "stall_seconds": stall_seconds, "bursts": len(uploader.bursts),
                       "images": sum(1 for u in uploads if u.name.endswith(".jpg") and not u.duplicate_of),
                       "documents": sum(1 for u in uploads if u.name.endswith(".txt") and not u.duplicate_of)},
            "stack_up_seconds": round(up_seconds, 2),
            "must_be_zero": must_be_zero,
            "ok": not any(must_be_zero.values()),
            "uploads": {
                "attempted": len(uploads), "requests": len(uploads) + sum(u.retries for u in uploads),
                "acknowledged": len(acknowledged),
                "created": sum(1 for u in acknowledged if u.created),
                "already_held": sum(1 for u in acknowledged if u.created is False),
                "expected_duplicates": sum(1 for u in uploads if u.duplicate_of),
                "retried_uploads": sum(1 for u in uploads if u.retries), "retries": sum(u.retries for u in uploads),
                "upload_seconds": describe([u.acknowledged_at - u.started for u in acknowledged]),
            },
            "faults": [asdict(fault) for fault in faults.timeline],
            "recovery": {"seconds_after_last_fault_until_all_terminal":
                         round(time.monotonic() - clock - last_cleared, 1),
                         "wait_for_terminal_seconds": round(recovery, 1)},
            "checks": result,
            "total_seconds": round(time.perf_counter() - total_clock, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.bench_faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=120, help="distinct evidence files (default %(default)s)")
    parser.add_argument("--duplicates", type=int, default=12, help="uploads repeating earlier content")
    parser.add_argument("--stall-seconds", type=float, default=30.0, help="object store stall (default 30)")
    parser.add_argument("--short", action="store_true", help="a quick run: 40 files, 4 repeats, a 10 s stall")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary LOCARD_HOME and its logs")
    args = parser.parse_args(argv)
    if args.short:
        args.files, args.duplicates, args.stall_seconds = 40, 4, 10.0

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        result = run_benchmark(args.files, args.duplicates, args.stall_seconds, say, keep_home=args.keep_home)
    except (BenchmarkError, StackError, ApiError) as exc:
        say(f"error: {exc}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    say(json.dumps({"must_be_zero": result["must_be_zero"], "uploads": result["uploads"],
                    "faults": result["faults"], "recovery": result["recovery"]}, indent=2))
    say(f"results: {args.out}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
