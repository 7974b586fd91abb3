"""``spine-kp demo``: the whole product on phantom studies, on a laptop CPU.

synth (training + held-out sets) -> train ``demo_cpu.yaml`` -> predict the held-out set (JSON, CSV, overlays)
-> evaluate with the 8 mm rules -> print the summary and where the report and overlays are.
"""

from __future__ import annotations

import argparse
import sys
import time

ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="spine_kp_demo", help="output folder (default: ./spine_kp_demo)")
    p.add_argument("--config", default="demo_cpu", help="training config (default: packaged demo_cpu)")
    p.add_argument("--train-studies", type=int, default=150)
    p.add_argument("--test-studies", type=int, default=30)
    p.add_argument("--seed", type=int, default=0, help="training set seed; the held-out set uses seed + 1")
    p.add_argument("--workers", type=int, default=2)
    p.epilog = "Config overrides work as in train: --trainer.max_epochs 5"


def run(args: argparse.Namespace) -> int:
    from spine_kp.config import parse_override_args
    from spine_kp.demo import run_demo
    from spine_kp.engine.config import load_experiment
    from spine_kp.errors import UserError
    from spine_kp.evaluation.tables import format_result

    if args.train_studies < 2:  # training holds at least one study out for validation
        raise UserError(f"--train-studies must be at least 2, got {args.train_studies}")
    if args.test_studies < 1:
        raise UserError(f"--test-studies must be at least 1, got {args.test_studies}")
    cfg = load_experiment(args.config, parse_override_args(list(getattr(args, "overrides", []) or [])))
    print(
        f"spine-kp demo: {args.train_studies} training + {args.test_studies} held-out phantom studies, "
        f"{cfg.model.backbone} + {cfg.model.decoder} at {cfg.data.input_size[0]}x{cfg.data.input_size[1]}, "
        f"{cfg.trainer.max_epochs} epochs. This takes about 10-15 minutes on 2 CPU cores.",
        flush=True,
    )
    t0 = time.perf_counter()
    result = run_demo(
        cfg,
        args.out,
        args.train_studies,
        args.test_studies,
        args.seed,
        args.workers,
        log=lambda m: print(f"\n== {m}", flush=True),
    )
    print()
    print(format_result(result.evaluation))
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"\ntotal {time.perf_counter() - t0:.0f} s ({stages})")
    print(f"checkpoint:  {result.checkpoint}")
    print(f"predictions: {result.written['predictions']}")
    print(f"report:      {result.report['report.md']}")
    print(f"overlays:    {result.written['overlays']}")
    if result.run.failures:
        print(f"{len(result.run.failures)} studies failed: see {result.written['errors']}", file=sys.stderr)
    return 0
