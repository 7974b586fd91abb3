"""Measure learning: train a config on phantom studies (seed 0) and evaluate on held-out ones (seed 1).

Usage:
    python scripts/learning_curve.py --out /tmp/learn [--config demo_cpu] [--train 200] [--test 50] [overrides]

Prints the training time, median / p95 localization error, the share within 8 mm and mAP, all from the
project's own evaluator on studies the model never saw (the held-out set has another seed). Existing phantom
sets in OUT/train and OUT/test are reused.
"""

from __future__ import annotations

import argparse
import json
import sys

from spine_kp.config import parse_override_args
from spine_kp.demo import run_demo
from spine_kp.engine.config import load_experiment


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--config", default="demo_cpu")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=50)
    ap.add_argument("--workers", type=int, default=2)
    args, rest = ap.parse_known_args()
    cfg = load_experiment(args.config, parse_override_args(rest))
    res = run_demo(
        cfg, args.out, args.train, args.test, seed=0, workers=args.workers, log=lambda m: print(m, flush=True)
    )
    ev = res.evaluation
    overall = ev.localization.overall
    summary = {
        "config": args.config,
        "overrides": rest,
        "train_studies": args.train,
        "test_studies": args.test,
        "seconds": {k: round(v, 1) for k, v in res.seconds.items()},
        "mAP": ev.map,
        "median_mm": overall.median,
        "p95_mm": overall.p95,
        "within_8mm": overall.within_radius,
        "never_predicted": overall.never_predicted,
        "f1_6mm": ev.f1_6mm,
        "per_class_ap": {c.name: c.ap for c in ev.classes},
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
