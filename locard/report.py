"""Readable findings summaries for the terminal."""

from __future__ import annotations

from typing import Any


def _first(findings: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((f for f in findings if f["kind"] == kind), None)


def summarise(evidence: dict[str, Any], analysis: dict[str, Any], findings: list[dict[str, Any]]) -> str:
    """A few lines about one evidence item: what it is, its hashes, EXIF, and how analysis went."""
    name = evidence.get("original_filename") or evidence["id"]
    lines = [f"■ {name}  [{evidence['media_type']}, {evidence['size']:,} bytes, via {evidence['source']}]",
             f"    evidence {evidence['id']}  sha256 {evidence['sha256']}"]
    probe = _first(findings, "media.probe")
    if probe:
        lines.append(f"    probe: {probe.get('label') or ''}")
        if probe["data"].get("extension_mismatch"):
            lines.append("    ! the file name's extension does not match its content")
    crypto = _first(findings, "hash.cryptographic")
    if crypto:
        lines.append(f"    md5 {crypto['data'].get('md5')}  sha1 {crypto['data'].get('sha1')}")
    pdq = _first(findings, "hash.pdq")
    if pdq:
        data = pdq["data"]
        reliable = "" if data.get("reliable", True) else " (too featureless to match on)"
        lines.append(f"    PDQ {data.get('pdq')}  quality {data.get('quality')}{reliable}")
    exif = _first(findings, "media.exif")
    if exif:
        lines.append(f"    EXIF: {exif.get('label') or 'present'}")
    objects = [f["data"].get("class") for f in findings if f["kind"] == "objects.detection"]
    if objects:
        counts = {name: objects.count(name) for name in dict.fromkeys(objects)}
        lines.append("    objects: " + ", ".join(f"{n} {name}" for name, n in counts.items()))
    plates = [f.get("label") for f in findings if f["kind"] == "plates.plate"]
    if plates:
        lines.append("    plates: " + ", ".join(str(label) for label in plates))
    faces = [f for f in findings if f["kind"] == "faces.face"]
    if faces:
        scores = ", ".join(f"{f['data']['quality']['score']:.2f}" for f in faces)
        lines.append(f"    faces: {len(faces)} (quality {scores})")
    pages = [f for f in findings if f["kind"] == "text.page" and f["data"].get("text")]
    if pages:
        first = " ".join(pages[0]["data"]["text"].split())[:70]
        languages = sorted({str(f["data"].get("language")) for f in pages})
        engine = pages[0]["data"]["engine"]
        lines.append(f"    text: {len(pages)} page(s) [{', '.join(languages)}, {engine}] “{first}…”")
    entities = [f"{f['kind'].removeprefix('entity.')} {f['label']}" for f in findings
                if f["kind"].startswith("entity.")]
    if entities:
        lines.append("    entities: " + ", ".join(entities[:8]) + (" …" if len(entities) > 8 else ""))
    template = _first(findings, "fingerprint.template")
    if template:
        warning = "; resolution assumed 500 ppi" if template["data"].get("resolution_warning") else ""
        lines.append(f"    fingerprint: {template['label']}{warning}")
    for run in analysis.get("runs", []):
        if run["status"] == "failed":
            lines.append(f"    ✗ {run['analyzer']} failed (attempt {run['attempt']}): {run['error']}")
    ok = sum(1 for run in analysis.get("runs", []) if run["status"] == "succeeded")
    timings = ", ".join(f"{r['analyzer']} {r['duration_ms']:.0f} ms" for r in analysis.get("runs", [])
                        if r["status"] == "succeeded" and r.get("duration_ms") is not None)
    lines.append(f"    analysis: {ok} analyzer(s) succeeded; {len(findings)} finding(s)" +
                 (f"  ({timings})" if timings else ""))
    return "\n".join(lines)

