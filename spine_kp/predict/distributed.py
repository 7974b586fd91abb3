"""Distributed prediction through Lightning (``trainer.predict``): every rank predicts a shard of the studies,
a prediction writer saves each rank's shard, and rank 0 merges the shards into one run.

Lightning's distributed sampler pads the last shard by repeating studies so every rank gets the same number;
:func:`merge_shards` removes those duplicates. Works with ``--devices N --strategy ddp`` on one machine and with
``--num-nodes`` under torchrun / SLURM (see README).
"""

from __future__ import annotations

import dataclasses
import pickle
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from spine_kp.inference.slice_predictor import SlicePrediction
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.io.dicom import StudyIndex, scan
from spine_kp.predict.runner import PredictOptions, PredictRun, StudyFailure, load_study


class StudyDataset(Dataset):
    """Studies -> decoded middle slices (or the failure), loaded in the DataLoader workers."""

    def __init__(self, studies: Sequence[StudyIndex], neighbours: int) -> None:
        self.studies = list(studies)
        self.neighbours = neighbours

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, i: int) -> Any:
        return load_study(self.studies[i], self.neighbours)


class PredictModule(pl.LightningModule):
    """Wraps a :class:`Predictor` so Lightning places its model on each rank's device."""

    def __init__(self, predictor: Predictor, options: PredictOptions) -> None:
        super().__init__()
        self.predictor = predictor
        self.model = predictor.model
        self.grader = predictor.grade_stage.model if predictor.grade_stage is not None else None
        self.options = options

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # decoded slices stay on the CPU; the predictor moves the prepared tensors itself

    def predict_step(self, batch: list[Any], batch_idx: int, dataloader_idx: int = 0) -> list[Any]:
        self.predictor.device = self.device
        slices = [b for b in batch if not isinstance(b, StudyFailure)]
        out: list[Any] = [b for b in batch if isinstance(b, StudyFailure)]
        if slices:
            out += self.predictor.predict(
                slices,
                flip_tta=self.options.flip_tta,
                fuse_neighbours=self.options.fuse_neighbours,
                top_k_grades=self.options.top_k_grades,
            )
        return out


#: What a shard may rebuild: spine_kp's own result dataclasses, numpy arrays and scalars, paths and plain containers.
#: The shard folder lies beside the checkpoint, where another user of a shared cluster might write: an unpickler that
#: resolves only these cannot be made to call ``os.system``, ``numpy.load`` or a spine_kp function that writes files.
_SHARD_BUILTINS = {"tuple", "list", "dict", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bool"}
_NUMPY_MODULES = ("numpy", "numpy.core.multiarray", "numpy._core.multiarray", "numpy.dtypes")
_NUMPY_NAMES = {"_reconstruct", "scalar", "dtype", "ndarray"}


class _ShardUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        ok = (module == "builtins" and name in _SHARD_BUILTINS) or (module, name) == ("collections", "OrderedDict")
        ok |= module in _NUMPY_MODULES and (name in _NUMPY_NAMES or name.endswith("DType"))
        ok |= module == "pathlib" and name in {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}
        if not ok and module.startswith("spine_kp.") and "." not in name:
            found = super().find_class(module, name)
            ok = isinstance(found, type) and dataclasses.is_dataclass(found)  # a result type, never a function
        if not ok:
            raise pickle.UnpicklingError(f"a prediction shard may not load {module}.{name}")
        return super().find_class(module, name)


def load_shard(path: str | Path) -> Any:
    """Read one rank's shard, resolving only spine_kp's result types, numpy and plain containers."""
    with open(path, "rb") as fh:
        return _ShardUnpickler(fh).load()


class ShardWriter(BasePredictionWriter):
    """Collects each rank's predictions batch by batch and writes ``<dir>/shard_<rank>.pkl`` at the epoch end.

    Batch-wise collection keeps Lightning from moving the (frozen dataclass) results between devices, which
    epoch-wise writing would do.
    """

    def __init__(self, out_dir: str | Path) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self._items: list[Any] = []

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self._items.extend(prediction)

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / f"shard_{trainer.global_rank}.pkl", "wb") as fh:
            pickle.dump(self._items, fh)
        self._items = []


def merge_shards(shards: Iterable[Sequence[SlicePrediction | StudyFailure]]) -> PredictRun:
    """Merge per-rank results into one run: one entry per study (padding duplicates dropped), sorted by study."""
    preds: dict[str, SlicePrediction] = {}
    fails: dict[str, StudyFailure] = {}
    for shard in shards:
        for item in shard:
            if isinstance(item, StudyFailure):
                fails.setdefault(item.study, item)
            else:
                preds.setdefault(item.slice.study_uid, item)
    run = PredictRun()
    run.predictions = [preds[k] for k in sorted(preds)]
    run.failures = [fails[k] for k in sorted(fails) if k not in preds]
    return run


def predict_distributed(
    data_root: str | Path,
    checkpoint: str | Path,
    predictor: Predictor,
    options: PredictOptions,
    devices: int,
    strategy: str = "ddp",
    num_nodes: int = 1,
    accelerator: str | None = None,
    shard_dir: str | Path | None = None,
) -> PredictRun | None:
    """Predict a data root on ``devices`` x ``num_nodes`` processes; returns the merged run on rank 0, else None.

    Args:
        shard_dir: folder every rank can reach (same path on all ranks) for the per-rank shards; default
            ``<checkpoint folder>/.predict_shards``. Removed after the merge.
    """
    t0 = time.perf_counter()
    result = scan(data_root, workers=max(1, options.workers))
    scan_time = time.perf_counter() - t0
    studies = [result.studies[uid] for uid in sorted(result.studies)]
    want = predictor.slices_needed(options.fuse_neighbours)
    loader = DataLoader(
        StudyDataset(studies, want),
        batch_size=options.batch_size,
        num_workers=max(0, options.workers),
        collate_fn=list,
    )
    shard_dir = Path(shard_dir) if shard_dir is not None else Path(checkpoint).resolve().parent / ".predict_shards"
    if accelerator is None:
        accelerator = "gpu" if predictor.device.type == "cuda" else "cpu"
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy if strategy != "auto" else "ddp",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=options.progress,
        enable_model_summary=False,
        callbacks=[ShardWriter(shard_dir)],
    )
    module = PredictModule(predictor, options)
    t1 = time.perf_counter()
    with torch.inference_mode():
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier()
    if trainer.global_rank != 0:
        return None
    shards = []
    for rank in range(trainer.world_size):  # only this run's ranks: stale shards of another run are ignored
        shards.append(load_shard(shard_dir / f"shard_{rank}.pkl"))
    shutil.rmtree(shard_dir, ignore_errors=True)
    run = merge_shards(shards)
    run.skipped_files = [(s.path, s.reason) for s in result.skipped]
    run.timings = {"scan": scan_time, "load": 0.0, "model": time.perf_counter() - t1}
    return run
