"""General phantom pretraining: domain-randomised phantom studies -> a checkpoint to fine-tune from.

Used by ``spine-kp pretrain``. Layout of the output folder::

    OUT/phantoms/studies/, OUT/phantoms/annotations.json   the randomised phantom set (``synth --randomize``)
    OUT/config.yaml, OUT/checkpoints/best.ckpt, last.ckpt  the training run (as ``spine-kp train``)
    OUT/logs/                                              TensorBoard and CSV logs

Both stages resume: a complete phantom set is reused (an incomplete one is rewritten), and ``resume=True``
continues training from ``OUT/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spine_kp.engine.config import ExperimentConfig
from spine_kp.engine.train import TrainResult, replace_data_paths, train
from spine_kp.schema import load_schema
from spine_kp.synth import make_dataset

PRETRAIN_STUDIES = 300  # packaged default: synth + training fit in 30 minutes on 2 CPU cores (measured ~17)
PRETRAIN_SIZE = 288  # sagittal matrix rows of the phantoms: ~1 mm pixels, more than the 1.6 mm input needs


@dataclass
class PretrainResult:
    """The phantom set, the training run and the seconds per stage."""

    phantoms: Path
    train: TrainResult
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def checkpoint(self) -> Path | None:
        return self.train.best_checkpoint or self.train.last_checkpoint


def _complete(folder: Path, n_studies: int) -> bool:
    """A phantom set written to the end (annotations are written last) with ``n_studies`` studies."""
    ann = folder / "annotations.json"
    if not ann.exists():
        return False
    studies = folder / "studies"
    return studies.is_dir() and sum(1 for p in studies.iterdir() if p.is_dir()) == n_studies


def run_pretrain(
    cfg: ExperimentConfig,
    out: str | Path,
    studies: int = PRETRAIN_STUDIES,
    seed: int = 0,
    workers: int = 2,
    resume: bool = False,
    size: int | None = PRETRAIN_SIZE,
    log: Callable[[str], None] = print,
) -> PretrainResult:
    """Write (or reuse) the randomised phantom set, then train ``cfg`` on it into ``out``.

    Args:
        cfg: the training experiment (packaged default ``pretrain_cpu``); its data paths are replaced.
        out: output folder (see the module docstring).
        studies: number of phantom studies (5 % or ``cfg.data.val_fraction`` of them validate).
        seed: phantom-set seed.
        workers: synth processes.
        resume: continue training from ``out/checkpoints/last.ckpt`` when it exists.
        size: sagittal matrix rows of the phantoms (None: 384-512 drawn per study, slower).
        log: progress messages.
    """
    if studies < 2:
        raise ValueError(f"pretrain needs at least 2 phantom studies, got {studies}")
    out = Path(out)
    phantoms = out / "phantoms"
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    if _complete(phantoms, studies):
        log(f"1/2 reusing the {studies} randomised phantom studies in {phantoms}")
    else:
        log(f"1/2 writing {studies} randomised phantom studies to {phantoms} (seed {seed})")
        summary = make_dataset(
            phantoms, studies, seed, size=size, workers=workers, schema=load_schema(cfg.schema), overwrite=True,
            axial=False, randomize=True,
        )  # fmt: skip
        log(summary.describe())
    seconds["synth"] = time.perf_counter() - t
    t = time.perf_counter()
    last = out / "checkpoints" / "last.ckpt"
    resuming = resume and last.exists()
    log(f"2/2 training {cfg.model.backbone} + {cfg.model.decoder} for {cfg.trainer.max_epochs} epochs"
        + (f" (resuming from {last})" if resuming else ""))  # fmt: skip
    result = train(replace_data_paths(cfg, phantoms / "studies", phantoms / "annotations.json"), out, resume=resuming)
    seconds["train"] = time.perf_counter() - t
    return PretrainResult(phantoms, result, seconds)
