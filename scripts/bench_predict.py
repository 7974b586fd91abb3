"""Prediction throughput: studies/s end to end and the split of time (scan, DICOM load, preprocess, model, decode).

Usage:
    python scripts/bench_predict.py [--data ROOT] [--studies 20] [--checkpoint CKPT ...] [--configs demo_cpu default]
        [--device cpu|cuda] [--threads 2] [--batch-size 4]

Without --checkpoint, a checkpoint with random weights is made for each config (speed does not depend on the
weights). Without --data, phantom studies are generated in a temporary folder. Goal: <= 1 s per study end to end
for `default` on CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.io.synth import make_dataset
from spine_kp.predict.predictor import Predictor
from spine_kp.predict.runner import PredictOptions, predict_folder
from spine_kp.schema import load_schema


def untrained_checkpoint(config: str, path: Path) -> Path:
    cfg = load_experiment(config)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--studies", type=int, default=20)
    ap.add_argument("--checkpoint", nargs="*", default=None)
    ap.add_argument("--configs", nargs="*", default=["demo_cpu", "default"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="bench_predict_"))
    root = Path(args.data) if args.data else None
    if root is None:
        make_dataset(tmp / "data", args.studies, seed=7, workers=args.workers)
        root = tmp / "data" / "studies"
    ckpts = (
        [(Path(c).name, Path(c)) for c in args.checkpoint]
        if args.checkpoint
        else [(c, untrained_checkpoint(c, tmp / f"{c}.ckpt")) for c in args.configs]
    )
    print(f"data: {root}; device {args.device}; {args.threads} threads; batch {args.batch_size}")
    print("| checkpoint | studies | studies/s | s/study | scan | load (thread-s) | preprocess | model | decode |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, ckpt in ckpts:
        predictor = Predictor.from_checkpoint(ckpt, device=args.device)
        opts = PredictOptions(batch_size=args.batch_size, workers=args.workers, progress=False)
        predict_folder(root, predictor, opts)  # warm-up (allocator, file cache)
        t0 = time.perf_counter()
        run = predict_folder(root, predictor, opts)
        wall = time.perf_counter() - t0
        n = len(run.predictions)
        t = run.timings
        print(
            f"| {name} | {n} | {n / wall:.2f} | {wall / max(n, 1):.3f} | {t['scan']:.2f} | {t['load']:.2f} | "
            f"{t['preprocess']:.2f} | {t['model']:.2f} | {t['decode']:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
