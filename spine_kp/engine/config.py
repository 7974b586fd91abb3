"""The experiment configuration: one typed tree loaded from YAML (``configs/*.yaml``) plus dotted overrides.

Sections: ``model`` (registry keys and widths), ``codec`` (heatmap stride/sigma), ``data`` (input size,
augmentation, split), ``loss``, ``optim``, ``trainer`` (Lightning: accelerator, devices, precision,
strategy), ``decode`` (level-order decoding), ``calibration`` (grade temperature scaling),
``grade_stage`` (the optional crop grading stage, see :mod:`spine_kp.grading`), ``junction`` (the optional check of
the level count, :mod:`spine_kp.junction`) and ``seed``/``deterministic``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import (
    BOUNDS,
    BoundsError,
    ConfigError,
    apply_overrides,
    bounded,
    check_bounds,
    from_dict,
    load_yaml,
    to_dict,
)
from spine_kp.data.datamodule import DataConfig
from spine_kp.grading.config import GradeStageConfig
from spine_kp.junction.config import JunctionConfig
from spine_kp.models.net import ModelConfig
from spine_kp.schema import CONFIG_DIR
from spine_kp.yaml_files import resolve_yaml


@dataclass(frozen=True)
class CodecConfig:
    """Heatmap targets: Gaussian sigma in heatmap cells and sub-pixel refinement (the stride is the model's).

    The codec built from it is stored in every checkpoint (``spine_kp.checkpoint``), so prediction decodes as trained.
    """

    sigma: float = bounded(2.0, gt=0, le=64)
    refine: str = "dark"
    blur_sigma: float | None = bounded(None, gt=0, le=64)  # DARK refinement's smoothing sigma in cells (None: sigma)

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and their weights."""

    heatmap: str = "mse"  # "mse" | "focal"
    heatmap_weight: float = bounded(1.0, ge=0)
    absent_weight: float = bounded(0.0, ge=0)  # > 0: landmarks moved out of view are trained towards an empty heatmap
    grade_weight: float = bounded(1.0, ge=0)
    grade_focal_gamma: float = bounded(0.0, ge=0)  # > 0: focal BCE for the multi-label kinds
    class_weights: bool = True  # re-weight rare grades (inverse sqrt frequency / BCE pos_weight)
    deep_supervision_weight: float = bounded(1.0, ge=0)  # weight of each intermediate hourglass stack's heatmap loss
    grade_on_gt_points: bool = True  # teacher forcing: sample grade features at the annotated points

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay (per step)."""

    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(1e-4, ge=0)
    warmup_epochs: float = bounded(1.0, ge=0)
    min_lr_ratio: float = bounded(0.01, ge=0, le=1)
    grad_clip: float = bounded(1.0, ge=0)  # 0: no clipping

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class TrainerConfig:
    """What Lightning's Trainer gets; everything GPU / multi-GPU is set here."""

    max_epochs: int = bounded(50, ge=1)
    accelerator: str = "auto"  # "cpu" | "gpu" | "auto"
    devices: Any = "auto"  # int (-1: all), list of device indices, or "auto"
    num_nodes: int = bounded(1, ge=1)
    strategy: str = "auto"  # "ddp" for several GPUs / nodes
    precision: str = "32-true"  # "16-mixed" | "bf16-mixed" on GPU
    check_val_every_n_epoch: int = bounded(1, ge=1)
    log_every_n_steps: int = bounded(10, ge=1)
    monitor: str = "val/mAP"
    monitor_mode: str = "max"
    early_stopping_patience: int = bounded(0, ge=0)  # 0 disables EarlyStopping
    limit_train_batches: Any = bounded(None, gt=0)  # a fraction (float) or a number of batches (int)
    limit_val_batches: Any = bounded(None, gt=0)
    accumulate_grad_batches: int = bounded(1, ge=1)
    progress_bar: bool = True
    benchmark: bool = False

    def __post_init__(self) -> None:
        check_bounds(self)
        if self.monitor_mode not in ("min", "max"):
            raise BoundsError("monitor_mode", f"must be 'min' or 'max', got {self.monitor_mode!r}")
        for name in ("limit_train_batches", "limit_val_batches"):  # Lightning: a fraction in (0, 1] or a count
            limit = getattr(self, name)
            if isinstance(limit, float) and limit > 1:
                raise BoundsError(name, f"must be a fraction in (0, 1] or a number of batches (an int), got {limit}")
        devices = self.devices
        if isinstance(devices, bool) or not (
            devices == "auto"
            or (isinstance(devices, int) and (devices >= 1 or devices == -1))
            or (isinstance(devices, str) and devices.strip() not in ("", "0"))  # Lightning's "0,1" or "-1"
            or (isinstance(devices, list) and devices and all(isinstance(d, int) and d >= 0 for d in devices))
        ):
            raise BoundsError(
                "devices", f"must be 'auto', a count >= 1 (-1: all), or a list of device indices, got {devices!r}"
            )


@dataclass(frozen=True)
class CalibrationConfig:
    """Temperature scaling of the grade probabilities, fitted on the validation split every validation epoch and
    stored in each checkpoint (see :mod:`spine_kp.engine.grade_logits`, :mod:`spine_kp.calibration.fit`); and, with
    ``scores``, Platt scaling of the emitted scores per kind, fitted once training (and the crop stage) is done
    (:mod:`spine_kp.engine.score_map_fit`)."""

    enabled: bool = True
    # a kind with fewer graded validation landmarks keeps T = 1 (fewer scored pairs: no map)
    min_points: int = bounded(20, ge=1)
    scores: bool = True

    def __post_init__(self) -> None:
        check_bounds(self)


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything needed to train (and, stored in the checkpoint, to predict)."""

    schema: str = "default"
    seed: int = bounded(0, ge=0, le=2**32 - 1)  # what numpy's and Lightning's seeding accept
    deterministic: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    decode: LevelOrderConfig = field(default_factory=LevelOrderConfig)
    grade_stage: GradeStageConfig = field(default_factory=GradeStageConfig)
    junction: JunctionConfig = field(default_factory=JunctionConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def __post_init__(self) -> None:
        check_bounds(self)
        # Cross-section rules (each section checks its own ranges), named by the key to change.
        divisor = self.model.size_divisor
        size = list(self.data.input_size)
        if any(s % divisor for s in size):
            lower = [max(divisor, s // divisor * divisor) for s in size]
            upper = [-(-s // divisor) * divisor for s in size]
            raise BoundsError(
                "data.input_size",
                f"must be multiples of {divisor} (the stride of model {self.model.backbone!r} + "
                f"{self.model.decoder!r}), got {size}; e.g. {lower} or {upper}",
            )
        channels = input_channels(self.data.neighbours)
        if self.model.in_chans != channels:  # load_experiment derives it; only a contradicting value is left here
            raise BoundsError(
                "model.in_chans",
                f"must be 2 * data.neighbours + 1 = {channels} (the input's slices), got {self.model.in_chans}; "
                "leave model.in_chans out: it is derived from data.neighbours",
            )


def input_channels(neighbours: int) -> int:
    """The network's input channels for ``neighbours`` slices on each side: the slice and its neighbours."""
    return 2 * neighbours + 1


def derive_settings(data: dict[str, Any]) -> dict[str, Any]:
    """The plain-data config with the settings that follow from others filled in (a copy when it changes).

    ``model.in_chans`` is ``2 * data.neighbours + 1``: a config leaves it out (an old config or checkpoint that states
    it is accepted when it agrees, and refused naming both keys when it does not).
    """
    model, section = data.get("model") or {}, data.get("data")
    neighbours = section.get("neighbours", 0) if isinstance(section, dict) else 0
    bounds = next(f for f in fields(DataConfig) if f.name == "neighbours").metadata[BOUNDS]
    if not isinstance(model, dict) or "in_chans" in model or type(neighbours) is not int:
        return data  # stated, or a malformed section: from_dict names the key
    if not bounds.within(neighbours):
        return data  # DataConfig names data.neighbours, not the in_chans derived from it
    return {**data, "model": {**model, "in_chans": input_channels(neighbours)}}


def resolve_config_path(name: str | Path) -> Path:
    """A config file path, or a packaged config name (``demo_cpu`` -> spine_kp/configs/demo_cpu.yaml).

    A name with a folder separator or a ``.yaml`` / ``.yml`` suffix is a path; any other word is a packaged name,
    whatever the working folder holds (see :func:`spine_kp.yaml_files.resolve_yaml`).
    """
    return resolve_yaml(name, CONFIG_DIR, "config", ConfigError)


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
    return from_dict(ExperimentConfig, derive_settings(data), source=source)


def experiment_to_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    return to_dict(cfg)
