"""``spine-kp predict``: batch-predict a folder of DICOM studies to competition-format JSON with scores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_root", help="folder holding the DICOM studies (any depth)")
    p.add_argument("--checkpoint", required=True, help="best.ckpt / last.ckpt of a training run")
    p.add_argument("-o", "--output", required=True, help="predictions JSON (errors go to <output>.errors.json)")
    p.add_argument("--csv", default=None, help="also write one row per landmark to this CSV")
    p.add_argument("--overlays", default=None, help="folder for one overlay PNG per study")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="threads loading DICOM in parallel")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--top-k-grades", type=int, default=0, help="emit up to K grades per landmark as scored points")
    p.add_argument("--flip-tta", action="store_true", help="average with the anterior-posterior mirrored image")
    p.add_argument("--fuse-neighbours", action="store_true", help="average heatmaps of the neighbouring slices")
    p.add_argument("--no-level-order", action="store_true", help="per-channel argmax instead of level-order DP")
    p.add_argument("--devices", type=int, default=1, help="processes/GPUs for distributed prediction (Lightning)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy for --devices > 1 (ddp)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from spine_kp.predict.outputs import errors_path, write_outputs
    from spine_kp.predict.predictor import CheckpointError, Predictor
    from spine_kp.predict.runner import PredictOptions, predict_folder

    try:
        predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
    except (CheckpointError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.no_level_order:
        predictor = predictor.with_decode(dataclasses.replace(predictor.decode, enabled=False))
    options = PredictOptions(
        batch_size=args.batch_size,
        workers=args.workers,
        flip_tta=args.flip_tta,
        fuse_neighbours=args.fuse_neighbours,
        top_k_grades=args.top_k_grades,
        progress=not args.quiet,
    )
    if not Path(args.data_root).is_dir():
        print(f"error: data root {args.data_root} is not a folder", file=sys.stderr)
        return 2
    if args.devices > 1 or args.num_nodes > 1:
        from spine_kp.predict.distributed import predict_distributed

        run_result = predict_distributed(
            args.data_root,
            args.checkpoint,
            predictor,
            options,
            args.devices,
            args.strategy,
            args.num_nodes,
            shard_dir=Path(args.output).resolve().parent / f".{Path(args.output).name}.shards",
        )
        if run_result is None:  # non-zero ranks: rank 0 writes
            return 0
    else:
        run_result = predict_folder(args.data_root, predictor, options)
    written = write_outputs(run_result, predictor.schema, args.output, args.csv, args.overlays)
    for f in run_result.failures:
        print(f"failed: study {f.study} ({f.folder}): {f.reason}", file=sys.stderr)
    n_ok, n_bad = len(run_result.predictions), len(run_result.failures)
    print(f"predicted {n_ok} studies, {n_bad} failed, {len(run_result.skipped_files)} files skipped")
    print(f"predictions: {written['predictions']}")
    print(f"errors: {errors_path(args.output)}")
    for key in ("csv", "overlays"):
        if key in written:
            print(f"{key}: {written[key]}")
    return 0 if n_ok or not (n_bad or run_result.skipped_files) else 1
