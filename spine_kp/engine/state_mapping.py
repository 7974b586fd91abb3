"""``LandmarkNet`` tensors of one schema onto a ``LandmarkNet`` of another, by landmark and grade name
(:func:`map_state`), and the :class:`InitReport` of what loaded. The warm start that uses it:
:mod:`spine_kp.engine.init_weights`.

Names are matched as follows; everything not loaded keeps its fresh initialisation and is reported.

* Tensors without a schema axis (backbone, decoder, grade MLP) load when the name and the shape are equal. When
  the two configs name a different ``model.backbone`` (or ``model.decoder``) none of its tensors are compared:
  equal shapes there would be a coincidence, not the same layer.
* Tensors with a landmark axis (the heatmap head's channels, the grade head's landmark embedding, a stacked
  hourglass's intermediate heatmaps; see ``spine_kp/models/heads.py`` and ``spine_kp/models/hourglass.py``) are
  copied row by row for the landmark *names* both schemas have, wherever each schema puts them.
* Grade classifiers (one per kind, one logit row per grade label) are matched by kind name, then row by row by
  grade label. A kind whose ``multi_label`` differs is not copied (softmax and sigmoid logits mean different things).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from spine_kp.models.backbones.weights import short_names
from spine_kp.schema import Schema

# LandmarkNet tensors indexed by landmark (schema order) along the given axis.
_LANDMARK_AXES: tuple[tuple[re.Pattern[str], int], ...] = (
    (re.compile(r"heatmap_head\.conv\.(weight|bias)"), 0),  # (K, C, 1, 1), (K,)
    (re.compile(r"grade_head\.embedding\.weight"), 0),  # (K, E)
    (re.compile(r"(.+\.)?intermediate_heads\.\d+\.(weight|bias)"), 0),  # hourglass: (K, W, 1, 1), (K,)
    (re.compile(r"(.+\.)?merge_predictions\.\d+\.weight"), 1),  # hourglass: (W, K, 1, 1)
)
# One classifier per kind (schema kind order), one row per grade label: (G_kind, hidden), (G_kind,).
_CLASSIFIER = re.compile(r"grade_head\.classifiers\.(\d+)\.(weight|bias)")


@dataclass
class InitReport:
    """What a warm start loaded (all names are ``LandmarkNet`` keys, ``model.`` stripped).

    Attributes:
        source: the checkpoint file.
        total: tensors in the new model.
        loaded: copied whole.
        mapped: copied row by row for shared landmarks / grades, as ``"key (rows/total rows)"``.
        skipped: present in both but not copied, as ``"key: reason"``.
        missing: no tensor of that name in the checkpoint, left at init.
        unexpected: checkpoint tensors the model has no place for.
        groups: whole parts left out, with the reason (backbone or decoder of another name).
        new_landmarks: landmarks of the new schema absent from the checkpoint's (fresh rows).
        dropped_landmarks: checkpoint landmarks the new schema lacks.
        new_grades: ``kind/grade`` of the new schema without a checkpoint row.
        dropped_grades: checkpoint ``kind/grade`` the new schema lacks.
    """

    source: str = ""
    total: int = 0
    loaded: list[str] = field(default_factory=list)
    mapped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    new_landmarks: list[str] = field(default_factory=list)
    dropped_landmarks: list[str] = field(default_factory=list)
    new_grades: list[str] = field(default_factory=list)
    dropped_grades: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every tensor of the model came whole from the checkpoint and nothing of the checkpoint was left."""
        return len(self.loaded) == self.total and not (self.unexpected or self.dropped_landmarks or self.dropped_grades)

    def summary(self) -> str:
        """One paragraph: counts, then short name lists of what did not load."""
        parts = [
            f"{self.source}: loaded {len(self.loaded) + len(self.mapped)}/{self.total} model tensors "
            f"({len(self.loaded)} whole, {len(self.mapped)} by landmark/grade name)"
        ]
        if self.mapped:
            parts.append(f"row-mapped: {short_names(self.mapped, 4)}")
        names = (
            (self.new_landmarks, "new landmarks, fresh init"),
            (self.dropped_landmarks, "checkpoint landmarks dropped"),
            (self.new_grades, "new grades, fresh init"),
            (self.dropped_grades, "checkpoint grades dropped"),
        )
        parts += [f"{what} ({len(items)}): {short_names(items)}" for items, what in names if items]
        parts.extend(self.groups)
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped: {short_names(self.skipped, 4)}")
        if self.missing:
            parts.append(f"{len(self.missing)} missing, left at init: {short_names(self.missing)}")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected, ignored: {short_names(self.unexpected)}")
        return "; ".join(parts)


def _pairs(target: Sequence[str], source: Sequence[str]) -> tuple[list[int], list[int]]:
    """(target indices, source indices) of the names both sequences hold, in target order."""
    where = {name: i for i, name in enumerate(source)}
    shared = [(i, where[name]) for i, name in enumerate(target) if name in where]
    return [t for t, _ in shared], [s for _, s in shared]


def _copy_rows(
    key: str, src: torch.Tensor, dst: torch.Tensor, axis: int, rows: tuple[list[int], list[int]], sizes: tuple[int, int]
) -> tuple[torch.Tensor | None, str]:
    """``dst`` with the shared rows of ``src`` along ``axis``; ``None`` and the reason when nothing fits.

    Args:
        rows: (target rows, source rows) of the shared names; sizes: (target, source) schema lengths on ``axis``.
    """
    dst_rows, src_rows = rows
    if src.ndim != dst.ndim or src.shape[axis] != sizes[1] or dst.shape[axis] != sizes[0]:
        return None, f"{key}: shape {tuple(src.shape)} vs {tuple(dst.shape)} does not follow the schemas"
    if src.shape[:axis] + src.shape[axis + 1 :] != dst.shape[:axis] + dst.shape[axis + 1 :]:
        return None, f"{key}: shape {tuple(src.shape)} vs {tuple(dst.shape)}"
    if not dst_rows:
        return None, f"{key}: no shared rows"
    out = dst.clone()
    index = torch.tensor(dst_rows, dtype=torch.long)
    out.index_copy_(axis, index, src.index_select(axis, torch.tensor(src_rows, dtype=torch.long)).to(dst.dtype))
    return out, f"{key} ({len(dst_rows)}/{dst.shape[axis]} rows)"


def map_state(
    source: Mapping[str, torch.Tensor],
    source_schema: Schema,
    target: Mapping[str, torch.Tensor],
    target_schema: Schema,
    skip: Mapping[str, str] | None = None,
) -> tuple[dict[str, torch.Tensor], InitReport]:
    """Map ``LandmarkNet`` tensors of one schema onto a ``LandmarkNet`` of another (see module docstring).

    Args:
        source: checkpoint tensors.
        source_schema: the schema ``source`` was built for.
        target: the new model's ``state_dict()`` (not modified).
        target_schema: the schema of the new model.
        skip: key prefix -> reason: tensors under it are not compared (e.g. ``{"backbone.": "backbone differs"}``).

    Returns:
        The tensors to load (``load_state_dict(..., strict=False)``) and the report (``source`` left empty).
    """
    skip = dict(skip or {})
    report = InitReport(total=len(target))
    lm_pairs = _pairs(target_schema.landmarks, source_schema.landmarks)
    lm_sizes = (target_schema.num_landmarks, source_schema.num_landmarks)
    _note_schema_changes(report, source_schema, target_schema)
    src_kinds = {k.name: (i, k) for i, k in enumerate(source_schema.kinds)}

    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    skipped_in_group = dict.fromkeys(skip, 0)
    for key, dst in target.items():
        group = next((p for p in skip if key.startswith(p)), None)
        if group is not None:
            skipped_in_group[group] += 1
            continue
        src_key, axis, pairs, sizes = key, None, lm_pairs, lm_sizes
        if m := _CLASSIFIER.fullmatch(key):
            kind = target_schema.kinds[int(m.group(1))]
            if kind.name not in src_kinds:
                report.missing.append(key)
                continue
            index, theirs = src_kinds[kind.name]
            src_key = f"grade_head.classifiers.{index}.{m.group(2)}"
            if theirs.multi_label != kind.multi_label:
                used.add(src_key)
                report.skipped.append(f"{key}: kind {kind.name!r} multi_label differs")
                continue
            axis, pairs, sizes = 0, _pairs(kind.grades, theirs.grades), (len(kind.grades), len(theirs.grades))
        else:
            axis = next((a for pattern, a in _LANDMARK_AXES if pattern.fullmatch(key)), None)
        if src_key not in source:
            report.missing.append(key)
            continue
        used.add(src_key)
        _load_one(key, source[src_key], dst, axis, pairs, sizes, new_state, report)
    used.update(_note_skipped_groups(report, source, skip, skipped_in_group))
    report.unexpected = [k for k in source if k not in used]
    return new_state, report


def _note_schema_changes(report: InitReport, source_schema: Schema, target_schema: Schema) -> None:
    """The landmarks and grades the target schema adds or drops, into the report."""
    report.new_landmarks = [n for n in target_schema.landmarks if not source_schema.has(n)]
    report.dropped_landmarks = [n for n in source_schema.landmarks if not target_schema.has(n)]
    src_classes, dst_classes = set(source_schema.classes), set(target_schema.classes)
    report.new_grades = [f"{k}/{g}" for k, g in target_schema.classes if (k, g) not in src_classes]
    report.dropped_grades = [f"{k}/{g}" for k, g in source_schema.classes if (k, g) not in dst_classes]


def _load_one(
    key: str,
    src: torch.Tensor,
    dst: torch.Tensor,
    axis: int | None,
    pairs: tuple[list[int], list[int]],
    sizes: tuple[int, int],
    new_state: dict[str, torch.Tensor],
    report: InitReport,
) -> None:
    """Load checkpoint tensor ``src`` as ``key``: whole where no row moves and the shapes agree, else row by row
    along ``axis`` (landmarks or grades; None: none), into ``new_state`` and the report."""
    identity = axis is None or (pairs[0] == pairs[1] == list(range(sizes[0])) and sizes[0] == sizes[1])
    if identity and src.shape == dst.shape:
        new_state[key] = src
        report.loaded.append(key)
    elif axis is None:
        report.skipped.append(f"{key}: shape {tuple(src.shape)} vs {tuple(dst.shape)}")
    else:
        value, note = _copy_rows(key, src, dst, axis, pairs, sizes)
        if value is None:
            report.skipped.append(note)
        else:
            new_state[key] = value
            report.mapped.append(note)


def _note_skipped_groups(
    report: InitReport, source: Mapping[str, torch.Tensor], skip: Mapping[str, str], skipped: Mapping[str, int]
) -> set[str]:
    """One line per skipped group (``skip``: prefix -> reason) that has tensors; returns the checkpoint keys it
    covers (accounted for, so not "unexpected")."""
    covered: set[str] = set()
    for prefix, reason in skip.items():
        theirs = [k for k in source if k.startswith(prefix)]
        if theirs or skipped[prefix]:
            report.groups.append(
                f"{reason}: none of its tensors loaded ({len(theirs)} in the checkpoint, "
                f"{skipped[prefix]} in the model)"
            )
            covered.update(theirs)
    return covered


__all__ = ["InitReport", "map_state"]
