"""The ``grade_stage`` section of the experiment config: crop geometry, the crop CNN, its training, how to combine."""

from __future__ import annotations

from dataclasses import dataclass

COMBINE_MODES = ("replace", "average")


@dataclass(frozen=True)
class GradeStageConfig:
    """Second grading stage on landmark-centred crops (off by default).

    Attributes:
        enabled: train the stage after the landmark network and store it in the run's checkpoints.
        size_px: crop side in pixels.
        window_mm: crop side in mm (``window_mm / size_px`` mm per crop pixel; the phantoms' native pixels are
            0.5-0.9 mm). 56 mm holds a disc (about 35 mm deep) with room for what protrudes behind it and the
            endplates of both neighbouring bodies; on phantoms it graded discs better than 40 mm (the posterior
            margin sat at the crop's edge) and than 64 mm at 64 px.
        align: rotate each crop so the local spine axis (from the neighbouring landmarks) points down.
        kinds: the landmark kinds the stage grades (the others keep the grade head's grades); empty: every kind.
        per_kind: one network per graded kind instead of one shared by all kinds.
        channels: widths of the stride-2 conv blocks. (24, 48, 96, 128) ranked bulges, protrusions and extrusions
            better than (16, 32, 64, 96) on phantoms (crop-level AP of the asymmetric bulge 0.43 -> 0.84-0.91).
        depth: convolutions per block (the first downsamples). 2 graded discs better than 1 on phantoms.
        pool: "avg" (global average pooling of the last block) or "avgmax" (average and max, concatenated; with
            the stronger augmentation below it was what let the stage find Schmorl-type nodes in unseen studies).
        embed_dim: width of the landmark-identity embedding.
        hidden: width of the layer before the per-kind classifiers.
        dropout: dropout before the classifiers.
        epochs, lr, weight_decay, batch_size: training (AdamW, cosine schedule; batch of slices, all landmarks).
            With 200 studies an epoch is about 11 steps; 20 epochs left the stage under-trained (held-out
            phantom mAP 0.60 against 0.76 with 60).
        jitter_mm: uniform shift of the crop centre in training (covers the localization error at predict time).
        rotate_deg: uniform extra rotation in training.
        intensity: amplitude of the random intensity scale (1 +- a) and shift (+- a) in training.
            With 58 training examples, an intravertebral node was memorized (training AP 0.99, held-out 0.2) at
            2 mm / 8 degrees / 0.15; 3 mm / 12 degrees / 0.25 with ``pool: avgmax`` generalized (held-out 0.7).
            4 mm / 15 degrees blurred the diffuse bulge (its AP fell from 0.9 to 0.7).
        combine: "replace" (crop probabilities only) or "average" (mean with the grade head's) at predict time.
        pos_weight_power: multi-label positives weigh ``(negatives / positives) ** p`` (capped at 50): 1 is the
            full inverse-frequency weight, 0.5 its square root, 0 no weighting. Single-label kinds keep their
            inverse-square-root class weights.
        focal_gamma: > 0 turns the multi-label BCE into a focal loss (RetinaNet) that down-weighs easy examples.
        neighbours: n parasagittal slices on each side whose crops (same geometry) join each landmark's, as input
            planes of the crop CNN (2n + 1 planes); 0: the slice alone. Lateral findings (an asymmetric bulge, a
            paramedian herniation or node) barely show on the middle slice. Defaults to 2 (measured on phantoms:
            with ``mirror`` it lifted the asymmetric bulge's AP from 0.20 to 0.67).
        mirror: in training, reverse the lateral order of a landmark's parasagittal planes half of the time (a
            left-right mirror: an asymmetric bulge or a paramedian finding keeps its grade on the other side); only
            with ``neighbours`` > 0.
        flip_cc: in training, flip a landmark's crop cranio-caudally half of the time (the level stays known from the
            identity embedding; an extrusion may migrate either way, a node may sit in either endplate).
        logit_adjust: tau of logit-adjusted training (Menon et al., 2021): during training each grade's logit is
            shifted by ``tau * log`` of its training prior (odds, for multi-label kinds); prediction reads the
            unshifted logits, which moves probability towards rare grades without re-weighting examples.
        load_workers: threads decoding the training slices.
        min_train_studies: the stage trains only when the training split holds at least this many studies; with
            fewer a crop CNN learns less than the grade head already knows, so it is skipped (and logged).
    """

    enabled: bool = False
    size_px: int = 48
    window_mm: float = 56.0
    align: bool = True
    kinds: tuple[str, ...] = ()
    per_kind: bool = True
    channels: tuple[int, ...] = (24, 48, 96, 128)
    depth: int = 2
    embed_dim: int = 16
    hidden: int = 128
    dropout: float = 0.1
    epochs: int = 60
    lr: float = 0.002
    weight_decay: float = 0.0001
    batch_size: int = 16
    jitter_mm: float = 3.0
    rotate_deg: float = 12.0
    intensity: float = 0.25
    combine: str = "replace"
    load_workers: int = 2
    min_train_studies: int = 20
    pos_weight_power: float = 1.0
    focal_gamma: float = 0.0
    logit_adjust: float = 0.0
    neighbours: int = 2
    mirror: bool = True
    pool: str = "avgmax"
    flip_cc: bool = False

    def __post_init__(self) -> None:
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"grade_stage.combine must be one of {COMBINE_MODES}, got {self.combine!r}")
        if self.size_px < 8 or not self.window_mm > 0:
            raise ValueError(f"grade_stage: size_px must be >= 8 and window_mm > 0 ({self.size_px}, {self.window_mm})")
        if not self.channels or min(self.channels) < 1 or self.depth < 1:
            raise ValueError(
                f"grade_stage: channels must be positive widths and depth >= 1 ({self.channels}, {self.depth})"
            )
        if self.pool not in ("avg", "avgmax"):
            raise ValueError(f"grade_stage.pool must be 'avg' or 'avgmax', got {self.pool!r}")
        if self.neighbours < 0:
            raise ValueError(f"grade_stage.neighbours must be >= 0, got {self.neighbours}")
        if self.pos_weight_power < 0 or self.focal_gamma < 0 or self.logit_adjust < 0:
            raise ValueError(
                "grade_stage: pos_weight_power, focal_gamma and logit_adjust must be >= 0 "
                f"({self.pos_weight_power}, {self.focal_gamma}, {self.logit_adjust})"
            )
        if self.epochs < 0 or self.batch_size < 1 or self.jitter_mm < 0 or self.rotate_deg < 0 or self.intensity < 0:
            raise ValueError("grade_stage: epochs, jitter_mm, rotate_deg, intensity must be >= 0 and batch_size >= 1")

    @property
    def planes(self) -> int:
        """Input planes per landmark of the crop CNN (2 * neighbours + 1)."""
        return 2 * self.neighbours + 1

    @property
    def step_mm(self) -> float:
        """mm per crop pixel."""
        return self.window_mm / self.size_px
