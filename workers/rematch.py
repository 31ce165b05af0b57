"""Re-matching: a register record added or changed later finds the older evidence it may match (run in the dispatcher).

Cross-matching (`workers.crossmatch`) matches an item once its analysis ends, against the registers as they are
then. A write to a register queues one job of kind `storage.rematch.REMATCH` naming the records (a vehicle added
or whose plate or status changed; a person added or given a reference photo; a tenprint enrolled). `rematch`
runs it: it finds the older items that may now match those records, by the same keys and indexes the matchers
use, and queues each item's cross-matching again (`crossmatch.enqueue` with a reason naming the record and the
change, so it runs once per change). The cross-matching then decides, with every matcher, exactly as for a new
item; this step only chooses which items are worth it, so it may choose a few too many, never too few of those
the keys and indexes reach.

* Vehicle: its plate key, looked up among the plate keys indexed for findings (`storage.matches.MatchKey`,
  modality "plate": plates read in images and plates found in text alike), as a reading or one of a reader's
  alternatives; and its OCR confusions (`storage.plate_keys.confusion_variants`, the plate matcher's), as a
  reading. A reading within those confusions of the vehicle is one whose confusions reach the vehicle.
* Person: their national number among the entity keys ("national_number:<digits>", the entities matcher's); and
  the gallery face of each reference photo (the photo's largest face, as the face matcher takes it) searched in
  the index of each face space it carries a vector of (`workers.matchers.face_spaces.FACE_SPACES`: dlib's, within
  0.6; FaceNet's where configured, within its threshold; `workers.matchers.indexes`). The person's own photos
  are left out.
* Tenprint: the enrolled print's current template searched 1:N in the fingerprint gallery index (the fingerprint
  matcher's `gallery_cache`), Bozorth3 re-ranking its best `fingerprint_search_rerank` candidates; prints scoring
  at least `fingerprint_match_threshold` that are not themselves enrolled (the gallery) and not in the print's
  own item.

Bounded: at most MAX_ITEMS items are queued per job (the excess is logged, never searched for), FACE_NEIGHBOURS
faces are looked at per reference face, and keys are looked up KEY_CHUNK at a time. Idempotent: the same job
run again queues nothing new (the cross-matching jobs are deduplicated on the reason).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import matching, tenprints
from storage.matches import MatchKey
from storage.persons import Person, PersonPhoto
from storage.plate_keys import confusion_variants
from storage.rematch import TARGET_KINDS
from storage.settings import Settings, get_settings
from storage.tables import Finding
from storage.tenprints import TenprintRecord
from storage.vehicles import Vehicle
from workers import crossmatch
from workers.crossmatch import MatchContext, match_context
from workers.matchers import faces, indexes
from workers.matchers.entities import PERSON_KIND, EntityMatcher
from workers.matchers.face_spaces import FACE_KIND, FACE_SPACES
from workers.matchers.fingerprints import gallery_cache
from workers.matchers.plates import PlateMatcher

log = logging.getLogger("locard.dispatcher")

MAX_ITEMS = 1_000  # items queued per job
FACE_NEIGHBOURS = 1_000  # faces looked at per reference face, nearest first
KEY_CHUNK = 500  # keys or ids per IN list

# What a finder returns: (evidence id, the record that found it), most relevant first, at most `limit` + 1 items.
Finder = Callable[[Session, Sequence[str], MatchContext | None, int], list[tuple[str, str]]]


def rematch(session: Session, *, payload: dict[str, Any], max_attempts: int,
            context: MatchContext | None = None) -> int:
    """Queue the cross-matching of the older items that may match the records of a re-matching job's `payload`
    ({"target_kind", "target_ids", "reason"}, `storage.rematch.queue_rematch`); how many were newly queued.
    `context` gives the dispatcher's settings (its Locard home, where the face index is kept)."""
    target_kind, reason = str(payload["target_kind"]), str(payload["reason"])
    if target_kind not in TARGET_KINDS:
        raise ValueError(f"{target_kind!r} is not one of {', '.join(TARGET_KINDS)}")
    target_ids = [str(target_id) for target_id in payload["target_ids"]]
    found = _FINDERS[target_kind](session, target_ids, context, MAX_ITEMS)
    items: dict[str, str] = {}
    for evidence_id, target_id in found:
        items.setdefault(evidence_id, target_id)
    if len(items) > MAX_ITEMS:
        log.warning("re-matching %d %s record(s) (%s): more than %d items may match; the first %d are queued",
                    len(target_ids), target_kind, reason, MAX_ITEMS, MAX_ITEMS)
        items = dict(list(items.items())[:MAX_ITEMS])
    queued = sum(crossmatch.enqueue(session, evidence_id=evidence_id, max_attempts=max_attempts,
                                    reason=f"{target_kind}:{target_id}:{reason}")
                 for evidence_id, target_id in items.items())
    log.info("re-matching %d %s record(s) (%s): %d item(s) may match, %d newly queued", len(target_ids),
             target_kind, reason, len(items), queued)
    return queued


def _settings(context: MatchContext | None) -> Settings:
    return (context.settings if context is not None else None) or match_context().settings or get_settings()


def _chunks(values: Sequence[str]) -> list[Sequence[str]]:
    return [values[start:start + KEY_CHUNK] for start in range(0, len(values), KEY_CHUNK)]


def _by_keys(session: Session, *, modality: str, keys: dict[str, tuple[str, bool]],
             limit: int) -> list[tuple[str, str]]:
    """Items holding live findings with one of `keys` (key -> (record id, whether a reader's alternative holding
    it counts too)), oldest key first within each chunk; stops past `limit` items."""
    found: dict[str, str] = {}
    for chunk in _chunks(sorted(keys)):
        rows = session.execute(select(MatchKey.key, MatchKey.exact, MatchKey.evidence_id)
                               .join(Finding, Finding.id == MatchKey.finding_id)
                               .where(MatchKey.modality == modality, MatchKey.key.in_(chunk))
                               .order_by(MatchKey.id)).tuples()
        for key, exact, evidence_id in rows:
            target_id, alternatives_count = keys[key]
            if exact or alternatives_count:
                found.setdefault(evidence_id, target_id)
                if len(found) > limit:
                    return list(found.items())
    return list(found.items())


def _vehicles(session: Session, target_ids: Sequence[str], context: MatchContext | None,
              limit: int) -> list[tuple[str, str]]:
    """Items with a plate the vehicles' plate keys reach: exactly (a reading or an alternative) or by OCR
    confusions (a reading)."""
    order = {target_id: at for at, target_id in enumerate(target_ids)}
    found: list[Vehicle] = []
    for chunk in _chunks(target_ids):
        found += session.scalars(select(Vehicle).where(Vehicle.id.in_(chunk))).all()
    found.sort(key=lambda vehicle: order[vehicle.id])
    keys: dict[str, tuple[str, bool]] = {}
    for vehicle in found:
        for variant in confusion_variants(vehicle.plate_key):
            keys.setdefault(variant, (vehicle.id, False))
    for vehicle in found:  # a plate key is looked up as itself, even where it is another vehicle's variant
        if not keys.get(vehicle.plate_key, ("", False))[1]:
            keys[vehicle.plate_key] = (vehicle.id, True)
    return _by_keys(session, modality=PlateMatcher.modality, keys=keys, limit=limit)


def _persons(session: Session, target_ids: Sequence[str], context: MatchContext | None,
             limit: int) -> list[tuple[str, str]]:
    """Items naming the persons' national numbers, then items with a face near one of their reference faces."""
    keys: dict[str, tuple[str, bool]] = {}
    photos: dict[str, str] = {}  # reference photo -> the person
    for chunk in _chunks(target_ids):
        for person_id, number in session.execute(select(Person.id, Person.national_number)
                                                 .where(Person.id.in_(chunk))).tuples():
            keys[f"{PERSON_KIND}:{number}"] = (person_id, True)  # the entities matcher's key of a national number
        for person_id, evidence_id in session.execute(select(PersonPhoto.person_id, PersonPhoto.evidence_id)
                                                      .where(PersonPhoto.person_id.in_(chunk))).tuples():
            photos.setdefault(evidence_id, person_id)
    found = dict(_by_keys(session, modality=EntityMatcher.modality, keys=keys, limit=limit))
    if len(found) <= limit and photos:
        for evidence_id, person_id in _near_faces(session, photos, context):
            found.setdefault(evidence_id, person_id)
            if len(found) > limit:
                break
    return list(found.items())


def _gallery_faces(session: Session, photos: dict[str, str]) -> list[tuple[str, dict[str, Any]]]:
    """Each photo's gallery face (its largest face, the face matcher's choice): the person and the face's data."""
    largest: dict[str, tuple[float, str, dict[str, Any]]] = {}
    for chunk in _chunks(sorted(photos)):
        for finding_id, evidence_id, data in session.execute(
                select(Finding.id, Finding.evidence_id, Finding.data)
                .where(Finding.evidence_id.in_(chunk), Finding.kind == FACE_KIND)).tuples():
            area, best = faces.box_area(dict(data)), largest.get(evidence_id)
            if best is None or (area, best[1]) > (best[0], finding_id):
                largest[evidence_id] = (area, finding_id, dict(data))
    return [(photos[evidence_id], data) for evidence_id, (_, _, data) in sorted(largest.items())]


def _near_faces(session: Session, photos: dict[str, str], context: MatchContext | None) -> list[tuple[str, str]]:
    """Items other than these reference photos with a face within a face space's threshold of one of their
    gallery faces (in each space the face carries a vector of), nearest first."""
    gallery = _gallery_faces(session, photos)
    settings = context.settings if context is not None else None
    near: dict[str, tuple[float, str]] = {}  # finding -> (its best score, the person)
    for space in FACE_SPACES:
        wanted = [(person_id, vector) for person_id, data in gallery if (vector := space.vector(data)) is not None]
        if not wanted:
            continue
        index = indexes.holder(space.indexed, session=session,
                               home=settings.home if settings is not None else None).index(session)
        for (person_id, _), hits in zip(wanted, index.search_batch([v for _, v in wanted], k=FACE_NEIGHBOURS),
                                        strict=True):
            for hit in hits:
                distance = space.euclidean(hit.distance)
                if distance < space.distance_threshold and space.score(distance) > near.get(hit.id, (-1.0, ""))[0]:
                    near[hit.id] = (space.score(distance), person_id)
    items: dict[str, tuple[float, str]] = {}
    for chunk in _chunks(sorted(near)):
        for finding_id, evidence_id in session.execute(select(Finding.id, Finding.evidence_id)
                                                       .where(Finding.id.in_(chunk))).tuples():
            score, person_id = near[finding_id]
            if evidence_id not in photos and score > items.get(evidence_id, (-1.0, ""))[0]:
                items[evidence_id] = (score, person_id)
    return [(evidence_id, person_id) for evidence_id, (_, person_id)
            in sorted(items.items(), key=lambda item: (-item[1][0], item[0]))]


def _tenprints(session: Session, target_ids: Sequence[str], context: MatchContext | None,
               limit: int) -> list[tuple[str, str]]:
    """Items with a print that is not in the gallery and scores at least the threshold against an enrolled one,
    best first for each record."""
    settings = _settings(context)
    threshold, rerank = float(settings.fingerprint_match_threshold), settings.fingerprint_search_rerank
    records = [session.get(TenprintRecord, target_id) for target_id in target_ids]
    found: dict[str, str] = {}
    for record in records:
        template = None if record is None else matching.template_of(session, evidence_id=record.evidence_id)
        if record is None or template is None:
            continue  # withdrawn meanwhile, or its print analysed again and not yet held
        cache = gallery_cache()
        index = cache.current(session)
        own = {tid for tid, evidence in cache.evidence_of.items() if evidence == record.evidence_id}
        scored = [c for c in index.search(template.iso, limit=rerank, rerank=rerank, exclude=own)
                  if c.score >= threshold]
        hits = tenprints.gallery_hits(session, template_ids=[int(c.template_id) for c in scored])
        for candidate in scored:
            hit = hits.get(int(candidate.template_id))
            if hit is not None and not hit.enrolled and hit.evidence_id != record.evidence_id:
                found.setdefault(hit.evidence_id, record.id)
        if len(found) > limit:
            break
    return list(found.items())


_FINDERS: dict[str, Finder] = {"vehicle": _vehicles, "person": _persons, "tenprint": _tenprints}
