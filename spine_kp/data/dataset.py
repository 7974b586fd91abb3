"""Training dataset: annotated slices from a DICOM data root, with targets, augmentation and the batch collate.

Each item is the annotated image of one study record (``record.primary``: the annotated instance, which is not
always the middle frame), loaded through :func:`spine_kp.io.dicom.load_instance`, prepared exactly as the predictor
prepares the middle frame (:func:`spine_kp.data.preprocess.prepare_slice`), then augmented when asked, and its
heatmap targets are encoded from the augmented keypoints by the model's codec, in ``__getitem__``: in the loader
workers when there are any, so a training step never waits on a per-sample Python loop. Prepared slices may be
cached (``cache``); the heatmaps never are, as augmentation moves the keypoints every epoch.

Batch format (the engine codes against it)::

    {"image": (B, C, H, W) float32,
     "keypoints": (B, K, 2) float32  (x, y) in input pixels, schema landmark order,
     "visible": (B, K) bool,
     "absent": (B, K) bool            annotated, but moved out of view by augmentation: known not to be in the image,
     "heatmaps": (B, K, h, w) float32  Gaussian targets of these keypoints (``codec.encode``),
     "heatmap_weight": (B, K) float32  1 for a visible keypoint inside the image, else 0 (the codec's weights),
     "grades": {kind: (B, K_kind, G_kind) float32 multi-hot},   # schema.landmarks_of_kind(kind) order
     "grade_mask": {kind: (B, K_kind) bool},
     "geometry": list[Geometry] (len B),
     "study_uid": list[str], "instance_uid": list[str]}

A landmark the record does not annotate (a data source with a smaller label set, :mod:`spine_kp.data.sources`) is
unknown, not absent: ``visible`` and ``absent`` are both False whatever the augmentation does, so it gets heatmap weight
0, never the absent term's empty target, and no grade loss (nor does a point with an empty grade: ``grade_mask``).

``heatmaps`` and ``heatmap_weight`` are there when the dataset has a codec (training and validation always do: the
engine passes the model's own :class:`~spine_kp.codec.heatmap.HeatmapCodec`); a dataset without one serves
images and points only.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from spine_kp.data.cache import SliceCache
from spine_kp.data.labels import Targets, encode_targets, kind_indices
from spine_kp.data.preprocess import DEFAULT_PERCENTILES, Geometry, prepare_slice
from spine_kp.data.transforms import AugmentConfig, Augmenter
from spine_kp.io.dicom import IngestError, SeriesInfo, StudyIndex, load_instance
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)


class MissingDataError(IngestError):
    """Annotated studies or images are not in the data root; the message lists them."""


class TargetCodec(Protocol):
    """What the dataset needs of the model's :class:`~spine_kp.codec.heatmap.HeatmapCodec`.

    Typed by structure so that ``data`` does not import ``codec`` (imports flow io -> data -> codec); the object
    passed in is the codec itself, so targets are encoded exactly as the model decodes (``to_dict`` lets the engine
    check that it is).
    """

    @property
    def input_size(self) -> tuple[int, int]: ...

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def to_dict(self) -> dict[str, Any]: ...


def _series_of(study: StudyIndex, instance_uid: str) -> SeriesInfo | None:
    """The series whose slices include image ``instance_uid`` (scouts excluded), None if none does."""
    return next((s for s in study.series if any(i.sop_instance_uid == instance_uid for i in s.instances)), None)


def resolve_records(
    records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex], skip_missing: bool = False, root: str = ""
) -> tuple[list[StudyRecord], list[str]]:
    """Keep the records whose annotated image is a sagittal slice in the scanned data root.

    An annotated image of an axial, coronal or oblique series is unusable like a missing one: the landmarks are
    placed on a sagittal slice (the model is trained and predicts on one), so such a record is a labelling mistake,
    most often an ``instanceUid`` copied from the wrong series. It is listed with the missing ones (an error, or
    skipped with ``skip_missing``) rather than skipped quietly, because a systematic mistake would otherwise train on
    a fraction of the data without anyone noticing.

    Args:
        records: annotation records.
        studies: study UID -> StudyIndex from :func:`spine_kp.io.dicom.scan`.
        skip_missing: skip unusable records with a warning instead of raising.
        root: data root, named in messages.

    Returns:
        (usable records, one problem line per skipped record).

    Raises:
        MissingDataError: some record is unusable and ``skip_missing`` is False; it lists every such record.
    """
    kept, problems = [], []
    where = f" under {root}" if root else ""
    for rec in records:
        ann = rec.primary
        if ann is None:
            problems.append(f"study {rec.study_uid}: the record has no annotated image")
        elif rec.study_uid not in studies:
            problems.append(f"study {rec.study_uid}: not found{where}")
        elif (series := _series_of(studies[rec.study_uid], ann.instance_uid)) is None:
            problems.append(f"study {rec.study_uid}: annotated instance {ann.instance_uid} not found{where}")
        elif series.plane != "sagittal":
            problems.append(
                f"study {rec.study_uid}: annotated instance {ann.instance_uid} is an image of the {series.label} "
                f"series {series.series_uid}, not a sagittal slice"
            )
        else:
            kept.append(rec)
    if problems and not skip_missing:
        shown = "; ".join(problems[:10]) + (f"; ... {len(problems) - 10} more" if len(problems) > 10 else "")
        raise MissingDataError(
            f"{len(problems)} annotated record(s) cannot be loaded: {shown}. Fix the data root or the annotations, or "
            "pass --skip-missing (data.skip_missing: true) to train on the others"
        )
    if problems:
        log.warning(
            "skipping %d of %d annotated record(s) (skip_missing): %s", len(problems), len(records), "; ".join(problems)
        )
    return kept, problems


class SpineDataset(Dataset):
    """Annotated slices with targets (see the module docstring for the item and batch format).

    Args:
        records: annotation records (each trains on ``record.primary``).
        studies: study UID -> StudyIndex of the data root (scan once, share between datasets).
        schema: landmark set.
        input_size: (H, W) network input of a dataset without a codec (default 256 x 256); with one, the images are
            ``codec.input_size`` (the engine builds the codec from ``data.input_size``), so it is not given twice.
        neighbours: k; inputs get 2k+1 channels (neighbouring slices by position).
        augment: augmentation for training; None (or ``enabled=False``) for validation.
        cache: keep prepared slices in memory (per process).
        cache_dir: also keep them as ``.npz`` files in this folder.
        skip_missing: skip records whose study or image is missing, with a warning, instead of failing.
        seed: seed of the augmentation stream in the main process (workers use their DataLoader seed).
        percentiles: intensity clip percentiles (must match the predictor's).
        target_spacing: mm per input pixel (None: fit the image to ``input_size``); must match the predictor's.
        root: data root, named in messages.
        codec: the model's heatmap codec (``LandmarkModule.codec``): items then carry ``heatmaps`` and
            ``heatmap_weight`` encoded from their (augmented) keypoints; None: no heatmap targets.

    Raises:
        TypeError: both ``input_size`` and ``codec`` are given.
    """

    def __init__(
        self,
        records: Sequence[StudyRecord],
        studies: Mapping[str, StudyIndex],
        schema: Schema,
        input_size: tuple[int, int] | None = None,
        neighbours: int = 0,
        augment: AugmentConfig | None = None,
        cache: bool = True,
        cache_dir: str | Path | None = None,
        skip_missing: bool = False,
        seed: int = 0,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        root: str = "",
        target_spacing: float | None = None,
        codec: TargetCodec | None = None,
    ) -> None:
        if codec is not None and input_size is not None:
            raise TypeError("SpineDataset: give input_size only without a codec; with one, it is codec.input_size")
        size = codec.input_size if codec is not None else input_size or (256, 256)
        self.records, self.skipped = resolve_records(records, studies, skip_missing, root)
        self.studies = {r.study_uid: studies[r.study_uid] for r in self.records}  # only what is used: small pickles
        self.schema = schema
        self.input_size = (int(size[0]), int(size[1]))
        self.neighbours = int(neighbours)
        self.augmenter = Augmenter(augment) if augment is not None and augment.enabled else None
        self.cache = SliceCache(memory=cache, directory=cache_dir)
        self.seed = int(seed)
        self.percentiles = (float(percentiles[0]), float(percentiles[1]))
        self.target_spacing = None if target_spacing is None else float(target_spacing)
        self.codec = codec
        self._kind_index = kind_indices(schema)
        self._targets: dict[int, Targets] = {}  # per record; encoded once so warnings are logged once
        self._rng: np.random.Generator | None = None
        self._rng_owner: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _generator(self) -> np.random.Generator:
        """This process's augmentation stream: seeded once per worker (or from ``seed`` in the main process)."""
        info = get_worker_info()
        owner = (os.getpid(), info.id if info is not None else -1)
        if self._rng is None or self._rng_owner != owner:
            base = info.seed if info is not None else 0
            self._rng = np.random.default_rng([self.seed, base % (1 << 63)])
            self._rng_owner = owner
        return self._rng

    def load(self, index: int) -> tuple[torch.Tensor, Geometry]:
        """The prepared (C, H, W) input of item ``index`` and its Geometry, from the cache when possible."""
        rec = self.records[index]
        ann = rec.primary
        assert ann is not None  # resolve_records keeps annotated records only
        key = (
            f"{rec.study_uid}|{ann.instance_uid}|{self.input_size}|{self.neighbours}|{self.percentiles}"
            f"|{self.target_spacing}"
        )
        hit = self.cache.get(key)
        if hit is not None:
            return torch.from_numpy(hit[0].copy()), hit[1]
        slc = load_instance(self.studies[rec.study_uid], ann.instance_uid, neighbours=self.neighbours)
        image, geom = prepare_slice(slc, self.input_size, self.neighbours, self.percentiles, self.target_spacing)
        self.cache.put(key, image.numpy(), geom)
        return image.clone(), geom

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        ann = rec.primary
        assert ann is not None
        image, geom = self.load(index)
        t = self._targets.get(index)
        if t is None:
            t = self._targets[index] = encode_targets(ann, self.schema, geom, source=f"study {rec.study_uid}")
        keypoints, visible = t.keypoints, t.visible
        if self.augmenter is not None:
            image, keypoints, visible = self.augmenter(self._generator(), image, keypoints, visible)
        grade_mask = {k: m & visible[self._kind_index[k]] for k, m in t.grade_mask.items()}  # graded where seen
        item: dict[str, Any] = {
            "image": image.to(torch.float32).contiguous(),
            # copies: the cached targets must not be changed through the returned tensors
            "keypoints": torch.tensor(keypoints, dtype=torch.float32),
            "visible": torch.tensor(visible, dtype=torch.bool),
            "absent": torch.tensor(t.visible & ~visible, dtype=torch.bool),
            "grades": {k: torch.tensor(v, dtype=torch.float32) for k, v in t.grades.items()},
            "grade_mask": {k: torch.tensor(v, dtype=torch.bool) for k, v in grade_mask.items()},
            "geometry": geom,
            "study_uid": rec.study_uid,
            "instance_uid": ann.instance_uid,
        }
        if self.codec is not None:  # encoded afresh for every item, never cached: augmentation moves the points
            # from the float32 points the item carries, so the targets are exactly codec.encode of its keypoints
            maps, weight = self.codec.encode(item["keypoints"].numpy(), visible)
            item["heatmaps"] = torch.from_numpy(maps)  # (K, h, w)
            item["heatmap_weight"] = torch.from_numpy(weight)  # (K,)
        return item


def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack dataset items into the batch format of the module docstring."""
    if not samples:
        raise ValueError("collate_samples: empty batch")
    first = samples[0]
    batch: dict[str, Any] = {
        "image": torch.stack([s["image"] for s in samples]),
        "keypoints": torch.stack([s["keypoints"] for s in samples]),
        "visible": torch.stack([s["visible"] for s in samples]),
        "absent": torch.stack([s["absent"] for s in samples]),
        "grades": {k: torch.stack([s["grades"][k] for s in samples]) for k in first["grades"]},
        "grade_mask": {k: torch.stack([s["grade_mask"][k] for s in samples]) for k in first["grade_mask"]},
        "geometry": [s["geometry"] for s in samples],
        "study_uid": [s["study_uid"] for s in samples],
        "instance_uid": [s["instance_uid"] for s in samples],
    }
    for key in ("heatmaps", "heatmap_weight"):  # present when the dataset has a codec
        if key in first:
            batch[key] = torch.stack([s[key] for s in samples])
    return batch
