"""Temperature scaling during training: collect the validation grade logits, fit one temperature per grade kind.

Where the logits come from: the validation step already runs the network with the ground-truth landmarks as the
grading points (the call that gives the validation loss), so the temperatures are fitted on the grade logits at the
**ground-truth landmarks** of the validation split, against their annotated grades. This calibrates the grade head
alone, with exact targets and no extra forward pass; at prediction time the same head reads the decoded points,
which lie within a few pixels of those landmarks. (Fitting at the decoded points would mix localization errors
into the grade NLL: a point decoded on the wrong level is graded against another disc's label.) Landmarks without
a grade (empty label, outside the field of view) are left out, as in the loss.

The fit runs at the end of every validation epoch (not the sanity check) on that epoch's outputs, so every
checkpoint written after it (``best.ckpt``, ``last.ckpt``) carries the temperatures of its own weights, under
``checkpoint["calibration"]``::

    {"temperatures": {kind: T}, "fits": {kind: {temperature, n, nll_before, nll_after}},
     "fitted_on": "validation grade logits at the ground-truth landmarks", "seconds": s}

:class:`spine_kp.inference.predictor.Predictor` divides each kind's logits by its T (T = 1 for a checkpoint without
the entry). The validation mAP that picks ``best.ckpt`` is computed before the fit, with T = 1. The objective and
search are in :mod:`spine_kp.evaluation.calibration`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import Tensor

from spine_kp.checkpoint import CALIBRATION_KEY
from spine_kp.evaluation.calibration import TemperatureFit, fit_temperature
from spine_kp.inference.infer import TrainedLabels
from spine_kp.schema import Schema

CHECKPOINT_KEY = CALIBRATION_KEY
FITTED_ON = "validation grade logits at the ground-truth landmarks"

KindArrays = dict[str, tuple[np.ndarray, np.ndarray]]  # kind -> ((N, G) logits, (N, G) multi-hot targets)
StudyLogits = dict[str, tuple[np.ndarray, np.ndarray]]  # the same for the graded landmarks of one study's image


class GradeLogits:
    """The graded landmarks' logits and targets of one validation epoch, per study and kind (kept on the CPU).

    Keyed by study UID, so the DDP ranks' parts merge without the studies the distributed sampler repeated
    (:func:`spine_kp.engine.gather.gather_by_study`).
    """

    def __init__(self) -> None:
        self.studies: dict[str, StudyLogits] = {}

    def clear(self) -> None:
        self.studies = {}

    def add(
        self,
        logits: Mapping[str, Tensor],
        targets: Mapping[str, Tensor],
        mask: Mapping[str, Tensor],
        study_uids: Sequence[str],
    ) -> None:
        """Keep the graded landmarks of one batch.

        Args:
            logits: kind -> (B, K_kind, G) grade logits at the ground-truth landmarks.
            targets: kind -> (B, K_kind, G) multi-hot grades.
            mask: kind -> (B, K_kind) bool, the landmark has a grade.
            study_uids: (B,) the study of each image.
        """
        for kind, z in logits.items():
            m = mask[kind].detach().bool().cpu().numpy()
            zs, ys = z.detach().float().cpu().numpy(), targets[kind].detach().float().cpu().numpy()
            for i, uid in enumerate(study_uids):
                self.studies.setdefault(uid, {})[kind] = (zs[i][m[i]], ys[i][m[i]])

    def arrays(self) -> KindArrays:
        """kind -> ((N, G) logits, (N, G) targets) of everything added (:func:`stack_studies`)."""
        return stack_studies(self.studies)


def stack_studies(studies: Mapping[str, StudyLogits]) -> KindArrays:
    """kind -> ((N, G) logits, (N, G) targets) of several studies, in study UID order (so the same studies give the
    same arrays whichever DDP rank validated which)."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for uid in sorted(studies):
        for kind, pair in studies[uid].items():
            parts.setdefault(kind, []).append(pair)
    return {kind: (np.concatenate([z for z, _ in p]), np.concatenate([y for _, y in p])) for kind, p in parts.items()}


@dataclass(frozen=True)
class Calibration:
    """Fitted temperatures of one set of weights.

    Attributes:
        temperatures: kind -> T (divides that kind's grade logits).
        fits: kind -> the fit's details.
        seconds: time the fits took.
    """

    temperatures: dict[str, float]
    fits: dict[str, TemperatureFit]
    seconds: float = 0.0

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "temperatures": dict(self.temperatures),
            "fits": {k: f.to_dict() for k, f in self.fits.items()},
            "fitted_on": FITTED_ON,
            "seconds": self.seconds,
        }

    @classmethod
    def from_checkpoint(cls, entry: Mapping[str, Any] | None) -> Calibration | None:
        """Read back :meth:`to_checkpoint` (None for a checkpoint without the entry)."""
        if not entry:
            return None
        fits = {k: TemperatureFit(**f) for k, f in entry.get("fits", {}).items()}
        temps = {k: float(t) for k, t in entry["temperatures"].items()}
        return cls(temps, fits, float(entry.get("seconds", 0.0)))


def fit_calibration(arrays: KindArrays, schema: Schema, trained: TrainedLabels, min_points: int) -> Calibration:
    """One temperature per kind of the schema (T = 1 for a kind with fewer than ``min_points`` graded landmarks).

    Args:
        arrays: kind -> ((N, G) logits, (N, G) targets), from :class:`GradeLogits`.
        trained: the trained grades (the others are impossible at prediction time, so also in the fit).
        min_points: least graded landmarks of a kind to fit its T.
    """
    t0 = time.perf_counter()
    fits = {}
    for kind in schema.kinds:
        z, y = arrays.get(kind.name, (np.zeros((0, len(kind.grades))), np.zeros((0, len(kind.grades)))))
        fits[kind.name] = fit_temperature(z, y, kind.multi_label, trained.grades[kind.name], min_points=min_points)
    return Calibration({k: f.temperature for k, f in fits.items()}, fits, time.perf_counter() - t0)
