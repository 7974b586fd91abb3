"""``spine-kp predict``: batch-predict a folder of DICOM studies to competition-format JSON with scores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("data_root", help="folder holding the DICOM studies (any depth)")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument(
        "--checkpoint",
        help="best.ckpt / last.ckpt of a training run, or the run folder (meaning its checkpoints/best.ckpt)",
    )
    model.add_argument("--onnx", metavar="MODEL.onnx", help="a spine-kp export: runs on ONNX Runtime, without torch")
    p.add_argument("-o", "--output", required=True, help="predictions JSON (errors go to <output>.errors.json)")
    p.add_argument("--csv", default=None, help="also write one row per landmark to this CSV")
    p.add_argument("--overlays", default=None, help="folder for one overlay PNG per study")
    p.add_argument("--dicom-sr", default=None, metavar="DIR", help="folder for one DICOM SR (TID 1500) per study")
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

    from spine_kp.errors import UserError
    from spine_kp.predict.output_checks import check_predict_outputs, reused_folder_warnings
    from spine_kp.predict.outputs import errors_path, write_outputs
    from spine_kp.predict.runner import PredictOptions, predict_folder

    # Mistakes are UserErrors (a bad checkpoint is a CheckpointError): spine-kp prints one error line, exit 2.
    for flag, value, least in (
        ("--batch-size", args.batch_size, 1),
        ("--top-k-grades", args.top_k_grades, 0),
        ("--devices", args.devices, 1),
        ("--num-nodes", args.num_nodes, 1),
    ):
        if value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    if not Path(args.data_root).is_dir():
        raise UserError(f"data root {args.data_root} is not a folder")
    # before the run: an output that would replace an input or another output, or cannot be written, fails now
    model = ("--onnx", args.onnx) if args.onnx else ("--checkpoint", args.checkpoint)
    check_predict_outputs(
        args.data_root, model, args.output, errors_path(args.output), args.csv, args.overlays, args.dicom_sr
    )
    if args.onnx:  # this path never imports torch
        from spine_kp.inference.onnx_predictor import OnnxPredictor

        if args.devices > 1 or args.num_nodes > 1:
            raise UserError("--devices/--num-nodes need --checkpoint; --onnx predicts in one process")
        predictor = OnnxPredictor.from_onnx(args.onnx, device=args.device)
    else:
        from spine_kp.inference.predictor import Predictor

        try:
            predictor = Predictor.from_checkpoint(args.checkpoint, device=args.device)
        except RuntimeError as exc:  # --device cuda without a GPU
            raise UserError(str(exc)) from exc
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
    if not run_result.predictions and not run_result.failures:
        from spine_kp.io.scan import no_study_message

        raise UserError(no_study_message(args.data_root, [reason for _, reason in run_result.skipped_files]))
    for line in reused_folder_warnings(run_result, args.overlays, args.dicom_sr):
        print(line, file=sys.stderr)
    sr_files = None
    if args.dicom_sr is not None:  # before the outputs, so reports that fail are listed in the errors file
        from spine_kp.predict.sr import algorithm_from_checkpoint, algorithm_from_onnx, write_dicom_srs

        algorithm = algorithm_from_onnx(predictor.meta) if args.onnx else algorithm_from_checkpoint(args.checkpoint)
        sr_files = write_dicom_srs(run_result, predictor.schema, args.dicom_sr, algorithm)
    written = write_outputs(run_result, predictor.schema, args.output, args.csv)
    overlay_files = None
    if args.overlays is not None:
        from spine_kp.predict.overlay import write_overlays  # matplotlib only when asked for

        overlay_files = write_overlays(run_result.predictions, predictor.schema, args.overlays)
    for f in run_result.failures:
        print(f"failed: study {f.study} ({f.folder}): {f.reason}", file=sys.stderr)
    n_ok, n_bad = len(run_result.predictions), len(run_result.failures)
    print(f"predicted {n_ok} studies, {n_bad} failed, {len(run_result.skipped_files)} files skipped")
    print(f"predictions: {written['predictions']}")
    print(f"errors: {errors_path(args.output)}")
    if "csv" in written:
        print(f"csv: {written['csv']}")
    if overlay_files is not None:  # distinct files on disk, not studies: a shared name would show here
        print(f"overlays: {args.overlays} ({len(set(overlay_files))} images)")
    if sr_files is not None:
        print(f"dicom-sr: {args.dicom_sr} ({len(set(sr_files))} reports)")
    return 0 if n_ok or not (n_bad or run_result.skipped_files) else 1
