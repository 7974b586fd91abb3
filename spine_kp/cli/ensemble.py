"""``spine-kp ensemble``: several checkpoints (e.g. the folds of a cross-validation) -> one file that ``predict``
loads as one model, predicting the mean of its members (:mod:`spine_kp.fold_ensemble`)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "members",
        nargs="+",
        metavar="CKPT_OR_RUN_DIR",
        help="member checkpoints (a run folder stands for its checkpoints/best.ckpt; an ensemble adds its members)",
    )
    p.add_argument("-o", "--output", required=True, metavar="ENSEMBLE.ckpt", help="file to write (atomically)")


def run(args: argparse.Namespace) -> int:
    from spine_kp.checkpoint import resolve_checkpoint_path
    from spine_kp.fold_ensemble import SpineEnsemble, load_model_file, write_ensemble
    from spine_kp.io.atomic import check_writable
    from spine_kp.io.output_guard import refuse_same_paths

    paths = [resolve_checkpoint_path(m) for m in args.members]
    refuse_same_paths({"-o": args.output}, {f"member {i + 1}": p for i, p in enumerate(paths)})
    check_writable(args.output)  # before reading every member
    members = []
    for path in paths:
        read = load_model_file(path)
        members += read.members if isinstance(read, SpineEnsemble) else [read]
    out = write_ensemble(members, args.output)  # checks that they agree first
    print(f"ensemble: {out} ({len(members)} members, {out.stat().st_size / 1e6:.1f} MB)")
    for m in members:
        print(f"  {m.path}")
    return 0
