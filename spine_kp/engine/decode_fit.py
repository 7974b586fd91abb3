"""Level-order decoding settings learned from the run's own studies, in place of constants swept on one data set.

Why: the decoder (:mod:`spine_kp.codec.level_order`) may declare the ends of the chain outside the image
(``decode.absent_score``) and tolerates steps of a given relative length (``decode.step_tolerance``). Their best
values depend on the data: a set whose fields of view always reach the sacrum wants no absent ends at all (a weak but
present L5-S1 declared absent is a miss), while a set cut at L1 needs them; a constant swept once on one development
set fitted that set. So once the model is trained, its own annotated studies choose them. All of them, not only the
validation split: whether a data set's images show the sacrum or T12 is a property of the set that the training
images show as well, and on the Tianchi set's 12 validation studies per fold the choice was noise (one fold chose
absent ends that then dropped 7 landmarks of its 30 test studies, whose images all show every level).

What is fitted, on the finished checkpoint predicting the annotated slices it is given (training gives those of its
training and validation studies): the network runs once per slice, the heatmaps' candidate peaks are found once
(they do not depend on the fitted settings), and the chain is decoded through them with every combination of
:data:`GRID` (the cranial end's absent score, the caudal end's, and the step tolerance; the config's
own values are added to each axis). The combination that places the most annotated landmarks within 8 mm of the
annotated point of the same identification wins (a landmark declared absent while annotated is a miss; the count is
over the model's trained landmarks). Ties go to the combination nearest the config's own values, so a fit that has
nothing to choose changes nothing. A set whose images always show the sacrum thus learns never to declare L5-S1
absent, and one cut at L1 learns to let T12 go.

Stored in the checkpoint under ``"decode_fit"``::

    {"absent_score": a, "absent_score_caudal": c, "step_tolerance": t, "within": hits / n at the chosen values,
     "config_within": hits / n at the config's, "n_landmarks": n, "n_studies": s, "grid": {"a/c/t": share},
     "grid_keys": [...], "fitted_on": "...", "seconds": ...}

:meth:`spine_kp.inference.torch_predictor.Predictor.from_checkpoint` decodes with the fitted values (an explicit
``decode=`` override still wins). The fit is in-sample: judge the result on held-out data.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spine_kp.checkpoint import DECODE_FIT_KEY, write_entry
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.codec.level_order import LevelOrderConfig, decode_candidates, heatmap_candidates
from spine_kp.engine.annotated_slices import load_annotated_slices
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM, within_radius
from spine_kp.inference.network_outputs import decode_trained
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import StudyIndex
from spine_kp.types import Slice, StudyRecord

log = logging.getLogger(__name__)

ABSENT_SCORES = (0.0, 0.02, 0.05, 0.1, 0.15, 0.25)
STEP_TOLERANCES = (0.3, 0.4, 0.6)
#: The decode settings the fit chooses, and the grid of each.
FITTED = ("absent_score", "absent_score_caudal", "step_tolerance")
GRID = {"absent_score": ABSENT_SCORES, "absent_score_caudal": ABSENT_SCORES, "step_tolerance": STEP_TOLERANCES}
FITTED_ON = "the run's training and validation studies, annotated slices: landmarks within 8 mm of their own level"


def count_within(
    coords: np.ndarray, peaks: np.ndarray, slices: Sequence[Slice], truth: Sequence[Mapping[str, tuple[float, float]]],
    names: Sequence[str], radius: float = DEFAULT_RADIUS_MM,
) -> tuple[int, int]:  # fmt: skip
    """(hits, annotated) over a batch: annotated landmarks whose same-identification point is within ``radius`` mm.

    Args:
        coords: (B, K, 2) decoded points in ORIGINAL pixels of each slice.
        peaks: (B, K) their scores; 0 means declared absent (a miss when annotated).
        slices: the B slices (their spacing converts pixels to mm).
        truth: per slice, identification -> annotated (x, y) in the same pixels.
        names: the K identifications, schema order.
    """
    hits = total = 0
    for i, slc in enumerate(slices):
        for k, name in enumerate(names):
            if name not in truth[i]:
                continue
            total += 1
            if peaks[i, k] <= 0:
                continue
            if within_radius(coords[i, k], truth[i][name], slc.spacing, radius):  # the evaluator's 8 mm test
                hits += 1
    return hits, total


def fit_decode(
    checkpoint: str | Path,
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    device: str = "cpu",
    batch_size: int = 8,
    grid: Mapping[str, Sequence[float]] = GRID,
) -> dict[str, Any] | None:
    """Choose the :data:`FITTED` decode settings on ``records``' annotated slices (see the module docstring).

    Returns:
        The checkpoint entry, or None when no record could be predicted or none has an annotated trained landmark.
    """
    t0 = time.perf_counter()
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    loaded = load_annotated_slices(records, studies, predictor.slices_needed(), "decode fit")
    slices = [slc for _, slc in loaded]
    truth = [{p.identification: p.coord for p in rec.primary.points} for rec, _ in loaded]
    if not slices:
        return None
    names = predictor.schema.landmarks
    keep = predictor.trained.landmarks
    heatmaps, geoms = [], []
    for i in range(0, len(slices), batch_size):
        images, g = predictor.prepare(slices[i : i + batch_size])
        views = [predictor.network.run(images)[0]]
        if predictor.decode.flip_tta:  # decoded as predict will: the mirrored view's heatmaps averaged in
            views.append(predictor.network.run(images, mirrored=True)[0][..., ::-1])
        heatmaps.append(np.mean(views, axis=0, dtype=np.float32))
        geoms += g
    hm = np.concatenate(heatmaps)
    base = predictor.decode
    trained_truth = [{n: xy for n, xy in t.items() if n in names and keep[names.index(n)]} for t in truth]
    own = tuple(_effective(base, k) for k in FITTED)  # always on the grid: the fit is compared with the config
    axes = [sorted({*map(float, grid[k]), own[i]}) for i, k in enumerate(FITTED)]
    scores: dict[tuple[float, ...], int] = {}
    total = 0
    decode = _decoder(hm, predictor.codec, base, keep)
    for values in itertools.product(*axes):
        coords, peaks = decode(dataclasses.replace(base, **dict(zip(FITTED, values))))
        original = np.stack([g.to_original(coords[i].astype(np.float64)) for i, g in enumerate(geoms)])
        scores[values], total = count_within(original, np.asarray(peaks), slices, trained_truth, names)
    if total == 0:
        return None
    best = max(scores.values())
    # Ties go to the values nearest the config's own, so a fit with nothing to choose changes nothing.
    chosen = min(
        (v for v, hits in scores.items() if hits == best), key=lambda v: (sum(abs(a - b) for a, b in zip(v, own)), v)
    )
    return {
        **dict(zip(FITTED, chosen)),
        "within": best / total,
        "config_within": scores[own] / total,
        "n_landmarks": total,
        "n_studies": len(slices),
        "grid": {"/".join(f"{x:g}" for x in v): hits / total for v, hits in scores.items()},
        "grid_keys": list(FITTED),
        "fitted_on": FITTED_ON,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def _decoder(
    hm: np.ndarray, codec: HeatmapCodec, base: LevelOrderConfig, keep: np.ndarray
) -> Callable[[LevelOrderConfig], tuple[np.ndarray, np.ndarray]]:
    """``cfg -> decode_trained(hm, codec, cfg, keep)`` for settings that differ from ``base`` in :data:`FITTED` only,
    with the candidate peaks found once (most of a decode's time is their sub-pixel refinement)."""
    if not base.enabled or int(keep.sum()) < 2:  # no chain to decode: each call decodes the heatmaps plainly
        return lambda cfg: decode_trained(hm, codec, cfg, keep)
    xy, cand = heatmap_candidates(hm[:, keep], codec, base.top_k)

    def decode(cfg: LevelOrderConfig) -> tuple[np.ndarray, np.ndarray]:
        coords = np.zeros((*hm.shape[:2], 2), dtype=np.float32)
        peaks = np.zeros(hm.shape[:2], dtype=np.float32)
        coords[:, keep], peaks[:, keep] = decode_candidates(xy, cand, cfg)
        return coords, peaks

    return decode


def _effective(cfg: LevelOrderConfig, key: str) -> float:
    """The value of ``key`` the decoder uses (an unset caudal absent score is the cranial one)."""
    return cfg.caudal_absent_score if key == "absent_score_caudal" else float(getattr(cfg, key))


def fit_decode_checkpoints(
    checkpoints: Sequence[str | Path | None],
    records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    device: str = "cpu",
) -> dict[str, dict[str, Any]]:
    """Fit and store the decoding settings of each existing checkpoint (each on its own predictions).

    Returns:
        checkpoint path -> the entry written.
    """
    done: dict[str, dict[str, Any]] = {}
    for path in checkpoints:
        if path is None or not Path(path).is_file() or str(path) in done:
            continue
        entry = fit_decode(path, records, studies, device=device)
        if entry is None:
            continue
        write_entry(path, DECODE_FIT_KEY, entry)
        done[str(path)] = entry
        log.info(
            "decode fit of %s: absent_score %g (caudal %g), step_tolerance %g (validation within 8 mm %.3f; config's "
            "%.3f)", Path(path).name, entry["absent_score"], entry["absent_score_caudal"], entry["step_tolerance"],
            entry["within"], entry["config_within"],
        )  # fmt: skip
    return done


__all__ = ["FITTED", "GRID", "count_within", "fit_decode", "fit_decode_checkpoints"]
