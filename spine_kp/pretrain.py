"""General phantom pretraining: domain-randomised phantom studies -> a checkpoint to fine-tune from.

Used by ``spine-kp pretrain``. Layout of the output folder::

    OUT/phantoms/studies/, OUT/phantoms/annotations.json   the randomised phantom set (``synth --randomize``)
    OUT/config.yaml, OUT/checkpoints/best.ckpt, last.ckpt  the training run (as ``spine-kp train``)
    OUT/logs/                                              TensorBoard and CSV logs
    OUT/member_2/, OUT/member_3/ ...                       with ``members`` > 1: the same per further phantom seed
    OUT/ensemble.ckpt                                      with ``members`` > 1: all members as one model (their mean)

Several members are for predicting with pretraining alone: their mean places more landmarks within 8 mm on real
studies than any one of them (README, "The Tianchi 2020 task", Zero-shot); ``--init`` still takes one network, the
first member's ``OUT/checkpoints/best.ckpt``.

Both stages resume: a complete phantom set is reused (an incomplete one is rewritten), and ``resume=True``
continues training from ``OUT/checkpoints/last.ckpt``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_kp.engine.config import ExperimentConfig
from spine_kp.engine.train import TrainResult, replace_data_paths, train
from spine_kp.schema import Schema, load_schema
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


def _write_phantoms(
    phantoms: Path,
    studies: int,
    seed: int,
    size: int | None,
    workers: int,
    schema: Schema,
    log: Callable[[str], None],
    **options: object,
) -> None:
    """Write the randomised phantom set (no axial series; ``options``: ``make_dataset``'s), or reuse a complete one."""
    if _complete(phantoms, studies):
        log(f"1/2 reusing the {studies} randomised phantom studies in {phantoms}")
        return
    log(f"1/2 writing {studies} randomised phantom studies ({schema.name} schema) to {phantoms} (seed {seed})")
    summary = make_dataset(
        phantoms, studies, seed, size=size, workers=workers, schema=schema, overwrite=True, axial=False,
        randomize=True, **options,
    )  # fmt: skip
    log(summary.describe())


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
    t = time.perf_counter()
    _write_phantoms(phantoms, studies, seed, size, workers, load_schema(cfg.schema), log)
    seconds = {"synth": time.perf_counter() - t}
    t = time.perf_counter()
    last = out / "checkpoints" / "last.ckpt"
    resuming = resume and last.exists()
    log(f"2/2 training {cfg.model.backbone} + {cfg.model.decoder} for {cfg.trainer.max_epochs} epochs"
        + (f" (resuming from {last})" if resuming else ""))  # fmt: skip
    result = train(replace_data_paths(cfg, phantoms / "studies", phantoms / "annotations.json"), out, resume=resuming)
    seconds["train"] = time.perf_counter() - t
    return PretrainResult(phantoms, result, seconds)


ENSEMBLE_FILE = "ensemble.ckpt"


def member_folder(out: str | Path, k: int) -> Path:
    """Member k's run folder (k from 0): ``out`` itself for the first, so its checkpoint stays the one to fine-tune
    from, ``out/member_{k + 1}`` for the others."""
    return Path(out) if k == 0 else Path(out) / f"member_{k + 1}"


def run_pretrain_members(
    cfg: ExperimentConfig, out: str | Path, members: int, seed: int = 0, **options: Any
) -> tuple[list[PretrainResult], Path]:
    """:func:`run_pretrain` ``members`` times, member k on phantom seed ``seed + k`` in :func:`member_folder`, then
    the members as one ensemble file ``out/ensemble.ckpt``. ``options``: the other arguments of :func:`run_pretrain`.

    Returns:
        The members' results and the ensemble file.
    """
    from spine_kp.checkpoint import load_checkpoint
    from spine_kp.fold_ensemble import write_ensemble

    if members < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {members}")
    results = []
    for k in range(members):
        options.get("log", print)(f"member {k + 1}/{members}: phantom seed {seed + k} -> {member_folder(out, k)}")
        results.append(run_pretrain(cfg, member_folder(out, k), seed=seed + k, **options))
    checkpoints = [r.checkpoint for r in results]
    if any(c is None for c in checkpoints):
        raise RuntimeError("a member wrote no checkpoint")
    path = write_ensemble([load_checkpoint(c) for c in checkpoints if c is not None], Path(out) / ENSEMBLE_FILE)
    return results, path


STAGE_STUDIES = 300  # phantom studies for the crop stage (measured: 3.3 min of synth on 1 core, 4.6 training)
STAGE_FILE = "grade_stage.pt"


@dataclass
class StagePretrainResult:
    """The phantom set, the stage file and the stage's training metrics."""

    phantoms: Path
    stage_file: Path
    metrics: dict[str, object]
    seconds: dict[str, float] = field(default_factory=dict)


def run_stage_pretrain(
    cfg: ExperimentConfig,
    out: str | Path,
    studies: int = STAGE_STUDIES,
    seed: int = 0,
    workers: int = 1,
    size: int | None = None,
    log: Callable[[str], None] = print,
) -> StagePretrainResult:
    """Train ``cfg``'s crop grading stage alone on randomised phantoms of ``cfg``'s schema; write ``out/grade_stage.pt``
    for ``grade_stage.init``.

    The phantoms are written as for ``pretrain`` (no axial series, no tricky cases, sagittal rows drawn per study
    unless ``size``); the first tenth of the studies validate (best epoch, temperatures), the rest train. No
    landmark network is trained: the crops are cut at the phantoms' true points.
    """
    from spine_kp.data.labels import label_stats
    from spine_kp.engine.grade_stage_init import write_stage_file
    from spine_kp.engine.grade_stage_train import train_grade_stage
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.scan import scan

    if studies < 2:
        raise ValueError(f"pretrain-stage needs at least 2 phantom studies, got {studies}")
    out = Path(out)
    phantoms = out / "phantoms"
    schema = load_schema(cfg.schema)
    t = time.perf_counter()
    _write_phantoms(phantoms, studies, seed, size, workers, schema, log, tricky=False)
    seconds = {"synth": time.perf_counter() - t}
    t = time.perf_counter()
    records = read_annotations(phantoms / "annotations.json", schema)
    index = dict(scan(phantoms / "studies").studies)
    n_val = max(1, len(records) // 10)
    train_records, val_records = records[n_val:], records[:n_val]
    log(f"2/2 training the crop grading stage for {cfg.grade_stage.epochs} epochs on {len(train_records)} studies")
    payload = train_grade_stage(
        cfg.grade_stage, schema, label_stats(train_records, schema), train_records, val_records, index,
        run_dir=out, seed=cfg.seed, accelerator="cpu" if cfg.trainer.accelerator == "cpu" else "auto",
    )  # fmt: skip
    stage_file = write_stage_file(out / STAGE_FILE, payload, schema)
    seconds["train"] = time.perf_counter() - t
    return StagePretrainResult(phantoms, stage_file, payload["metrics"], seconds)
