"""The ``junction`` section of the experiment config: crop geometry, the crop CNN's training, the decision margin."""

from __future__ import annotations

from dataclasses import dataclass

from spine_kp.config import bounded, check_bounds


@dataclass(frozen=True)
class JunctionConfig:
    """Check of the level count at the lumbosacral junction (off by default; :mod:`spine_kp.junction`).

    Attributes:
        enabled: train the check after the landmark network (and the crop grading stage) and store it in the run's
            checkpoints; predict then applies it.
        size_px, window_mm: crop side in pixels and in mm. 96 mm holds the disc, the bodies on both sides and
            the start of the sacrum's curve.
        channels: widths of the stride-2 blocks (two conv3x3-GN-GELU each), then average and max pooling.
        dropout: before the classifier.
        epochs, lr, weight_decay, batch_size, warmup_epochs, min_lr_ratio: training (AdamW, warm-up and cosine
            decay: the landmark network's schedule).
        jitter_mm, rotate_deg, scale: training augmentation: a normal shift of every crop centre (sd, mm), one
            normal extra rotation per chain (sd, degrees), and a uniform window scale of 1 +- ``scale``.
        margin: log-likelihood by which another junction must beat the decoded chain's own before the labels move
            (0: the most likely one wins).
        snap_mm: radius around a label's extrapolated position searched for its heatmap maximum, when the move
            leaves it without a point.
        min_train_studies: fewer training studies with L5-S1 and two discs above it annotated skip the check.
    """

    enabled: bool = False
    size_px: int = bounded(96, ge=16, le=512)
    window_mm: float = bounded(96.0, gt=0, le=500)
    channels: tuple[int, ...] = bounded((16, 32, 64, 96), ge=1, le=4096)
    dropout: float = bounded(0.2, ge=0, lt=1)
    epochs: int = bounded(40, ge=0)
    lr: float = bounded(0.002, gt=0)
    weight_decay: float = bounded(0.0001, ge=0)
    batch_size: int = bounded(32, ge=1)
    warmup_epochs: float = bounded(1.0, ge=0)
    min_lr_ratio: float = bounded(0.01, ge=0, le=1)
    jitter_mm: float = bounded(3.0, ge=0)
    rotate_deg: float = bounded(8.0, ge=0, le=180)
    scale: float = bounded(0.1, ge=0, lt=1)
    margin: float = bounded(0.0, ge=0)
    snap_mm: float = bounded(12.0, gt=0)
    min_train_studies: int = bounded(20, ge=0)

    def __post_init__(self) -> None:
        check_bounds(self)  # the ranges next to the fields above
        if not self.channels:
            raise ValueError("junction.channels must list at least one width")
