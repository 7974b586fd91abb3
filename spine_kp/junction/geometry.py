"""Where the lumbosacral junction check looks, what its answers mean for the chain, and the relabelled chain.

Numpy only (the ONNX Runtime predictor shares it). Frames: points are (x, y) pixels of one frame with square-enough
pixels (the network's input frame at predict time, the slice's own pixels in training); schema order is
cranio-caudal, and the caudal-most disc of the schema (L5-S1) is the junction the levels are counted from.

**Candidates.** Five disc positions around the caudal end of a decoded chain: the three lowest discs the chain
places, ``c[0..2]`` (cranial to caudal), and two discs extrapolated below the lowest, ``c[3]`` and ``c[4]``: each
step repeats the last disc-to-disc step, turned by the chain's last change of direction (the lordosis goes on into
the sacrum's curve; the turn is capped at 20 degrees per step) and scaled by its last change of length (capped at
0.8-1.25)::

    s1 = c2 - c1,  s0 = c1 - c0,  turn = angle(s1) - angle(s0),  ratio = |s1| / |s0|
    c3 = c2 + R(turn) s1 ratio,   c4 = c3 + R(2 turn) s1 ratio^2

**Classes.** A crop centred on a disc candidate is classified by its offset from the junction in discs:
:data:`OFFSETS` ``(-2, -1, 0, 1, 2)``, -2 meaning two or more above, 2 two or more below.

**Hypotheses.** "The junction is candidate ``2 + o``" for ``o`` in :data:`HYPOTHESES` ``(-1, 0, 1)``; its
log-likelihood is ``sum_i log p_i(clip(i - 2 - o, -2, 2))`` over the five candidates (crops classified
independently). The decoded chain itself says ``o = 0`` when it places L5-S1, ``o = 1`` when L5-S1 is its only
missing caudal disc (declared outside the image), and nothing otherwise.

**Relabelling.** Choosing ``o`` makes candidate ``2 + o`` L5-S1. The chain's points keep their positions and move
along the schema by ``d = (last - o * n) - m`` indices (``m`` the schema index of the lowest placed disc, ``last``
that of L5-S1, ``n`` the schema indices per level: 2 where vertebrae and discs alternate). A label that gets no point
is placed where its own heatmap peaks near the position one level on from its neighbour (``snap``), or declared
absent when that lies outside the image, its heatmap does not respond there, or the peak found is not beyond the
placed landmark next to it by at least half the expected gap (it would break the cranio-caudal order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

OFFSETS = (-2, -1, 0, 1, 2)
HYPOTHESES = (-1, 0, 1)
N_CANDIDATES = 5
MAX_TURN = math.radians(20.0)
RATIO_RANGE = (0.8, 1.25)


def _rotate(v: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * v[0] - s * v[1], s * v[0] + c * v[1]])


def disc_candidates(discs: np.ndarray) -> np.ndarray | None:
    """The five disc candidates (see the module docstring) from the chain's placed discs.

    Args:
        discs: (D, 2) xy of the placed discs, cranial to caudal (D >= 3 needed).

    Returns:
        (5, 2) float64 xy, or None with fewer than three discs or a degenerate chain (a zero step).
    """
    d = np.asarray(discs, dtype=np.float64).reshape(-1, 2)
    if len(d) < 3 or not np.isfinite(d).all():
        return None
    c0, c1, c2 = d[-3:]
    s0, s1 = c1 - c0, c2 - c1
    n0, n1 = float(np.hypot(*s0)), float(np.hypot(*s1))
    if n0 <= 1e-6 or n1 <= 1e-6:
        return None
    turn = math.atan2(s1[1], s1[0]) - math.atan2(s0[1], s0[0])
    turn = (turn + math.pi) % (2 * math.pi) - math.pi
    turn = max(-MAX_TURN, min(MAX_TURN, turn))
    ratio = max(RATIO_RANGE[0], min(RATIO_RANGE[1], n1 / n0))
    c3 = c2 + _rotate(s1, turn) * ratio
    c4 = c3 + _rotate(s1, 2 * turn) * ratio * ratio
    return np.stack([c0, c1, c2, c3, c4])


def candidate_classes(junction: int) -> np.ndarray:
    """(5,) class indices (into :data:`OFFSETS`) of the five candidates when candidate ``junction`` is L5-S1."""
    i = np.arange(N_CANDIDATES)
    return np.clip(i - junction, OFFSETS[0], OFFSETS[-1]) - OFFSETS[0]


def hypothesis_log_likelihoods(log_probs: np.ndarray) -> dict[int, float]:
    """``{o: log-likelihood}`` of "the junction is candidate 2 + o" for o in :data:`HYPOTHESES`.

    Args:
        log_probs: (5, 5) log class probabilities, candidate x offset class.
    """
    lp = np.asarray(log_probs, dtype=np.float64)
    rows = np.arange(N_CANDIDATES)
    return {o: float(lp[rows, candidate_classes(2 + o)].sum()) for o in HYPOTHESES}


def chain_hypothesis(placed_discs: Sequence[int], disc_indices: Sequence[int]) -> int | None:
    """The hypothesis the decoded chain itself makes: 0 when its lowest placed disc is the schema's last (L5-S1), 1
    when it is the one before (L5-S1 declared absent), None otherwise.

    Args:
        placed_discs: schema indices of the discs the chain placed.
        disc_indices: schema indices of every disc, cranial to caudal.
    """
    if not len(placed_discs):
        return None
    rank = list(disc_indices).index(max(placed_discs))
    missing = len(disc_indices) - 1 - rank
    return missing if missing in (0, 1) else None


def choose_hypothesis(log_likelihoods: dict[int, float], current: int | None, margin: float) -> int:
    """The hypothesis to act on: the most likely one, unless it beats the chain's own (``current``) by ``margin`` or
    less (then the chain's). With no chain hypothesis, the most likely."""
    best = max(HYPOTHESES, key=lambda o: log_likelihoods[o])
    if current is None or current not in log_likelihoods:
        return best
    return best if log_likelihoods[best] - log_likelihoods[current] > margin else current


def snap(heatmap: np.ndarray, guess: np.ndarray, radius: float) -> tuple[np.ndarray, float] | None:
    """The maximum of ``heatmap`` within ``radius`` pixels of ``guess``.

    Args:
        heatmap: (h, w) one channel.
        guess: (2,) xy in heatmap cells.
        radius: cells.

    Returns:
        ``(xy (2,) cells, value)``, or None when ``guess`` lies outside the heatmap.
    """
    h, w = heatmap.shape
    x, y = float(guess[0]), float(guess[1])
    if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
        return None
    r = max(1, int(math.ceil(radius)))
    x0, x1 = max(0, int(x) - r), min(w, int(x) + r + 2)
    y0, y1 = max(0, int(y) - r), min(h, int(y) + r + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    window = np.where(inside, heatmap[y0:y1, x0:x1], -np.inf)
    k = int(np.argmax(window))
    iy, ix = divmod(k, window.shape[1])
    if not np.isfinite(window.flat[k]):
        return None
    return np.array([x0 + ix, y0 + iy], dtype=np.float64), float(window.flat[k])


def _in_own_slot(
    xy: np.ndarray, chain: np.ndarray, placed: np.ndarray, t: int, inner: int, outer: int, per_level: int
) -> bool:
    """Whether a point found for label ``t`` lies beyond its placed neighbour on the chain's side by at least half the
    expected gap, along the outward step ``chain[inner] - chain[outer]`` (one level): a snapped point that falls back
    onto, or behind, the landmark next to it would break the cranio-caudal order."""
    step = chain[inner] - chain[outer]
    length = float(np.hypot(*step))
    if length <= 1e-6:
        return False
    towards = 1 if inner > t else -1
    gap = next(s for s in range(1, per_level + 1) if placed[t + towards * s])  # inner itself is placed
    neighbour = chain[t + towards * gap]
    beyond = float((xy - neighbour) @ step) / length
    return beyond >= 0.5 * length * gap / per_level


def relabel_chain(
    coords: np.ndarray,
    peaks: np.ndarray,
    heatmaps: np.ndarray,
    shift: int,
    per_level: int,
    stride: float,
    snap_radius: float,
    trained: np.ndarray,
    min_peak: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """The chain moved ``shift`` schema indices along (``new[j + shift] = old[j]``), the labels left without a point
    placed from their own heatmaps.

    Args:
        coords: (K, 2) xy input pixels, schema order; peaks: (K,) (0: not placed).
        heatmaps: (K, h, w) the decoded heatmaps, ``stride`` input pixels per cell (cell centres at
            ``(u + 0.5) * stride - 0.5``, :func:`spine_kp.codec.heatmap.cells_to_pixels`).
        shift: schema indices to move by, a multiple of ``per_level`` (positive: towards caudal labels).
        per_level: schema indices per level.
        snap_radius: input pixels around the extrapolated position searched for the label's heatmap maximum.
        trained: (K,) bool, the landmarks the model places at all.
        min_peak: a label whose heatmap stays below this near its extrapolated position is not placed (the
            decoder's ``min_score``).

    Returns:
        ``(coords (K, 2), peaks (K,))`` float32, untrained and absent landmarks at (0, 0) with peak 0.
    """
    k = len(coords)
    old_xy = np.asarray(coords, dtype=np.float64)
    old_pk = np.asarray(peaks, dtype=np.float64)
    placed = (old_pk > 0) & trained
    new_xy = np.zeros((k, 2), dtype=np.float64)
    new_pk = np.zeros(k, dtype=np.float64)
    new_placed = np.zeros(k, dtype=bool)
    for j in np.flatnonzero(placed):
        t = j + shift
        if 0 <= t < k and trained[t]:
            new_xy[t], new_pk[t], new_placed[t] = old_xy[j], old_pk[j], True
    # fill the labels left empty on the side the chain moved away from (caudal for shift <= 0: with no shift, an
    # L5-S1 the decoding declared absent), outwards from the placed ones
    caudal = shift <= 0
    for t in range(k) if caudal else range(k - 1, -1, -1):
        if new_placed[t] or not trained[t]:
            continue
        inner = t - per_level if caudal else t + per_level  # the same kind one level back towards the chain
        outer = inner - per_level if caudal else inner + per_level
        if not (0 <= inner < k and 0 <= outer < k and new_placed[inner] and new_placed[outer]):
            continue
        guess = 2 * new_xy[inner] - new_xy[outer]
        found = snap(heatmaps[t], (guess + 0.5) / stride - 0.5, snap_radius / stride)
        if found is None or found[1] < min_peak:
            continue
        xy = (found[0] + 0.5) * stride - 0.5
        if not _in_own_slot(xy, new_xy, new_placed, t, inner, outer, per_level):
            continue
        new_xy[t], new_pk[t], new_placed[t] = xy, found[1], True
    new_xy[~new_placed] = 0.0
    return new_xy.astype(np.float32), new_pk.astype(np.float32)


__all__ = [
    "HYPOTHESES",
    "N_CANDIDATES",
    "OFFSETS",
    "candidate_classes",
    "chain_hypothesis",
    "choose_hypothesis",
    "disc_candidates",
    "hypothesis_log_likelihoods",
    "relabel_chain",
    "snap",
]
