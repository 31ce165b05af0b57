"""Benchmark of automatic cross-matching on the embedded stack: upload → first match.

    python -m evaluation.bench_first_match [--scenes N] [--analyzers a,b,...] [--out PATH] [--keep-home]

It starts its own embedded stack (SeaweedFS, SQLite, the worker service on a local Ray, the API) in a fresh
temporary `LOCARD_HOME` and talks to it only over HTTP, as a case system would. It registers a person with a
reference photo (scikit-image's astronaut, uploaded and linked, then analysed like any evidence) and one vehicle
per scene, then uploads N scenes to a new case, one at a time: ultralytics' bus.jpg with a Czech-format plate
(a different plate each) and the astronaut beside the bus (`tests.e2e_scene`). For each scene it measures the
time from the upload's answer (the item accepted) until `GET /evidence/{id}/matches` first lists a match
(polled every 50 ms); the cross-matcher writes an item's matches in one transaction once its analyses have all
ended, so this is upload → analysis → cross-matching → a reviewer can see it. Each scene's last analysis run's
own `finished_at` splits the time into analysis and what follows it (queueing the cross-matching, matching,
and the polling). The next scene is uploaded only
once the previous one's matches are there, so the figure holds no queueing.

The analyzers are the stack's (every registered analyzer) unless `--analyzers` names fewer. Results (JSON) go
to `evaluation/results/first_match.json`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from evaluation.common import RESULTS, describe, locard_commit, machine_info
from evaluation.private_stack import private_stack
from locard.stack import StackError

DEFAULT_OUT = RESULTS / "first_match.json"
DEFAULT_SCENES = 10
POLL_SECONDS = 0.05
TIMEOUT_SECONDS = 300.0
TARGET_P95_MS = 5000.0
CASE_REFERENCE = "BENCH-MATCH"
Say = Callable[[str], None]


class BenchmarkError(RuntimeError):
    """The benchmark could not complete (an API error, or a scene never matched)."""


def scene_plates(count: int) -> list[str]:
    """Czech-format plates ("1AB 2345"), all different, each read whole on the bus by the plates analyzer."""
    return [f"1AB {2345 + 111 * index}" for index in range(count)]


@dataclass
class SceneResult:
    """One scene's timings (ms from the upload's answer) and what its first listing of matches held."""

    plate: str
    evidence_id: str
    upload_ms: float
    first_match_ms: float
    analysis_done_ms: float | None  # the item's last analysis run ended (its finished_at)
    first_modalities: dict[str, int] = field(default_factory=dict)
    analyzers: list[str] = field(default_factory=list)


class Api:
    """The few calls of the API the benchmark makes, as the stack's operator (a supervisor)."""

    def __init__(self, base_url: str, *, username: str, password: str) -> None:
        self.http = httpx.Client(base_url=f"{base_url}/api/v1", timeout=60.0)
        token = self.json(self.http.post("/auth/token", data={"grant_type": "password", "username": username,
                                                              "password": password}))["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    @staticmethod
    def json(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise BenchmarkError(f"{response.request.method} {response.request.url.path} → "
                                 f"{response.status_code}: {response.text[:300]}")
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.json(self.http.post(path, json=body))

    def upload(self, case_id: str, path: Path) -> str:
        media_type = "image/png" if path.suffix == ".png" else "image/jpeg"
        result = self.json(self.http.post(f"/cases/{case_id}/evidence",
                                          files={"file": (path.name, path.read_bytes(), media_type)}))
        return str(result["evidence"]["id"])

    def matches(self, evidence_id: str) -> list[dict[str, Any]]:
        return list(self.json(self.http.get(f"/evidence/{evidence_id}/matches", params={"limit": 200}, headers={
            "X-Locard-Purpose-Case": CASE_REFERENCE,
            "X-Locard-Purpose-Justification": "benchmark of automatic cross-matching"})))

    def analysis(self, evidence_id: str) -> dict[str, Any]:
        return dict(self.json(self.http.get(f"/evidence/{evidence_id}/analysis")))


def wait_done(api: Api, evidence_id: str, timeout: float) -> dict[str, Any]:
    """The item's analysis status once every analysis job has ended."""
    deadline = time.monotonic() + timeout
    while True:
        status = api.analysis(evidence_id)
        if status["state"] == "done" and status["jobs"]:
            return status
        if time.monotonic() > deadline:
            raise BenchmarkError(f"evidence {evidence_id} was not analysed within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)


def time_scene(api: Api, case_id: str, path: Path, plate: str, timeout: float) -> SceneResult:
    """Upload one scene and poll until its first match is listed; then when its last analysis run ended (by
    the run's own `finished_at`, on this machine's clock), once its analysis is done."""
    began = time.perf_counter()
    evidence_id = api.upload(case_id, path)
    accepted, accepted_at = time.perf_counter(), dt.datetime.now(dt.UTC)
    deadline = time.monotonic() + timeout
    while not (found := api.matches(evidence_id)):
        if time.monotonic() > deadline:
            raise BenchmarkError(f"no match for the scene with plate {plate} within {timeout:.0f} s")
        time.sleep(POLL_SECONDS)
    first_match_ms = (time.perf_counter() - accepted) * 1000
    status = wait_done(api, evidence_id, timeout)
    ends = [dt.datetime.fromisoformat(run["finished_at"]) for run in status["runs"] if run["finished_at"]]
    last_end = max(ends).replace(tzinfo=max(ends).tzinfo or dt.UTC) if ends else None
    modalities: dict[str, int] = {}
    for match in found:
        modalities[match["modality"]] = modalities.get(match["modality"], 0) + 1
    return SceneResult(plate, evidence_id, round((accepted - began) * 1000, 1), round(first_match_ms, 1),
                       None if last_end is None else round((last_end - accepted_at).total_seconds() * 1000, 1),
                       modalities, sorted({run["analyzer"] for run in status["runs"]}))


def register(api: Api, plates: list[str], reference: Path, case_id: str, timeout: float) -> str:
    """The person (with the reference photo linked and analysed) and one vehicle per plate, owned by her."""
    from tests.register_samples import person

    fields = person(12)
    someone = api.post("/persons", fields)
    for plate in plates:
        api.post("/vehicles", {"plate": plate, "country": "CZ", "make": "Škoda", "model": "Octavia",
                               "owner_national_number": fields["national_number"]})
    photo = api.upload(case_id, reference)
    api.json(api.http.put(f"/persons/{someone['id']}/photos/{photo}"))
    wait_done(api, photo, timeout)
    return photo


def run_benchmark(scenes: int, analyzers: str, say: Say, *, keep_home: bool = False,
                  timeout: float = TIMEOUT_SECONDS) -> dict[str, Any]:
    """Start a private embedded stack, register, time the scenes, stop the stack; returns the results."""
    from tests.e2e_scene import reference_photo, scene_photo
    from tests.plate_samples import PlateSample

    if scenes < 1:
        raise ValueError("--scenes must be at least 1")
    started_at = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    with private_stack(say, keep_home=keep_home) as bench:
        if analyzers:  # after the environment is cleared of the user's LOCARD_* settings
            os.environ["LOCARD_ANALYZERS"] = analyzers
        plates = scene_plates(scenes)
        paths = [scene_photo(PlateSample(f"scene {index}", plate, (255, 255, 255), (0, 0, 0), None, "CZ",
                                         frozenset({"CZ"})), bench.work, f"scene-{index:02d}.jpg")
                 for index, plate in enumerate(plates)]
        up_clock = time.perf_counter()
        state = bench.stack.up(say)
        up_seconds = time.perf_counter() - up_clock
        api = Api(state.api_url, username=state.operator, password=state.operator_password)
        try:
            references = api.post("/cases", {"reference": f"{CASE_REFERENCE}-REF", "title": "Reference photos"})
            case = api.post("/cases", {"reference": CASE_REFERENCE, "title": "Locard first-match benchmark"})
            say("Registering the person (reference photo analysed) and the vehicles ...")
            reference_clock = time.perf_counter()
            register(api, plates, reference_photo(bench.work), references["id"], timeout)
            reference_seconds = time.perf_counter() - reference_clock
            results = []
            for index, (path, plate) in enumerate(zip(paths, plates, strict=True), 1):
                results.append(time_scene(api, case["id"], path, plate, timeout))
                say(f"  scene {index}/{scenes} ({plate}): first match after {results[-1].first_match_ms:.0f} ms "
                    f"{results[-1].first_modalities}")
        finally:
            api.http.close()
        first = [result.first_match_ms for result in results]
        done = [result.analysis_done_ms for result in results if result.analysis_done_ms is not None]
        summary = describe(first)
        return {
            "benchmark": "first_match",
            "timestamp": started_at.isoformat(timespec="seconds"),
            "locard": locard_commit(),
            "machine": machine_info(),
            "config": {"scenes": scenes, "analyzers": analyzers or "every registered analyzer (the stack's default)",
                       "poll_ms": POLL_SECONDS * 1000, "sequential": True,
                       "measured": "from the upload's answer to the first listing of a match for the item"},
            "stack_up_seconds": round(up_seconds, 2),
            "reference_photo_analysis_seconds": round(reference_seconds, 2),
            "upload_to_first_match_ms": summary,
            "upload_to_last_analysis_run_end_ms": describe(done),
            "analysis_end_to_first_match_ms": describe([result.first_match_ms - result.analysis_done_ms
                                                        for result in results if result.analysis_done_ms is not None]),
            "analyzers_run": sorted({name for result in results for name in result.analyzers}),
            "upload_ms": describe([result.upload_ms for result in results]),
            "target_p95_ms": TARGET_P95_MS,
            "meets_target": summary["p95"] < TARGET_P95_MS,
            "scenes": [vars(result) for result in results],
            "total_seconds": round(time.perf_counter() - clock, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.bench_first_match", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=DEFAULT_SCENES, help="scenes timed (default %(default)s)")
    parser.add_argument("--analyzers", default="", help="comma-separated analyzers (default: the stack's, all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    parser.add_argument("--keep-home", action="store_true", help="keep the temporary LOCARD_HOME and its logs")
    args = parser.parse_args(argv)

    def say(message: str) -> None:
        print(message, flush=True)

    try:
        result = run_benchmark(args.scenes, args.analyzers, say, keep_home=args.keep_home)
    except (BenchmarkError, StackError) as exc:
        say(f"error: {exc}")
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    latency = result["upload_to_first_match_ms"]
    say(f"upload → first match ({latency['n']} scenes): p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms "
        f"(target < {TARGET_P95_MS:.0f} ms: {'met' if result['meets_target'] else 'NOT met'}); results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
