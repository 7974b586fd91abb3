"""Prediction throughput, PyTorch against ONNX Runtime: seconds per study end to end on the same studies.

Usage:
    python scripts/bench_predict.py [--data ROOT] [--studies 20] [--checkpoint CKPT ...] [--configs demo_cpu default]
        [--backends torch onnx] [--device cpu|cuda] [--threads 2] [--batch-size 4] [--workers 2] [--repeats 1]

For each checkpoint (without --checkpoint: random weights for each config, as speed does not depend on the
weights) the script exports an ONNX copy (``spine_kp.export.onnx``) and runs the same ``predict_folder`` with both
backends: same scan, DICOM loading, preprocessing, decoding and records; only the network differs. Each timed run
follows a warm-up run (allocator, file cache, ONNX Runtime's first-run optimisations). It prints one row per
checkpoint and backend (studies/s, s/study and the split of time: scan, load, preprocess, model, decode) and the
ratio torch / onnx of s/study and of the model time. Both backends get ``--threads`` intra-op threads. Without
--data, phantom studies are generated in a temporary folder. Goal: <= 1 s per study end to end for `default` on CPU.
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
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.predict.runner import PredictOptions, PredictRun, predict_folder
from spine_kp.schema import load_schema
from spine_kp.synth import make_dataset


def untrained_checkpoint(config: str, path: Path) -> Path:
    cfg = load_experiment(config)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def timed_run(root: Path, predictor, opts: PredictOptions, repeats: int) -> tuple[float, PredictRun]:
    """Seconds of the fastest of ``repeats`` runs after one warm-up run, and that run."""
    predict_folder(root, predictor, opts)  # warm-up
    best: tuple[float, PredictRun] | None = None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run = predict_folder(root, predictor, opts)
        wall = time.perf_counter() - t0
        if best is None or wall < best[0]:
            best = (wall, run)
    assert best is not None
    return best


def row(name: str, backend: str, wall: float, run: PredictRun) -> str:
    n, t = len(run.predictions), run.timings
    return (
        f"| {name} | {backend} | {n} | {n / wall:.2f} | {wall / max(n, 1):.3f} | {t['scan']:.2f} | {t['load']:.2f} | "
        f"{t['preprocess']:.2f} | {t['model']:.2f} | {t['decode']:.2f} |"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="folder of studies (default: phantoms in a temporary folder)")
    ap.add_argument("--studies", type=int, default=20, help="phantom studies to generate without --data")
    ap.add_argument("--checkpoint", nargs="*", default=None)
    ap.add_argument("--configs", nargs="*", default=["demo_cpu", "default"])
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per backend (the fastest counts)")
    args = ap.parse_args(argv)
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
    opts = PredictOptions(batch_size=args.batch_size, workers=args.workers, progress=False)
    print(f"data: {root}; device {args.device}; {args.threads} threads; batch {args.batch_size}")
    head = ["checkpoint", "backend", "studies", "studies/s", "s/study", "scan", "load (thread-s)", "preprocess"]
    print("| " + " | ".join([*head, "model", "decode"]) + " |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios = []
    for name, ckpt in ckpts:
        results = {}
        if "torch" in args.backends:
            results["torch"] = timed_run(root, Predictor.from_checkpoint(ckpt, device=args.device), opts, args.repeats)
            print(row(name, "torch", *results["torch"]), flush=True)
        if "onnx" in args.backends:
            from spine_kp.export.onnx import export_onnx
            from spine_kp.inference.onnx_predictor import OnnxPredictor

            exported = export_onnx(ckpt, tmp / f"{ckpt.stem}.onnx")
            predictor = OnnxPredictor.from_onnx(exported.path, device=args.device, threads=args.threads)
            results["onnx"] = timed_run(root, predictor, opts, args.repeats)
            print(row(name, "onnx", *results["onnx"]), flush=True)
        if len(results) == 2:
            (wt, rt), (wo, ro) = results["torch"], results["onnx"]
            per_study = (wt / max(len(rt.predictions), 1)) / (wo / max(len(ro.predictions), 1))
            model = rt.timings["model"] / max(ro.timings["model"], 1e-9)
            ratios.append(f"{name}: torch / onnx = {per_study:.2f}x per study end to end, {model:.2f}x model time")
    for line in ratios:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
