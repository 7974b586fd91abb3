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

:class:`spine_kp.predict.predictor.Predictor` divides each kind's logits by its T (T = 1 for a checkpoint without
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

from spine_kp.evaluation.calibration import TemperatureFit, fit_temperature
from spine_kp.predict.infer import TrainedLabels
from spine_kp.schema import Schema

CHECKPOINT_KEY = "calibration"
FITTED_ON = "validation grade logits at the ground-truth landmarks"

KindArrays = dict[str, tuple[np.ndarray, np.ndarray]]  # kind -> ((N, G) logits, (N, G) multi-hot targets)


class GradeLogits:
    """The graded landmarks' logits and targets of one validation epoch, per kind (kept on the CPU)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}

    def clear(self) -> None:
        self._parts = {}

    def add(self, logits: Mapping[str, Tensor], targets: Mapping[str, Tensor], mask: Mapping[str, Tensor]) -> None:
        """Keep the graded landmarks of one batch.

        Args:
            logits: kind -> (B, K_kind, G) grade logits at the ground-truth landmarks.
            targets: kind -> (B, K_kind, G) multi-hot grades.
            mask: kind -> (B, K_kind) bool, the landmark has a grade.
        """
        for kind, z in logits.items():
            m = mask[kind].bool()
            part = (z.detach()[m].float().cpu().numpy(), targets[kind].detach()[m].float().cpu().numpy())
            self._parts.setdefault(kind, []).append(part)

    def arrays(self) -> KindArrays:
        """kind -> ((N, G) logits, (N, G) targets) of everything added."""
        return {kind: tuple(np.concatenate(a) for a in zip(*parts)) for kind, parts in self._parts.items()}


def merge(parts: Sequence[KindArrays]) -> KindArrays:
    """Concatenate the arrays of several processes (DDP ranks), kind by kind."""
    kinds = dict.fromkeys(k for p in parts for k in p)
    return {k: tuple(np.concatenate([p[k][i] for p in parts if k in p]) for i in (0, 1)) for k in kinds}


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
