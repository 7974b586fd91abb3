"""The junction check at predict time: candidates, crops, hypotheses and the relabelled chain (no torch here).

Shared by the PyTorch check (:class:`JunctionCheck`, in :mod:`spine_kp.inference.junction_torch`) and the ONNX
Runtime one; a subclass only supplies :meth:`JunctionCheckBase.logits`, the crop CNN on a (N, 1, S, S) batch. What the
check decides and why is :mod:`spine_kp.junction.geometry`'s docstring.

Shapes: B slices, K landmarks (schema order), h x w heatmap cells, S crop side. Frames: ``coords`` are input pixels
(the network's frame, where the heatmaps live); crops are cut from the slice's own pixels through each slice's
:class:`~spine_kp.data.preprocess.Geometry`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spine_kp.data.preprocess import Geometry
from spine_kp.grading.crops import extract_crops
from spine_kp.junction.config import JunctionConfig
from spine_kp.junction.geometry import (
    HYPOTHESES,
    chain_hypothesis,
    choose_hypothesis,
    disc_candidates,
    hypothesis_log_likelihoods,
    relabel_chain,
)
from spine_kp.schema import Schema
from spine_kp.types import Slice


@dataclass(frozen=True)
class JunctionLayout:
    """Which schema landmarks the check reads: ``discs`` the schema indices of the junction's kind (the kind of the
    schema's last landmark), cranial to caudal; ``per_level`` schema indices per level."""

    discs: tuple[int, ...]
    per_level: int

    @classmethod
    def of(cls, schema: Schema) -> JunctionLayout | None:
        """The layout of ``schema``, None when it cannot be checked (fewer than three landmarks of the last kind, or
        unevenly spaced in the schema order)."""
        kinds = schema.landmark_kinds
        discs = tuple(i for i, k in enumerate(kinds) if k == kinds[-1])
        steps = {b - a for a, b in zip(discs, discs[1:])}
        if len(discs) < 3 or len(steps) != 1:
            return None
        return cls(discs, steps.pop())


def crop_angle(candidates: np.ndarray, spacing: tuple[float, float]) -> float:
    """Radians that turn the last disc-to-disc step of the candidates (original pixels) straight down the crop."""
    step = candidates[2] - candidates[1]
    return math.atan2(step[0] * spacing[1], step[1] * spacing[0])


def junction_crops(
    slc: Slice, candidates: np.ndarray, cfg: JunctionConfig, window_mm: float | None = None
) -> np.ndarray:
    """(5, 1, S, S) float32 crops of ``slc`` centred on the five candidates (original pixels), one rotation for all."""
    angle = crop_angle(candidates, slc.spacing)
    window = cfg.window_mm if window_mm is None else window_mm
    crops = extract_crops(slc.pixels, candidates, slc.spacing, cfg.size_px, window, np.full(len(candidates), angle))
    return crops[:, None]


def in_image(points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(N,) bool: which (x, y) points (original pixels) lie on the slice of ``shape`` (rows, cols)."""
    h, w = shape[-2:]
    p = np.asarray(points, dtype=np.float64)
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


class JunctionCheckBase:
    """The crop CNN with its config and the schema's layout; the CNN itself is abstract.

    Args:
        config: the check's config (crop geometry, ``margin``, ``snap_mm``).
        schema: landmark set.
    """

    def __init__(self, config: JunctionConfig, schema: Schema) -> None:
        layout = JunctionLayout.of(schema)
        if layout is None:
            kind = schema.landmark_kinds[-1]
            raise ValueError(f"schema {schema.name!r} has no evenly spaced chain of three or more {kind} landmarks")
        self.config = config
        self.schema = schema
        self.layout = layout

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """The crop CNN on (N, 1, S, S) float32 crops: (N, 5) logits."""
        raise NotImplementedError

    def log_probs(self, batch: np.ndarray) -> np.ndarray:
        """(N, 5) log class probabilities of (N, 1, S, S) crops."""
        z = np.asarray(self.logits(np.ascontiguousarray(batch, dtype=np.float32)), dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    def check(
        self,
        slices: Sequence[Slice],
        geoms: Sequence[Geometry],
        coords: np.ndarray,
        peaks: np.ndarray,
        heatmaps: np.ndarray,
        stride: int,
        trained: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Check every slice's chain and move the labels where another disc is the junction. A chain with fewer than
        three placed discs, or whose slice ends less than a disc step below its lowest disc, is left as it is.

        Args:
            slices, geoms: the slices and their input geometries.
            coords: (B, K, 2) input pixels; peaks: (B, K) (0: not placed).
            heatmaps: (B, K, h, w) the decoded heatmaps; stride: input pixels per cell.
            trained: (K,) bool, the landmarks the model places.

        Returns:
            ``(coords, peaks, shifts)``: the chains (new arrays), and per slice the schema indices its labels moved by
            (0: unchanged).
        """
        coords = np.array(coords, dtype=np.float32, copy=True)
        peaks = np.array(peaks, dtype=np.float32, copy=True)
        trained = np.asarray(trained, dtype=bool)
        discs, n = self.layout.discs, self.layout.per_level
        last = discs[-1]
        shifts = []
        plans = []
        batch = []
        for i, (slc, g) in enumerate(zip(slices, geoms)):
            placed = [j for j in discs if peaks[i, j] > 0 and trained[j]]
            cand = disc_candidates(coords[i, placed]) if trained[last] else None
            if cand is None:
                plans.append(None)
                continue
            original = g.to_original(cand)
            if not in_image(original[3:4], slc.pixels.shape)[0]:
                # the slice ends less than a disc step below the chain: the check learnt the junction with the sacrum
                # in view (on the Tianchi studies at least a level of image below L5-S1), and here its crops would look
                # at the image's edge. On Tianchi studies cut above the sacrum it moved no chain to its right level
                # (scripts/bench_cut_series.py); on water-fat studies whose field of view ends at the sacrum it moved
                # right chains off. The chain keeps its labels.
                plans.append(None)
                continue
            plans.append((placed, len(batch)))
            batch.append(junction_crops(slc, original, self.config))
        lp = self.log_probs(np.concatenate(batch)) if batch else np.zeros((0, 5))
        for i, plan in enumerate(plans):
            if plan is None:
                shifts.append(0)
                continue
            placed, at = plan
            ll = hypothesis_log_likelihoods(lp[at * 5 : at * 5 + 5])
            current = chain_hypothesis(placed, discs)
            o = choose_hypothesis(ll, current, self.config.margin)
            if o == current:
                shifts.append(0)
                continue
            shift = (last - o * n) - max(placed)
            snap_px = self.config.snap_mm / geoms[i].input_spacing[0]
            coords[i], peaks[i] = relabel_chain(coords[i], peaks[i], heatmaps[i], shift, n, stride, snap_px, trained)
            shifts.append(int(shift))
        return coords, peaks, shifts


__all__ = [
    "HYPOTHESES",
    "JunctionCheckBase",
    "JunctionLayout",
    "crop_angle",
    "in_image",
    "junction_crops",
]
