"""Crops and grade targets of annotated slices, built once and kept in memory; cheap random re-crops to augment.

Training crops are cut LARGER than the network's (``outer_size``: same mm per pixel, a margin on every side), so an
augmented crop - the centre jittered by up to ``jitter_mm``, rotated by up to ``rotate_deg`` - is a bilinear
re-sample of the cached one (``random_recrop``, batched on the torch side) instead of a new pass over the DICOM
slice. Without jitter and rotation the re-crop returns exactly the central ``size_px`` pixels, i.e. the crop
:func:`spine_kp.grading.crops.extract_crops` cuts at predict time.

There is deliberately no in-plane mirroring: an anterior-posterior flip moves a posterior bulge or protrusion to the
front of the disc, where it is no longer the graded finding, and a cranio-caudal flip swaps the crop's neighbours
(the vertebra above a disc is always the smaller one, an extrusion migrates in a given direction). The left-right
mirror is valid, and with parasagittal planes it is one: ``mirror`` reverses their lateral order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from spine_kp.data.labels import encode_targets
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.crops import slice_crops
from spine_kp.grading.model import graded_landmarks
from spine_kp.io.dicom import StudyIndex, load_instance
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class CropSet:
    """Crops of N annotated slices at their ground-truth points.

    Attributes:
        crops: (N, L * P, S, S) float32, P planes per graded landmark (``graded_landmarks(schema, cfg.kinds)``,
            schema order; see :func:`spine_kp.grading.crops.slice_crops`); all-zero for a landmark not annotated.
        grades: graded kind -> (N, K_kind, G_kind) float32 multi-hot.
        grade_mask: graded kind -> (N, K_kind) bool, False where the landmark or its grade is missing.
        study_uids: (N,) the slices' studies.
    """

    crops: np.ndarray
    grades: dict[str, np.ndarray]
    grade_mask: dict[str, np.ndarray]
    study_uids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.crops)


def outer_size(cfg: GradeStageConfig) -> int:
    """Side in pixels of a cached training crop: room for the largest jitter and rotation around ``size_px``."""
    s = cfg.size_px
    r = math.radians(cfg.rotate_deg)
    need = 0.5 * s * (abs(math.cos(r)) + abs(math.sin(r))) + math.sqrt(2.0) * cfg.jitter_mm / cfg.step_mm
    margin = max(0, math.ceil(need - 0.5 * s)) + 1  # +1: bilinear reads one pixel beyond
    return s + 2 * margin


def _one(
    record: StudyRecord, study: StudyIndex, schema: Schema, cfg: GradeStageConfig, size_px: int
) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    ann = record.primary
    assert ann is not None
    slc = load_instance(study, ann.instance_uid, neighbours=cfg.neighbours)
    t = encode_targets(ann, schema, image_shape=slc.shape, source=f"study {record.study_uid}")
    points = np.where(t.visible[:, None], t.keypoints.astype(np.float64), np.nan)
    sel = list(graded_landmarks(schema, cfg.kinds))
    crops = slice_crops(slc, points, sel, size_px, cfg.step_mm * size_px, cfg.align, cfg.neighbours)
    kinds = {schema.landmark_kinds[i] for i in sel}
    return (
        crops,
        {k: v for k, v in t.grades.items() if k in kinds},
        {k: v for k, v in t.grade_mask.items() if k in kinds},
    )


def build_cropset(
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    schema: Schema,
    cfg: GradeStageConfig,
    size_px: int | None = None,
) -> CropSet:
    """Decode each record's annotated slice once and cut its landmark crops at the ground-truth points.

    Args:
        records: annotation records (each uses ``record.primary``, as the landmark training does).
        studies: study UID -> StudyIndex holding them.
        schema: landmark set.
        cfg: crop geometry (``step_mm``, ``align``) and ``load_workers``.
        size_px: crop side; ``cfg.size_px`` by default, :func:`outer_size` for augmentable training crops. The mm
            per pixel is always ``cfg.step_mm``.

    Returns:
        The crop set; a slice that cannot be decoded is skipped with a warning.
    """
    size = int(size_px or cfg.size_px)
    usable = [r for r in records if r.primary is not None and r.study_uid in studies]

    def work(rec: StudyRecord):
        try:
            return _one(rec, studies[rec.study_uid], schema, cfg, size)
        except Exception as exc:  # one unreadable slice must not stop the stage
            log.warning("grade stage: study %s skipped (%s: %s)", rec.study_uid, type(exc).__name__, exc)
            return None

    with ThreadPoolExecutor(max_workers=max(1, cfg.load_workers)) as pool:
        results = list(pool.map(work, usable))
    kept = [(r, out) for r, out in zip(usable, results) if out is not None]
    sel = graded_landmarks(schema, cfg.kinds)
    kinds = [k.name for k in schema.kinds if k.name in {schema.landmark_kinds[i] for i in sel}]
    if not kept:
        return CropSet(
            np.zeros((0, len(sel) * cfg.planes, size, size), np.float32),
            {n: np.zeros((0, len(schema.landmarks_of_kind(n)), len(schema.kind(n).grades)), np.float32) for n in kinds},
            {n: np.zeros((0, len(schema.landmarks_of_kind(n))), bool) for n in kinds},
            (),
        )
    return CropSet(
        crops=np.stack([out[0] for _, out in kept]),
        grades={n: np.stack([out[1][n] for _, out in kept]) for n in kinds},
        grade_mask={n: np.stack([out[2][n] for _, out in kept]) for n in kinds},
        study_uids=tuple(r.study_uid for r, _ in kept),
    )


def random_recrop(
    crops: Tensor,
    size_px: int,
    shift_px: float = 0.0,
    rotate_rad: float = 0.0,
    intensity: float = 0.0,
    generator: torch.Generator | None = None,
    planes: int = 1,
    mirror: bool = False,
    flip_cc: bool = False,
) -> Tensor:
    """Random central re-crops of cached crops: uniform shift, rotation and intensity scale/shift per crop.

    Args:
        crops: (B, K, S_out, S_out) cached crops (``S_out >= size_px``, same mm per pixel).
        size_px: output side S.
        shift_px: largest shift of the centre along each axis, in crop pixels.
        rotate_rad: largest rotation.
        intensity: ``x * (1 + a) + b`` with a, b uniform in [-intensity, intensity].
        generator: random stream (None: torch's global one).
        planes: P consecutive crops (one landmark's planes, K = L * P) get the same shift, rotation and intensity.
        mirror: reverse the lateral order of a landmark's planes with probability 1/2 (a left-right mirror of the
            patient: an asymmetric finding moves to the other side and keeps its grade).
        flip_cc: flip a landmark's crops cranio-caudally (all its planes) with probability 1/2.

    Returns:
        (B, K, S, S); with all amplitudes 0, exactly the central S x S pixels.
    """
    b, k, so, _ = crops.shape
    n = b * k
    x = crops.reshape(n, 1, so, so).float()

    def uniform(*shape: int) -> Tensor:  # one draw per landmark, repeated over its planes
        draw = torch.rand(shape[0] // planes, *shape[1:], generator=generator) * 2.0 - 1.0
        return draw.repeat_interleave(planes, dim=0).to(x.device)

    angle, shift = uniform(n) * rotate_rad, uniform(n, 2) * shift_px
    cos, sin, ratio = angle.cos(), angle.sin(), size_px / so
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = ratio * cos, -ratio * sin, ratio * sin, ratio * cos
    theta[:, :, 2] = shift * (2.0 / so)  # pixels -> normalized coordinates of the cached crop
    grid = F.affine_grid(theta, [n, 1, size_px, size_px], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if intensity > 0:
        scale = 1.0 + uniform(n, 1, 1, 1) * intensity
        offset = uniform(n, 1, 1, 1) * intensity
        out = out * scale + offset
    out = out.reshape(b, k // planes, planes, size_px, size_px)
    if mirror and planes > 1:
        flip = torch.rand(b, k // planes, generator=generator).to(x.device) < 0.5
        out = torch.where(flip[:, :, None, None, None], out.flip(2), out)
    if flip_cc:
        flip = torch.rand(b, k // planes, generator=generator).to(x.device) < 0.5
        out = torch.where(flip[:, :, None, None, None], out.flip(3), out)
    return out.reshape(b, k, size_px, size_px)


__all__ = ["CropSet", "build_cropset", "outer_size", "random_recrop"]
