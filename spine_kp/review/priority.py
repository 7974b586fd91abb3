"""Least-certain-first ordering of the studies under review.

For one study, with ``r`` the matching radius in mm::

    uncertainty = max(1 - min_score, min(flip_shift_mm / r, 1)) + (1 if flags else 0)

- ``min_score``: the lowest landmark score of the study (a study without any scored landmark counts as 0);
- ``flip_shift_mm``: the largest ``flipShiftMm`` of its points (how far the flipped image's prediction moved a point;
  present only when ``spine-kp predict`` ran with ``--flip-tta``; 0 when absent);
- flags: a schema landmark that other studies of the file predict but this one lacks (``"absent: L5"``), and a
  landmark lying not below the previous schema landmark present (image y grows towards the feet:
  ``"order: L3 above L2"``).

Studies are ordered by uncertainty, highest first, ties by study UID, so the order is deterministic. Pure functions on
the predicted landmarks: the order is computed once, from the predictions, and does not move while a user edits.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from spine_kp.review.marks import Mark
from spine_kp.schema import Schema


@dataclass(frozen=True)
class Priority:
    """Why a study is reviewed early.

    Attributes:
        uncertainty: higher = review first (see the module docstring).
        min_score: lowest landmark score, None when no landmark has a score.
        flip_shift_mm: largest ``flipShiftMm`` of the study's points, None when the file carries none.
        flags: ``"absent: L5"``, ``"order: L3 above L2"``, in schema order.
        levels: the landmarks with the lowest score, absent or out of order, in schema order.
    """

    uncertainty: float
    min_score: float | None
    flip_shift_mm: float | None
    flags: tuple[str, ...]
    levels: tuple[str, ...]


def flags_of(marks: Sequence[Mark], expected: Iterable[str], schema: Schema) -> tuple[tuple[str, ...], set[str]]:
    """Absent and out-of-order landmarks of one study: (flags, the levels they name).

    Args:
        marks: the study's landmarks in schema order.
        expected: the landmarks some study of the file predicts.
        schema: gives the chain order (head to feet).
    """
    present = {m.id for m in marks}
    wanted = set(expected)
    flags = [f"absent: {lm}" for lm in schema.landmarks if lm in wanted and lm not in present]
    levels = {lm for lm in schema.landmarks if lm in wanted and lm not in present}
    for prev, cur in zip(marks, marks[1:]):
        if cur.y <= prev.y:
            flags.append(f"order: {cur.id} above {prev.id}")
            levels.add(cur.id)
    return tuple(flags), levels


def study_priority(
    marks: Sequence[Mark], expected: Iterable[str], flip_shift_mm: float | None, schema: Schema, radius_mm: float
) -> Priority:
    """The :class:`Priority` of one study from its predicted landmarks (schema order)."""
    flags, levels = flags_of(marks, expected, schema)
    scores = [m.score for m in marks if m.score is not None]
    min_score = min(scores) if scores else None
    levels |= {m.id for m in marks if m.score is not None and m.score == min_score}
    shift = min((flip_shift_mm or 0.0) / radius_mm, 1.0)
    uncertainty = max(1.0 - (min_score if min_score is not None else 0.0), shift) + (1.0 if flags else 0.0)
    ordered = tuple(lm for lm in schema.landmarks if lm in levels)
    return Priority(uncertainty, min_score, flip_shift_mm, flags, ordered)


def rank(priorities: Mapping[str, Priority]) -> list[str]:
    """Study UIDs, least certain first (uncertainty descending, ties by UID)."""
    return sorted(priorities, key=lambda uid: (-priorities[uid].uncertainty, uid))
