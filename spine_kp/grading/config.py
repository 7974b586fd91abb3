"""The ``grade_stage`` section of the experiment config: crop geometry, the crop CNN, its training, how to combine."""

from __future__ import annotations

from dataclasses import dataclass

from spine_kp.config import ConfigError, bounded, check_bounds
from spine_kp.schema import Schema

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
        warmup_epochs, min_lr_ratio: the linear warm-up's length in epochs and the cosine decay's floor as a share of
            ``lr`` (the landmark network's ``optim`` settings; one schedule, :mod:`spine_kp.engine.optim`).
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
        ordinal_kind, ordinal_grades, ordinal_smoothing: soft ordinal labels in training
            (:func:`spine_kp.engine.losses.ordinal_negative_weights`): the grades ``ordinal_grades`` of the multi-label
            kind ``ordinal_kind`` form a severity chain (e.g. disc v1 normal, v2 bulge, v3 protrusion, v4 extrusion),
            and a positive grade's chain neighbours at distance d weigh ``1 - ordinal_smoothing ** d`` as negatives;
            0: off.
        context: "none", or "mean": each landmark's hidden layer also reads the mean crop features of every landmark
            its grader reads on that slice (its kind's with ``per_kind``; :class:`spine_kp.grading.model.CropGrader`),
            through a zero-initialised addition, so ``init`` still loads a stage trained without it.
        members: crop networks of the same architecture, each from its own initialisation and trained with its own
            loss on the same batches; the stage grades with their mean logits (1: one network).
        init: a crop stage to start from instead of a fresh initialisation: a ``grade_stage.pt`` written by
            ``spine-kp pretrain-stage`` (phantom crops), or a spine_kp checkpoint or run folder holding a stage; its
            tensors of the same name and shape are copied (:mod:`spine_kp.engine.grade_stage_init`). "": none.
        load_workers: threads decoding the training slices.
        min_train_studies: the stage trains only when the training split holds at least this many studies; with
            fewer a crop CNN learns less than the grade head already knows, so it is skipped (and logged).
    """

    enabled: bool = False
    size_px: int = bounded(48, ge=8, le=512)
    window_mm: float = bounded(56.0, gt=0, le=500)
    align: bool = True
    kinds: tuple[str, ...] = ()
    per_kind: bool = True
    channels: tuple[int, ...] = bounded((24, 48, 96, 128), ge=1, le=4096)
    depth: int = bounded(2, ge=1, le=16)
    embed_dim: int = bounded(16, ge=1, le=4096)
    hidden: int = bounded(128, ge=1, le=4096)
    dropout: float = bounded(0.1, ge=0, lt=1)
    epochs: int = bounded(60, ge=0)
    lr: float = bounded(0.002, gt=0)
    weight_decay: float = bounded(0.0001, ge=0)
    warmup_epochs: float = bounded(1.0, ge=0)
    min_lr_ratio: float = bounded(0.01, ge=0, le=1)
    batch_size: int = bounded(16, ge=1)
    jitter_mm: float = bounded(3.0, ge=0)
    rotate_deg: float = bounded(12.0, ge=0, le=180)
    intensity: float = bounded(0.25, ge=0, lt=1)
    combine: str = "replace"
    load_workers: int = bounded(2, ge=0)
    min_train_studies: int = bounded(20, ge=0)
    pos_weight_power: float = bounded(1.0, ge=0)
    focal_gamma: float = bounded(0.0, ge=0)
    logit_adjust: float = bounded(0.0, ge=0)
    neighbours: int = bounded(2, ge=0, le=8)
    mirror: bool = True
    pool: str = "avgmax"
    flip_cc: bool = False
    members: int = bounded(1, ge=1, le=16)
    context: str = "none"
    ordinal_kind: str = ""
    ordinal_grades: tuple[str, ...] = ()
    ordinal_smoothing: float = bounded(0.0, ge=0, lt=1)
    init: str = ""

    def __post_init__(self) -> None:
        check_bounds(self)  # the ranges next to the fields above
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"grade_stage.combine must be one of {COMBINE_MODES}, got {self.combine!r}")
        if not self.channels:
            raise ValueError("grade_stage.channels must list at least one width")
        if self.ordinal_smoothing > 0 and (not self.ordinal_kind or len(self.ordinal_grades) < 2):
            raise ValueError("grade_stage.ordinal_smoothing needs ordinal_kind and at least 2 ordinal_grades")
        if self.context not in ("none", "mean"):
            raise ValueError(f"grade_stage.context must be 'none' or 'mean', got {self.context!r}")
        if self.pool not in ("avg", "avgmax"):
            raise ValueError(f"grade_stage.pool must be 'avg' or 'avgmax', got {self.pool!r}")

    @property
    def planes(self) -> int:
        """Input planes per landmark of the crop CNN (2 * neighbours + 1)."""
        return 2 * self.neighbours + 1

    @property
    def step_mm(self) -> float:
        """mm per crop pixel."""
        return self.window_mm / self.size_px


def ordinal_chain(cfg: GradeStageConfig, schema: Schema) -> tuple[int, ...]:
    """The grade indices of ``ordinal_grades`` in ``ordinal_kind`` (empty when ``ordinal_smoothing`` is 0).

    Raises:
        ConfigError: the kind is not in the schema or is single-label, or a grade is not one of its grades.
    """
    if cfg.ordinal_smoothing <= 0:
        return ()
    names = [k.name for k in schema.kinds]
    if cfg.ordinal_kind not in names:
        raise ConfigError(f"grade_stage.ordinal_kind {cfg.ordinal_kind!r} is not one of the schema's kinds {names}")
    kind = schema.kind(cfg.ordinal_kind)
    if not kind.multi_label:
        raise ConfigError(f"grade_stage.ordinal_kind {kind.name!r} is single-label; soft ordinal targets need its BCE")
    unknown = [g for g in cfg.ordinal_grades if g not in kind.grades]
    if unknown:
        raise ConfigError(f"grade_stage.ordinal_grades {unknown} are not grades of {kind.name!r} {list(kind.grades)}")
    return tuple(kind.grades.index(g) for g in cfg.ordinal_grades)
