"""``spine-kp pretrain-stage``: the crop grading stage alone, trained on randomised phantoms (``grade_stage.init``)."""

from __future__ import annotations

import argparse
import time

ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    from spine_kp.pretrain import STAGE_STUDIES

    p.add_argument("--out", required=True, help="output folder: phantoms/, grade_stage.pt, logs/")
    p.add_argument("--config", default="tianchi_cpu",
                   help="config whose grade_stage and schema to pretrain (default: packaged tianchi_cpu)")  # fmt: skip
    p.add_argument("--studies", type=int, default=STAGE_STUDIES,
                   help=f"randomised phantom studies to write (default {STAGE_STUDIES})")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="phantom-set seed (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="sagittal matrix rows of the phantoms (default: 384-512 drawn per study)")  # fmt: skip
    p.add_argument("--workers", type=int, default=1, help="synth processes (default 1)")
    p.epilog = "Config overrides work as in train: --grade_stage.epochs 30"


def run(args: argparse.Namespace) -> int:
    from spine_kp.cli.pretrain import checked_config
    from spine_kp.pretrain import run_stage_pretrain

    cfg = checked_config(args)
    t0 = time.perf_counter()
    result = run_stage_pretrain(
        cfg, args.out, args.studies, args.seed, args.workers, size=args.size,
        log=lambda m: print(f"\n== {m}", flush=True),
    )  # fmt: skip
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"\ntotal {time.perf_counter() - t0:.0f} s ({stages}); validation mAP {result.metrics.get('best_val_mAP')}")
    print(f"stage: {result.stage_file}")
    print(f"start from it: spine-kp train --config {args.config} ... --grade_stage.init {result.stage_file}")
    return 0
