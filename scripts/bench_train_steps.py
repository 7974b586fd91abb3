"""Training throughput on CPU: optimizer steps per second of a real Lightning fit, with 0 and 2 loader workers.

Usage:
    python scripts/bench_train_steps.py [--data ROOT] [--studies 24] [--config demo_cpu] [--workers 0 2]
        [--steps 10] [--warmup 3] [--repeats 2] [--threads 2]

For each worker count the script fits the config's model (random weights: speed does not depend on them) on the
training split of a phantom data root (generated in a temporary folder without --data) with Lightning, as
``spine-kp train`` does: the config's data module, augmentation, loss and optimizer, no validation, no logger and
no checkpoints. Every training image is prepared once before the fit (through a disk cache shared by the runs),
so the timed steps read slices from the memory cache (forked workers inherit it): the figure is the steady state
of an epoch after the first. Steps are timed from the end of step ``--warmup`` to the end of the last one; each
setting runs ``--repeats`` times, alternating. Each fit takes 1 to 2 minutes on 2 CPU cores shared with other jobs.

It prints one row per run (steps/s, s/step) and, for context, what encoding a batch's heatmap targets costs in
Python (``codec.encode`` per sample, as ``training_step`` once did before the loaders took it over).

The script runs on older checkouts too (where the data module takes no codec and targets were encoded in the step),
so the same script measures before and after: ``PYTHONPATH=<checkout> python scripts/bench_train_steps.py --data
ROOT`` (the first line printed names the checkout whose ``spine_kp`` ran).
"""

from __future__ import annotations

import argparse
import inspect
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch

import spine_kp
from spine_kp.checkpoint import build_codec
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import label_stats
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.train import replace_data_paths
from spine_kp.schema import load_schema
from spine_kp.synth import make_dataset


class StepClock(pl.Callback):
    """perf_counter at the end of every training step."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.ends.append(time.perf_counter())


def build(config: str, root: Path, workers: int, cache: Path) -> tuple[LandmarkModule, SpineDataModule]:
    """The module and data module of ``config`` on ``root`` with ``workers`` loader workers, as training builds them."""
    cfg = load_experiment(config, {"data.num_workers": str(workers), "data.cache_dir": str(cache)})
    cfg = replace_data_paths(cfg, root / "studies", root / "annotations.json")
    schema = load_schema(cfg.schema)
    plain = experiment_to_dict(cfg)
    codec = build_codec(plain)
    # Older checkouts encode the targets in training_step and their data module takes no codec.
    extra = {"codec": codec} if "codec" in inspect.signature(SpineDataModule).parameters else {}
    dm = SpineDataModule(cfg.data, schema=schema, **extra)
    dm.setup("fit")
    stats = label_stats(dm.train_records, schema)
    module = LandmarkModule(plain, schema.to_dict(), stats.to_dict(), codec.to_dict())
    train = dm.train_dataset
    for i in range(len(train)):  # decode and prepare every slice once: the timed steps read the memory cache
        train.load(i)
    return module, dm


def encode_ms(module: LandmarkModule, dm: SpineDataModule, repeats: int = 20) -> float:
    """Milliseconds to encode one training batch's heatmap targets per sample in Python (the former in-step loop)."""
    train = dm.train_dataset
    items = [train[i % len(train)] for i in range(dm.config.batch_size)]
    kps = np.stack([it["keypoints"].numpy() for it in items])
    vis = np.stack([it["visible"].numpy() for it in items])
    t0 = time.perf_counter()
    for _ in range(repeats):
        maps = [module.codec.encode(kps[i], vis[i]) for i in range(len(kps))]
        torch.from_numpy(np.stack([m for m, _ in maps]))
    return (time.perf_counter() - t0) / repeats * 1e3


def timed_fit(config: str, root: Path, workers: int, steps: int, warmup: int, cache: Path) -> tuple[float, float]:
    """(steps/s, ms to encode a batch's targets in Python) of one fit of ``warmup + steps`` steps."""
    module, dm = build(config, root, workers, cache)
    ms = encode_ms(module, dm)
    clock = StepClock()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=warmup + steps,
        max_epochs=10_000,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    if len(clock.ends) != warmup + steps:
        raise RuntimeError(f"expected {warmup + steps} steps, timed {len(clock.ends)}")
    return steps / (clock.ends[-1] - clock.ends[warmup - 1]), ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="data root with studies/ and annotations.json (default: phantoms)")
    ap.add_argument("--studies", type=int, default=24, help="phantom studies to generate without --data")
    ap.add_argument("--config", default="demo_cpu")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="loader worker counts to compare")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1)")
    ap.add_argument("--repeats", type=int, default=2, help="runs per worker count, alternating")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads of the training process")
    args = ap.parse_args(argv)
    if args.warmup < 1 or args.steps < 1:
        ap.error("--warmup and --steps must be >= 1")
    torch.set_num_threads(args.threads)
    pl.seed_everything(0, verbose=False)
    print(f"spine_kp from {Path(spine_kp.__file__).parent}")
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_steps_"))
    if args.data:
        root = Path(args.data)
    else:
        root = tmp / "data"
        t0 = time.perf_counter()
        make_dataset(root, args.studies, seed=7, axial=False)
        print(f"phantoms: {args.studies} studies in {time.perf_counter() - t0:.0f} s")
    print(f"data: {root}; config {args.config}; {args.threads} threads; {args.steps} timed steps after {args.warmup}")
    print("| run | workers | steps/s | s/step | in-step encoding (ms/batch) |")
    print("|---|---|---|---|---|")
    results: dict[int, list[float]] = {w: [] for w in args.workers}
    for r in range(args.repeats):
        for w in args.workers:
            rate, ms = timed_fit(args.config, root, w, args.steps, args.warmup, tmp / "slice_cache")
            results[w].append(rate)
            print(f"| {r + 1} | {w} | {rate:.3f} | {1 / rate:.3f} | {ms:.1f} |", flush=True)
    for w, rates in results.items():
        print(f"workers {w}: best {max(rates):.3f} steps/s, mean {np.mean(rates):.3f} over {len(rates)} runs")
    return 0


if __name__ == "__main__":
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)  # one table, not Lightning's lines for each fit
    warnings.filterwarnings("ignore", category=UserWarning)  # e.g. "few workers": comparing worker counts is the point
    sys.exit(main())
