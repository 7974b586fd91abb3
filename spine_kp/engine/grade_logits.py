"""The grade logits of a validation epoch, collected for the temperature fit (:mod:`spine_kp.calibration.fit`).

Where the logits come from: the validation step already runs the network with the ground-truth landmarks as the
grading points (the call that gives the validation loss), so the temperatures are fitted on the grade logits at the
**ground-truth landmarks** of the validation split, against their annotated grades. This calibrates the grade head
alone, with exact targets and no extra forward pass; at prediction time the same head reads the decoded points,
which lie within a few pixels of those landmarks. (Fitting at the decoded points would mix localization errors
into the grade NLL: a point decoded on the wrong level is graded against another disc's label.) Landmarks without
a grade (empty label, outside the field of view) are left out, as in the loss. The crop grading stage collects its
validation crops' logits the same way (:mod:`spine_kp.engine.grade_stage_train`).

The fit runs at the end of every validation epoch (not the sanity check) on that epoch's outputs, so every
checkpoint written after it (``best.ckpt``, ``last.ckpt``) carries the temperatures of its own weights, under
``checkpoint["calibration"]`` (:class:`spine_kp.calibration.fit.Calibration`)::

    {"temperatures": {kind: T}, "fits": {kind: {temperature, n, nll_before, nll_after}},
     "fitted_on": "validation grade logits at the ground-truth landmarks", "seconds": s}

:class:`spine_kp.inference.torch_predictor.Predictor` divides each kind's logits by its T (T = 1 for a checkpoint
without the entry). The validation mAP that picks ``best.ckpt`` is computed before the fit, with T = 1.

Shapes: B images, K_kind landmarks of a kind, G grades of that kind, N graded landmarks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

from spine_kp.calibration.fit import KindArrays

StudyLogits = dict[str, tuple[np.ndarray, np.ndarray]]  # kind -> ((N, G) logits, (N, G) targets) of one image


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
