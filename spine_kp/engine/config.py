"""The experiment configuration: one typed tree loaded from YAML (``configs/*.yaml``) plus dotted overrides.

Sections: ``model`` (registry keys and widths), ``codec`` (heatmap stride/sigma), ``data`` (input size,
augmentation, split), ``loss``, ``optim``, ``trainer`` (Lightning: accelerator, devices, precision,
strategy), ``decode`` (level-order decoding), ``calibration`` (grade temperature scaling),
``grade_stage`` (the optional crop grading stage, see :mod:`spine_kp.grading`) and ``seed``/``deterministic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import ConfigError, apply_overrides, from_dict, load_yaml, to_dict
from spine_kp.data.datamodule import DataConfig
from spine_kp.grading.config import GradeStageConfig
from spine_kp.models.net import ModelConfig
from spine_kp.schema import CONFIG_DIR


@dataclass(frozen=True)
class CodecConfig:
    """Heatmap targets: Gaussian sigma in heatmap cells and sub-pixel refinement (the stride is the model's).

    The codec built from it is stored in every checkpoint (``spine_kp.checkpoint``), so prediction decodes as trained.
    """

    sigma: float = 2.0
    refine: str = "dark"
    blur_sigma: float | None = None  # DARK refinement's smoothing sigma in cells (None: ``sigma``)


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and their weights."""

    heatmap: str = "mse"  # "mse" | "focal"
    heatmap_weight: float = 1.0
    absent_weight: float = 0.0  # > 0: landmarks moved out of view are trained towards an empty heatmap
    grade_weight: float = 1.0
    grade_focal_gamma: float = 0.0  # > 0: focal BCE for the multi-label kinds
    class_weights: bool = True  # re-weight rare grades (inverse sqrt frequency / BCE pos_weight)
    deep_supervision_weight: float = 1.0  # weight of each intermediate hourglass stack's heatmap loss
    grade_on_gt_points: bool = True  # teacher forcing: sample grade features at the annotated points


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (per step)."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    grad_clip: float = 1.0


@dataclass(frozen=True)
class TrainerConfig:
    """What Lightning's Trainer gets; everything GPU / multi-GPU is set here."""

    max_epochs: int = 50
    accelerator: str = "auto"  # "cpu" | "gpu" | "auto"
    devices: Any = "auto"  # int, list or "auto"
    num_nodes: int = 1
    strategy: str = "auto"  # "ddp" for several GPUs / nodes
    precision: str = "32-true"  # "16-mixed" | "bf16-mixed" on GPU
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    monitor: str = "val/mAP"
    monitor_mode: str = "max"
    early_stopping_patience: int = 0  # 0 disables EarlyStopping
    limit_train_batches: Any = None
    limit_val_batches: Any = None
    accumulate_grad_batches: int = 1
    progress_bar: bool = True
    benchmark: bool = False


@dataclass(frozen=True)
class CalibrationConfig:
    """Temperature scaling of the grade probabilities, fitted on the validation split every validation epoch and
    stored in each checkpoint (see :mod:`spine_kp.engine.calibration`); and, with ``scores``, Platt scaling of the
    emitted scores per kind, fitted once training (and the crop stage) is done
    (:mod:`spine_kp.engine.score_calibration`)."""

    enabled: bool = True
    min_points: int = 20  # a kind with fewer graded validation landmarks keeps T = 1 (fewer scored pairs: no map)
    scores: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything needed to train (and, stored in the checkpoint, to predict)."""

    schema: str = "default"
    seed: int = 0
    deterministic: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decode: LevelOrderConfig = field(default_factory=LevelOrderConfig)
    grade_stage: GradeStageConfig = field(default_factory=GradeStageConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or a bare name of a packaged config (``demo_cpu`` -> spine_kp/configs/demo_cpu.yaml)."""
    p = Path(name)
    if p.exists():
        return p
    packaged = CONFIG_DIR / (p.name if p.suffix else f"{p.name}.yaml")
    if packaged.exists():
        return packaged
    choices = sorted(f.stem for f in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {name!r} not found (packaged configs: {', '.join(choices)})")


def load_experiment(
    path: str | Path | None = None, overrides: dict[str, str] | None = None, base: dict[str, Any] | None = None
) -> ExperimentConfig:
    """Load an experiment config file (strict keys) and apply dotted overrides.

    Args:
        path: YAML file or packaged config name; None uses only ``base`` / defaults.
        overrides: ``{"model.backbone": "efficientnet_b0"}``.
        base: plain-data config to start from (e.g. the one stored in a checkpoint).
    """
    data: dict[str, Any] = dict(base or {})
    source = "<defaults>"
    if path is not None:
        p = resolve_config_path(path)
        data = load_yaml(p)
        source = str(p)
    if overrides:
        data = apply_overrides(data, overrides, source="command line")
        source = f"{source} + overrides"
    return from_dict(ExperimentConfig, data, source=source)


def experiment_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return to_dict(cfg)
