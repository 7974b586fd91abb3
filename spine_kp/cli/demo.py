"""``spine-kp demo``: the whole product on phantom studies, on a laptop CPU.

synth (train + held-out sets) -> train ``demo_cpu.yaml`` -> predict the held-out set (JSON, CSV, overlays)
-> evaluate with the 8 mm rules -> print the summary and where the report and overlays are.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="spine_kp_demo", help="output folder (default: ./spine_kp_demo)")
    p.add_argument("--config", default="demo_cpu", help="training config (default: packaged demo_cpu)")
    p.add_argument("--train-studies", type=int, default=200)
    p.add_argument("--test-studies", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="train set seed; the held-out set uses seed + 1")
    p.add_argument("--workers", type=int, default=2)
    p.epilog = "Config overrides work as in train: --trainer.max_epochs 5"


def _step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.perf_counter()


def run(args: argparse.Namespace) -> int:
    from spine_kp.config import parse_override_args
    from spine_kp.engine.config import load_experiment
    from spine_kp.engine.train import replace_data_paths, train
    from spine_kp.evaluation.evaluate import evaluate_records
    from spine_kp.evaluation.report import format_result, write_report
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.synth import make_dataset
    from spine_kp.predict.outputs import write_outputs
    from spine_kp.predict.predictor import Predictor
    from spine_kp.predict.runner import PredictOptions, predict_folder
    from spine_kp.schema import load_schema

    out = Path(args.out)
    cfg = load_experiment(args.config, parse_override_args(list(getattr(args, "overrides", []) or [])))
    print(
        f"spine-kp demo: {args.train_studies} training + {args.test_studies} held-out phantom studies, "
        f"{cfg.model.backbone}+{cfg.model.decoder} at {cfg.data.input_size[0]}x{cfg.data.input_size[1]}, "
        f"{cfg.trainer.max_epochs} epochs. Expect about 10-15 minutes on 2 CPU cores.",
        flush=True,
    )
    t_all = time.perf_counter()
    t = _step(f"1/4 writing phantom studies to {out}")
    train_dir, test_dir = out / "train", out / "test"
    if not (train_dir / "annotations.json").exists():
        make_dataset(train_dir, args.train_studies, args.seed, workers=args.workers)
    if not (test_dir / "annotations.json").exists():
        make_dataset(test_dir, args.test_studies, args.seed + 1, workers=args.workers)
    print(f"   done in {time.perf_counter() - t:.0f} s", flush=True)

    t = _step("2/4 training (progress bar below)")
    cfg = replace_data_paths(cfg, train_dir / "studies", train_dir / "annotations.json")
    result = train(cfg, out / "run")
    ckpt = result.best_checkpoint or result.last_checkpoint
    print(f"   done in {time.perf_counter() - t:.0f} s; checkpoint {ckpt}", flush=True)

    t = _step("3/4 predicting the held-out studies")
    predictor = Predictor.from_checkpoint(ckpt, device="auto")
    run_result = predict_folder(test_dir / "studies", predictor, PredictOptions(workers=args.workers))
    pred_json = out / "predictions.json"
    written = write_outputs(run_result, predictor.schema, pred_json, out / "predictions.csv", out / "overlays")
    print(f"   {len(run_result.predictions)} studies in {time.perf_counter() - t:.0f} s", flush=True)

    _step("4/4 evaluating with the 8 mm rules")
    schema = load_schema(cfg.schema)
    gt = read_annotations(test_dir / "annotations.json", schema)
    evaluation = evaluate_records(gt, run_result.records, schema, radius=8.0)
    report = write_report(evaluation, out / "report")
    print(format_result(evaluation))
    print(f"\nTotal time {time.perf_counter() - t_all:.0f} s")
    print(f"predictions: {written['predictions']}")
    print(f"report:      {report.get('report.md', out / 'report')}")
    print(f"overlays:    {written['overlays']}")
    if run_result.failures:
        print(f"{len(run_result.failures)} studies failed: see {written['errors']}", file=sys.stderr)
    return 0
