"""Level-order decoding: choose one heatmap peak per landmark so the spine reads in anatomical order.

Per-channel argmax decodes every landmark alone, so a strong response of L5 in the L4 channel, or two
channels locking onto the same disc, is never noticed. Here each channel offers its top ``M`` peak
candidates and a chain dynamic programme (Viterbi over the landmarks in schema order, which is cranio-caudal)
picks one candidate per channel minimising::

    sum_k  -w_peak * log(score_k)                                   (unary: trust strong peaks)
  + sum_k  w_step * ((|d_k| - s) / (tol * s))^2                     (consecutive steps of plausible length)
  + sum_k  w_order * relu(margin * s - <d_k, a>) / s                (each step goes caudally along the axis)

with d_k the vector from landmark k to k+1, ``s`` the expected step (median of the steps between the
channels' best peaks, which is robust to a few wrong channels) and ``a`` the cranio-caudal axis (principal
direction of the best peaks, oriented down the image: sagittal MR is shown head up, and the loader keeps the
DICOM row order, whose column direction points to the feet in standard sagittal acquisitions). Vertebrae and
discs alternate in the default schema, so one step is half a motion segment.

Ends outside the image: a field of view often starts below T12 or ends above S1. A chain that must place every
landmark then pushes the levels it does see along by one (T12 put on the topmost visible body, L1 on L2, ...).
So the landmarks at either END of the chain may instead be declared absent, at a fixed cost
``-w_peak * log(absent_score * typical)`` each and with no step terms, ``typical`` being the median of the
channels' best peaks in this image (relative, so a weakly trained network does not call its whole chain absent):
the chain keeps a landmark only when its peak and its geometry together cost less than calling it outside the
image. Only a prefix and a suffix of the chain can be absent; a gap in the middle cannot (a visible spine has no
missing level). ``absent_score = 0`` disables this; ``absent_score_caudal`` gives the caudal end its own score (0: the
caudal end, L5-S1 in a lumbar series, is always placed, the anchor the levels are counted from).

Frames: candidates are (x, y) in any pixel frame with square-enough pixels (the input frame of the network).

All of it is numpy (prediction through ONNX Runtime needs no torch); tensors in give tensors out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from spine_kp.codec.heatmap import HeatmapCodec, as_numpy, cells_to_pixels
from spine_kp.config import bounded, check_bounds


@dataclass(frozen=True)
class LevelOrderConfig:
    """Weights of the level-order cost; defaults are tuned on phantom studies (see scripts/bench_level_order.py)."""

    enabled: bool = True
    top_k: int = bounded(5, ge=1, le=64)
    w_peak: float = bounded(1.0, ge=0)
    w_step: float = bounded(1.0, ge=0)
    step_tolerance: float = bounded(0.4, gt=0)
    w_order: float = bounded(20.0, ge=0)
    order_margin: float = bounded(0.3, ge=0)
    min_score: float = bounded(1e-4, gt=0, lt=1)
    absent_score: float = bounded(0.15, ge=0, lt=1)  # relative to the image's median best peak; 0: no absent ends
    # The caudal end's own absent score (None: absent_score). A data set whose images always show the sacrum wants
    # 0 here: L5-S1 is the anchor the levels are counted from, never declared outside the image.
    absent_score_caudal: float | None = bounded(None, ge=0, lt=1)
    # Training chooses absent_score, absent_score_caudal and step_tolerance on its validation split
    # (spine_kp.engine.decode_fit) and stores them in the checkpoint; the values above are then only the starting
    # point and the tie-breaker.
    fit: bool = True
    # Predict with the anterior-posterior mirrored image averaged in (heatmaps mirrored back, grade probabilities),
    # unless `predict --flip-tta` / `--no-flip-tta` says otherwise. A model card setting: a config that was
    # cross-validated with it (tianchi_cpu) stores it in its checkpoints and exports.
    flip_tta: bool = False
    # Per landmark, write at least this many grades as scored points (the most probable first, each scored
    # confidence x p(grade)), unless `predict --top-k-grades` says otherwise: SPEC's way to express alternatives,
    # which lets AP rank every grade. The best-scored point stays the most probable grade, so what the competition
    # pairs (one point per landmark) is unchanged. A model card setting like flip_tta; the score calibration is
    # fitted on the points it writes.
    top_k_grades: int = bounded(0, ge=0, le=64)

    @property
    def caudal_absent_score(self) -> float:
        """The absent score of the caudal end of the chain."""
        return self.absent_score if self.absent_score_caudal is None else self.absent_score_caudal

    def __post_init__(self) -> None:
        check_bounds(self)  # the ranges next to the fields above


def _axis_and_step(xy: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Cranio-caudal unit axis and median step length from the best peak of each channel.

    Args:
        xy: (K, 2) best candidate per channel.
        weights: (K,) their scores.
    """
    k = len(xy)
    w = np.clip(weights, 0.0, None) + 1e-6  # an untrained network's peaks can be negative; weights cannot
    centre = np.average(xy, axis=0, weights=w)
    cov = np.cov((xy - centre).T, aweights=w) if k > 2 else np.eye(2)
    eigval, eigvec = np.linalg.eigh(np.atleast_2d(cov))
    axis = eigvec[:, int(np.argmax(eigval))]
    # Orient caudally: sagittal MR is displayed head up (rows run head -> feet), so the spine axis points down
    # the image (+y). A chain decoded upside down then violates the order instead of defining it.
    if axis[1] < 0 or (axis[1] == 0 and axis[0] < 0):
        axis = -axis
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    step = float(np.median(steps)) if len(steps) else 1.0
    return axis, max(step, 1e-3)


def _unary_costs(cand_scores: np.ndarray, best: np.ndarray, cfg: LevelOrderConfig, ends: bool) -> np.ndarray:
    """(K, S) cost of each state of each landmark: ``-w_peak log(score)`` of its M candidates, then (with ``ends``)
    the costs of "not started yet" (cranial end absent) and "already ended" (caudal end absent)."""
    num_k, num_m = cand_scores.shape
    # Relative to this image's typical peak, so a weakly trained network does not call its whole chain absent.
    typical = float(np.clip(np.median(cand_scores[np.arange(num_k), best]), cfg.min_score, 1.0))

    def absent_cost(score: float) -> float:  # a score of 0 makes that end impossible to declare absent
        return -cfg.w_peak * np.log(max(score * typical, cfg.min_score)) if score > 0 else np.inf

    unary = np.full((num_k, num_m + 2 if ends else num_m), np.inf)
    if ends:
        unary[:, num_m] = absent_cost(cfg.absent_score)  # cranial end: not started yet
        unary[:, num_m + 1] = absent_cost(cfg.caudal_absent_score)  # caudal end: already ended
    unary[:, :num_m] = -cfg.w_peak * np.log(np.clip(cand_scores, cfg.min_score, None))
    return unary


def decode_level_order(cand_xy: np.ndarray, cand_scores: np.ndarray, cfg: LevelOrderConfig | None = None) -> np.ndarray:
    """Choose one candidate per landmark by dynamic programming.

    Args:
        cand_xy: (K, M, 2) candidate positions per landmark (schema order), best-first per channel.
        cand_scores: (K, M) candidate peak values in [0, 1]; pad missing candidates with 0.

    Returns:
        (K,) int index of the chosen candidate per landmark; -1 for a landmark at an end of the chain declared
        outside the image (only when ``cfg.absent_score > 0``).
    """
    cfg = cfg or LevelOrderConfig()
    cand_xy = np.asarray(cand_xy, dtype=np.float64)
    cand_scores = np.asarray(cand_scores, dtype=np.float64)
    num_k, num_m = cand_scores.shape
    if num_k == 0:
        return np.zeros(0, dtype=np.int64)
    best = np.argmax(cand_scores, axis=1)
    if num_k == 1:
        return best.astype(np.int64)
    axis, step = _axis_and_step(cand_xy[np.arange(num_k), best], cand_scores[np.arange(num_k), best])

    # States per landmark: its M candidates, then (when enabled) "not started yet" and "already ended".
    ends = cfg.absent_score > 0 or cfg.caudal_absent_score > 0
    pre, post = num_m, num_m + 1
    num_s = num_m + 2 if ends else num_m
    unary = _unary_costs(cand_scores, best, cfg, ends)  # (K, S)
    cost = unary[0].copy()  # (S,)
    if ends:
        cost[post] = np.inf  # the chain cannot end before it starts
    back = np.zeros((num_k, num_s), dtype=np.int64)
    trans = np.full((num_s, num_s), np.inf)
    if ends:
        trans[pre, pre] = trans[post, post] = 0.0
        trans[pre, :num_m] = 0.0  # the chain starts here: no step into the first visible landmark
        trans[:num_m, post] = 0.0  # ... or ended at the previous one
    for k in range(1, num_k):
        d = cand_xy[k][None, :, :] - cand_xy[k - 1][:, None, :]  # (M_prev, M_cur, 2)
        length = np.linalg.norm(d, axis=-1)
        along = d @ axis
        pair = cfg.w_step * ((length - step) / (cfg.step_tolerance * step)) ** 2
        pair += cfg.w_order * np.maximum(cfg.order_margin * step - along, 0.0) / step
        trans[:num_m, :num_m] = pair
        total = cost[:, None] + trans  # (S_prev, S_cur)
        back[k] = np.argmin(total, axis=0)
        cost = total[back[k], np.arange(num_s)] + unary[k]
    choice = np.zeros(num_k, dtype=np.int64)
    choice[-1] = int(np.argmin(cost))
    for k in range(num_k - 1, 0, -1):
        choice[k - 1] = back[k, choice[k]]
    if (choice >= num_m).all():  # nothing worth keeping: fall back to the per-channel best peaks
        return best.astype(np.int64)
    return np.where(choice >= num_m, -1, choice)


def order_violations(xy: np.ndarray) -> int:
    """Number of consecutive landmark pairs whose step does not go caudally along the spine axis.

    Args:
        xy: (K, 2) decoded positions in schema order.
    """
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return 0
    axis, _ = _axis_and_step(xy, np.ones(len(xy)))
    return int(np.sum(np.diff(xy, axis=0) @ axis <= 0))


def _max_pool3(x: np.ndarray) -> np.ndarray:
    """3 x 3 maximum filter over the last two axes; outside the map counts as -inf."""
    pad = [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)]
    p = np.pad(x, pad, constant_values=-np.inf)
    rows = np.maximum(np.maximum(p[..., :-2, :], p[..., 1:-1, :]), p[..., 2:, :])
    return np.maximum(np.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def heatmap_candidates(heatmaps: Any, codec: HeatmapCodec, top_k: int) -> tuple[Any, Any]:
    """Top-``top_k`` local maxima of every heatmap, refined to sub-pixel positions by the codec.

    Args:
        heatmaps: (B, K, h, w) ndarray or tensor (computed in numpy; a tensor gets tensors back on its device).
        codec: gives the stride and the sub-cell refinement (same as its ``decode``).
        top_k: candidates per map (M); maps with fewer local maxima repeat their best one with score 0.

    Returns:
        ``(xy (B, K, M, 2) input pixels, scores (B, K, M) peak values)``, best first (ties: lower flat index first).
    """
    hm, back = as_numpy(heatmaps)
    b, k, h, w = hm.shape
    m = max(1, min(top_k, h * w))
    peaks = np.where(hm >= _max_pool3(hm), hm, np.float32(-1.0)).reshape(b, k, -1)  # non-maximum suppression
    flat = np.argsort(-peaks, axis=-1, kind="stable")[..., :m]  # (B, K, M)
    scores = np.take_along_axis(peaks, flat, axis=-1)
    real = scores > -1.0
    flat = np.where(real, flat, flat[..., :1])
    scores = np.where(real, scores, np.float32(0.0))
    uv = np.stack([flat % w, flat // w], axis=-1).astype(np.float32)  # (B, K, M, 2)
    refined = codec.refine_cells(hm.reshape(b * k, h, w), uv.reshape(b * k, m, 2)).reshape(b, k, m, 2)
    return back(cells_to_pixels(refined, codec.stride)), back(scores)


def decode_batch(heatmaps: Any, codec: HeatmapCodec, cfg: LevelOrderConfig | None = None) -> tuple[Any, Any]:
    """Decode landmarks with level-order DP (or plain per-channel decoding when ``cfg.enabled`` is False).

    Args:
        heatmaps: (B, K, h, w) ndarray or tensor, channels in schema (cranio-caudal) order.

    Returns:
        ``(coords (B, K, 2) input pixels, scores (B, K) peak values)``: float32 ndarrays, or tensors on the heatmaps'
        device for a tensor input. A landmark declared outside the image (see the module docstring) gets its
        channel's best peak as position and score 0.
    """
    cfg = cfg or LevelOrderConfig()
    if not cfg.enabled or heatmaps.shape[1] < 2:
        return codec.decode(heatmaps)
    hm, back = as_numpy(heatmaps)
    coords, picked = decode_candidates(*heatmap_candidates(hm, codec, cfg.top_k), cfg)
    return back(coords), back(picked)


def decode_candidates(xy: np.ndarray, scores: np.ndarray, cfg: LevelOrderConfig) -> tuple[np.ndarray, np.ndarray]:
    """The level-order chain through candidates already found (:func:`heatmap_candidates` with ``cfg.top_k``).

    The candidates do not depend on the chain's weights, so a caller trying several settings on the same heatmaps
    (``spine_kp.engine.decode_fit``) finds them once.

    Args:
        xy: (B, K, M, 2) candidate positions; scores: (B, K, M) their peaks, best first.

    Returns:
        ``(coords (B, K, 2), scores (B, K))`` float32, as :func:`decode_batch`.
    """
    choice = np.stack([decode_level_order(xy[i], scores[i], cfg) for i in range(len(xy))])  # (B, K)
    idx = np.maximum(choice, 0)[:, :, None]  # candidate 0 is the channel's best peak
    coords = np.take_along_axis(xy, idx[..., None], axis=2)[:, :, 0]
    picked = np.where(choice < 0, np.float32(0.0), np.take_along_axis(scores, idx, axis=2)[:, :, 0])
    return coords.astype(np.float32), picked.astype(np.float32)
