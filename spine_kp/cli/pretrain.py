"""``spine-kp pretrain``: domain-randomised phantom studies -> a general checkpoint to fine-tune from (``--init``)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spine_kp.engine.config import ExperimentConfig

ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    from spine_kp.pretrain import PRETRAIN_STUDIES

    p.add_argument("--out", required=True, help="output folder: phantoms/, checkpoints/best.ckpt, logs/")
    p.add_argument("--studies", type=int, default=PRETRAIN_STUDIES,
                   help=f"randomised phantom studies to write (default {PRETRAIN_STUDIES})")  # fmt: skip
    p.add_argument("--config", default="pretrain_cpu", help="training config (default: packaged pretrain_cpu)")
    p.add_argument("--seed", type=int, default=0, help="phantom-set seed (default 0)")
    p.add_argument("--size", type=int, default=None,
                   help="sagittal matrix rows of the phantoms (default 288)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="synth processes (default 2)")
    p.add_argument("--resume", action="store_true", help="continue training from OUT/checkpoints/last.ckpt")
    p.add_argument("--members", type=int, default=1,
                   help="pretrain N networks on phantom seeds SEED..SEED+N-1 and join them in OUT/ensemble.ckpt, "
                   "to predict with pretraining alone (default 1)")  # fmt: skip
    p.epilog = "Config overrides work as in train: --trainer.max_epochs 5"


def checked_config(args: argparse.Namespace) -> ExperimentConfig:
    """The config of a phantom pretraining command (``--config`` and its overrides), after its ``--studies`` and
    ``--size`` are checked (one-line errors)."""
    from spine_kp.config import parse_override_args
    from spine_kp.engine.config import load_experiment
    from spine_kp.errors import UserError

    if args.studies < 2:
        raise UserError(f"--studies must be at least 2, got {args.studies}")
    if not 1 <= getattr(args, "members", 1) <= 16:
        raise UserError(f"--members must be in 1..16, got {args.members}")
    if args.size is not None and not 32 <= args.size <= 1024:
        raise UserError(f"--size must be in 32..1024, got {args.size}")
    return load_experiment(args.config, parse_override_args(list(getattr(args, "overrides", []) or [])))


def run(args: argparse.Namespace) -> int:
    from spine_kp.pretrain import PRETRAIN_SIZE, run_pretrain, run_pretrain_members

    cfg = checked_config(args)
    t0 = time.perf_counter()
    common = dict(studies=args.studies, seed=args.seed, workers=args.workers, resume=args.resume,
                  size=args.size or PRETRAIN_SIZE, log=lambda m: print(f"\n== {m}", flush=True))  # fmt: skip
    if args.members > 1:
        results, ensemble = run_pretrain_members(cfg, args.out, args.members, **common)
        result = results[0]
    else:
        result, ensemble = run_pretrain(cfg, args.out, **common), None
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    print(f"\ntotal {time.perf_counter() - t0:.0f} s (first member: {stages})" if ensemble else
          f"\ntotal {time.perf_counter() - t0:.0f} s ({stages})")  # fmt: skip
    print(f"checkpoint: {result.checkpoint}")
    if ensemble is not None:
        print(
            f"ensemble of {args.members} members: {ensemble} (predict with it: spine-kp predict ROOT --checkpoint "
            f"{ensemble} -o PRED.json)"
        )
    print(f"fine-tune from it: spine-kp train --config finetune_cpu --init {result.checkpoint} --data ROOT "
          "--annotations GT.json --out RUN")  # fmt: skip
    return 0
