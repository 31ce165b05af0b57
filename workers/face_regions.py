"""Where the faces analyzer's MTCNN looks in a frame, given the person boxes `objects` found in it.

Where MTCNN looks: a person-then-face cascade. MTCNN's cost grows with the pixels it searches (about 0.3 us a
pixel on one core), so the analyzer `requires` the `objects` analyzer and searches where its confident
"person" boxes (upright evidence coordinates, confidence PERSON_FLOOR or more; see there) say people are, at the
scale their faces need:

* People found in the frame: each person box, widened by 10% of its size on every side, is a region. A face is
  taken to be at least 1/25 of its person box's longer side (an adult's face is about 1/9 of their height; 1/25
  leaves a factor of over two for children, raised arms, a person lying down or a box holding two people), so
  a region is searched at the scale that makes such a face MTCNN's 20 px minimum: at full resolution for a
  small, distant person, coarser for a near one (never above the frame's resolution, nor over DETECT_SIDE on
  its longer side). Overlapping regions are merged where one crop costs less than both; a face found twice
  (IoU > 0.5, or a crop's edge cut it and it lies mostly inside the other) is kept once: the detection no
  crop's edge cuts, then the more probable. When the regions would cost more than 80% of a whole-frame search
  (people filling the frame; more than 32 person boxes), the whole frame is searched instead, at DETECT_SIDE:
  for little more, every face in the frame is looked for. Faces outside every person's region (a poster, a
  screen, someone YOLO did not box) are looked for by a rest-of-frame pass at the scale of the whole frame at
  REST_SIDE (640) on its longer side (faces from about 60 px high in 1080p), over the parts no person's region
  covers (`rest_regions`); its cost counts in the 80% above (before it, 60% of the person regions alone). A
  face found again inside a person's region is kept from the region's finer search. Measured on one core
  (median of 9, MTCNN only) with the confident person boxes `objects` gives: zidane.jpg (1280x720) 132 ms for
  the two person regions, 147 ms with the rest of the frame (+15 ms; the whole frame: 201 ms); bus.jpg
  (810x1080) 94 ms, 148 ms with the rest (+54 ms; the whole frame: 192 ms). Faces under 1/25 of the person box
  they lie in (an ID photo held up) are not searched for.
* `objects` ran but found nobody in the frame (confidently): the whole frame is still searched, at NO_PERSON_SIDE
  (960) on its longer side. COCO's detector misses people whose face is all there is to see (a close-up, a face
  on a poster or an ID photo), and a forensic lab prefers recall. The cost: on zidane.jpg at 1920x1080, one core, MTCNN
  takes ~0.17 s at 960, against ~0.16 s for its two person regions and ~0.26 s for the whole frame at
  DETECT_SIDE; faces are found from about 40 px high in 1080p (30 px at DETECT_SIDE).
* `objects` failed or is not deployed (no "objects" key in `upstream`), or it did not sample this frame of an
  animation: the whole frame at DETECT_SIDE, as without the cascade.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from models.faces import FaceDetector
from storage.messages import UpstreamFinding
from workers.analyzers import objects

# MTCNN looks for faces on a copy at most this large (its cost grows with the pixels; 1080p is ~0.5 s on one
# core, 1280x720 ~0.26 s); alignment, quality and embeddings use the frame at up to MAX_SIDE. With MTCNN's
# 20 px minimum, faces from about 30 px high in a 1080p frame are found.
DETECT_SIDE = 1280
NO_PERSON_SIDE = 960  # the whole-frame search when `objects` found nobody (see the module's docstring)
MIN_FACE = FaceDetector.min_face_size
PERSON, OBJECTS = "person", objects.ObjectsAnalyzer.name
REGION_MARGIN = 0.10  # of the person box's width (height), added on the left and right (top and bottom)
FACE_TO_PERSON = 1 / 25  # the smallest face searched for in a person's region, over the box's longer side
WHOLE_FRAME_SHARE = 0.8  # regions (people's and the rest) costing more than this share of a whole-frame
# search: search the whole frame
MAX_PERSON_REGIONS = 32  # a crowd: beyond, the whole frame is searched (merging is cubic in the boxes)
CALL_PIXELS = 4_000  # the fixed cost of one MTCNN call (~1 ms), in pixels searched
REST_SIDE = 640  # the rest-of-frame pass on the person-regions path: the scale of a whole frame this long
REST_GRID = 16  # the rest of the frame is found on a grid of cells of the frame's longer side / 16
PERSON_REGIONS, WHOLE_FRAME = "person-regions", "whole-frame"
# The least confidence of a person box that guides the search. `objects`' sliced inference can give weak boxes
# that are fragments of a person (a head and shoulders, a torso, two people's halves): 1.1.0 on zidane.jpg 0.41,
# 0.33, 0.30 and 0.28 (turned by EXIF: 0.38, 0.28, 0.26), inside the two people's own boxes (0.88, 0.84); their
# regions cost more than the whole frame and forced a whole-frame search. Measured on real photos, the people
# whose face is in the frame score 0.71 to 0.91 (astronaut 0.71, camera 0.79, zidane.jpg 0.84 and 0.88, bus.jpg
# 0.88 to 0.89, matplotlib's grace_hopper 0.91); the weak boxes 0.26 to 0.44 (bus.jpg's 0.44 is a man cut off by
# the frame's left edge, his face outside it). 0.5 lies 0.06 above the strongest weak box and 0.21 below the
# weakest real person. A face in a weak box is still looked for, by the rest-of-frame pass (or, when no box in the
# frame is confident, by the whole-frame search at NO_PERSON_SIDE).
PERSON_FLOOR = 0.5

Box = tuple[float, float, float, float]
Person = tuple[int, Box]  # position of the finding in upstream["objects"], box (x1, y1, x2, y2)


@dataclass(frozen=True)
class Region:
    """A part of a frame that MTCNN searches: its box in whole frame pixels, the smallest face (frame pixels)
    it is searched for, the longest side it may be searched at, the person boxes it was made from, and whether
    it is the coarse rest-of-frame pass of the person-regions path."""

    box: tuple[int, int, int, int]
    min_face: float
    max_side: int
    people: tuple[int, ...] = ()
    rest: bool = False  # the rest-of-frame pass: faces outside every person's region

    @property
    def scale(self) -> float:
        """Detection pixels per frame pixel: a `min_face` face becomes MTCNN's minimum, within `max_side`."""
        x1, y1, x2, y2 = self.box
        return min(1.0, self.max_side / max(x2 - x1, y2 - y1, 1), MIN_FACE / self.min_face)

    def cost(self) -> float:
        """What searching it costs, in pixels searched (pyramid levels and R/O-net grow with them)."""
        x1, y1, x2, y2 = self.box
        return (x2 - x1) * (y2 - y1) * self.scale ** 2 + CALL_PIXELS

    def merged(self, other: Region) -> Region:
        """One region holding both, searched for the smaller of their smallest faces."""
        a, b = self.box, other.box
        return Region((min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])),
                      min(self.min_face, other.min_face), self.max_side, self.people + other.people)


def intersection(a: Sequence[float], b: Sequence[float]) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def person_boxes(findings: Sequence[UpstreamFinding]) -> dict[int, list[Person]]:
    """The confident "person" boxes among `objects` findings, by frame: (position in `findings`, upright box).

    A finding under PERSON_FLOOR (or without a confidence), or without a usable box (missing, not four finite
    numbers, empty), cannot guide the search: skipped.
    """
    people: dict[int, list[Person]] = {}
    for position, finding in enumerate(findings):
        data = finding.data
        if finding.kind != objects.KIND or not isinstance(data, dict) or data.get("class") != PERSON:
            continue
        if finding.confidence is None or not finding.confidence >= PERSON_FLOOR:
            continue
        try:
            x1, y1, x2, y2 = (float(value) for value in data["box"])
            frame = int(data.get("frame", 0))
        except (KeyError, TypeError, ValueError):
            continue
        if all(math.isfinite(value) for value in (x1, y1, x2, y2)) and x2 > x1 and y2 > y1:
            people.setdefault(frame, []).append((position, (x1, y1, x2, y2)))
    return people


def person_region(person: Person, height: int, width: int) -> Region | None:
    """The region searched for `person`'s face (box in frame pixels), or None when it lies outside the frame."""
    position, (x1, y1, x2, y2) = person
    dx, dy = REGION_MARGIN * (x2 - x1), REGION_MARGIN * (y2 - y1)
    box = (max(0, math.floor(x1 - dx)), max(0, math.floor(y1 - dy)), min(width, math.ceil(x2 + dx)),
           min(height, math.ceil(y2 + dy)))
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return Region(box, max(float(MIN_FACE), FACE_TO_PERSON * max(x2 - x1, y2 - y1)), DETECT_SIDE, (position,))


def merge_regions(regions: Sequence[Region]) -> list[Region]:
    """Overlapping regions merged, the most saving pair first, while one crop costs no more than two and is
    searched at no coarser a scale than either."""
    merged = list(regions)
    while True:
        best: tuple[float, int, int, Region] | None = None
        for i, a in enumerate(merged):
            for j in range(i + 1, len(merged)):
                b = merged[j]
                if intersection(a.box, b.box) <= 0:
                    continue
                union = a.merged(b)
                saving = a.cost() + b.cost() - union.cost()
                if saving >= 0 and union.scale >= max(a.scale, b.scale) - 1e-9 and (best is None or saving > best[0]):
                    best = (saving, i, j, union)
        if best is None:
            return merged
        _, i, j, union = best
        merged = [region for k, region in enumerate(merged) if k not in (i, j)] + [union]


def plan_search(height: int, width: int, people: Sequence[Person] | None) -> tuple[str, list[Region]]:
    """Where MTCNN looks in a `height` x `width` frame, given the person boxes (frame pixels) found in it, or
    None when `objects` gave nothing for the frame: the path's name and its regions (see the module docstring)."""
    whole = Region((0, 0, width, height), MIN_FACE, DETECT_SIDE)
    if people is None:
        return WHOLE_FRAME, [whole]
    if not people:
        return WHOLE_FRAME, [Region((0, 0, width, height), MIN_FACE, NO_PERSON_SIDE)]
    if len(people) > MAX_PERSON_REGIONS:
        return WHOLE_FRAME, [whole]
    regions = merge_regions([region for person in people
                             if (region := person_region(person, height, width)) is not None])
    rest = rest_regions(height, width, regions)
    if not regions or sum(region.cost() for region in [*regions, *rest]) > WHOLE_FRAME_SHARE * whole.cost():
        return WHOLE_FRAME, [whole]
    return PERSON_REGIONS, [*regions, *rest]


def rest_regions(height: int, width: int, regions: Sequence[Region]) -> list[Region]:
    """The parts of a frame outside every region in `regions`, to be searched at the scale of the whole frame
    at REST_SIDE: the cells of a REST_GRID grid that no region covers (but for slivers thinner than half the
    smallest face the pass can find), joined into rectangles (runs of cells in a row, stacked where the rows'
    runs match), each widened by that smallest face so that a face on its edge is whole in it, then merged
    where one crop costs less than two; or the whole frame at that scale, when that costs less."""
    longest = max(height, width)
    scale = min(1.0, REST_SIDE / longest)
    cell = math.ceil(longest / REST_GRID)
    columns, rows = math.ceil(width / cell), math.ceil(height / cell)

    smallest = MIN_FACE / scale  # the smallest face the rest pass can find, in frame pixels

    def covered(column: int, row: int) -> bool:  # but for slivers too thin to hold half a face it could find
        x1, y1 = column * cell + smallest / 2, row * cell + smallest / 2
        x2, y2 = min(width, (column + 1) * cell) - smallest / 2, min(height, (row + 1) * cell) - smallest / 2
        return any(r.box[0] <= x1 and r.box[1] <= y1 and r.box[2] >= x2 and r.box[3] >= y2 for r in regions)

    runs: dict[tuple[int, int], tuple[int, int]] = {}  # (first column, last column) -> (first row, last row)
    rectangles: list[tuple[int, int, int, int]] = []
    for row in range(rows):
        spans, start = [], None
        for column in range(columns + 1):
            free = column < columns and not covered(column, row)
            if free and start is None:
                start = column
            elif not free and start is not None:
                spans.append((start, column - 1))
                start = None
        for span in list(runs):
            if span not in spans:
                rectangles.append((*span, *runs.pop(span)))
        for span in spans:
            runs[span] = (runs.get(span, (row, row))[0], row)
    rectangles += [(*span, *extent) for span, extent in runs.items()]
    edge = math.ceil(smallest)
    found = [Region((max(0, first * cell - edge), max(0, top * cell - edge), min(width, (last + 1) * cell + edge),
                     min(height, (bottom + 1) * cell + edge)), smallest, longest, rest=True)
             for first, last, top, bottom in rectangles]
    whole = Region((0, 0, width, height), smallest, longest, rest=True)
    parts = merge_regions(found)
    return parts if sum(part.cost() for part in parts) < whole.cost() else [whole]

