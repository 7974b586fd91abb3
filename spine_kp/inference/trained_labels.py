"""Which landmarks and grades a model was trained on (a model card section: :mod:`spine_kp.inference.card`).

Untrained landmarks are never predicted and untrained grades keep probability 0, in every backend. Nothing here
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from spine_kp.schema import Schema

if TYPE_CHECKING:
    from spine_kp.data.labels import LabelStats


@dataclass(frozen=True)
class TrainedLabels:
    """Which landmarks and grades the model was trained on; the others are never predicted.

    Attributes:
        landmarks: (K,) bool in schema order.
        grades: kind -> (G,) bool.
    """

    landmarks: np.ndarray
    grades: dict[str, np.ndarray]

    @classmethod
    def all(cls, schema: Schema) -> TrainedLabels:
        return cls(
            np.ones(schema.num_landmarks, dtype=bool),
            {k.name: np.ones(len(k.grades), dtype=bool) for k in schema.kinds},
        )

    @classmethod
    def from_stats(cls, schema: Schema, stats: LabelStats | None) -> TrainedLabels:
        """What the training label statistics say was trained (everything when there are none)."""
        if stats is None:
            return cls.all(schema)
        return cls(stats.landmark_mask(), {k.name: stats.grade_mask(k.name) for k in schema.kinds})


__all__ = ["TrainedLabels"]
