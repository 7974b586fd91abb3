"""``spine-kp predict``: batch-predict a folder of DICOM studies to competition-format JSON with scores."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from spine_kp.predict.runner import PredictRun


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
    p.add_argument(
        "--top-k-grades",
        type=int,
        default=None,
        help="write at least K grades per landmark as scored points (default: the model card's decoding.top_k_grades)",
    )
    p.add_argument(
        "--flip-tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with the anterior-posterior mirrored image (default: the model card's decoding.flip_tta)",
    )
    p.add_argument("--fuse-neighbours", action="store_true", help="average heatmaps of the neighbouring slices")
    p.add_argument("--no-level-order", action="store_true", help="per-channel argmax instead of level-order DP")
    p.add_argument("--devices", type=int, default=1, help="processes/GPUs for distributed prediction (Lightning)")
    p.add_argument("--strategy", default="auto", help="Lightning strategy for --devices > 1 (ddp)")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from spine_kp import api
    from spine_kp.errors import UserError
    from spine_kp.predict.output_checks import check_predict_outputs, reused_folder_warnings
    from spine_kp.predict.outputs import errors_path
    from spine_kp.predict.runner import PredictOptions, require_studies

    # Mistakes are UserErrors (a bad checkpoint is a CheckpointError): spine-kp prints one error line, exit 2.
    for flag, value, least in (
        ("--batch-size", args.batch_size, 1),
        ("--top-k-grades", args.top_k_grades, 0),
        ("--devices", args.devices, 1),
        ("--num-nodes", args.num_nodes, 1),
    ):
        if value is not None and value < least:
            raise UserError(f"{flag} must be at least {least}, got {value}")
    if not Path(args.data_root).is_dir():
        raise UserError(f"data root {args.data_root} is not a folder")
    # before the run: an output that would replace an input or another output, or cannot be written, fails now
    flag, model = ("--onnx", args.onnx) if args.onnx else ("--checkpoint", args.checkpoint)
    check_predict_outputs(
        args.data_root, (flag, model), args.output, errors_path(args.output), args.csv, args.overlays, args.dicom_sr
    )
    distributed = args.devices > 1 or args.num_nodes > 1
    if args.onnx and distributed:
        raise UserError("--devices/--num-nodes need --checkpoint; --onnx predicts in one process")
    backend = "onnx" if args.onnx else "torch"  # as the user said: --onnx never imports torch
    predictor = api.load_predictor(model, device=args.device, backend=backend, level_order=not args.no_level_order)
    options = dict(
        batch_size=args.batch_size,
        workers=args.workers,
        flip_tta=args.flip_tta,
        fuse_neighbours=args.fuse_neighbours,
        top_k_grades=args.top_k_grades,
        progress=not args.quiet,
    )
    if distributed:
        from spine_kp.predict.distributed import predict_distributed

        shards = Path(args.output).resolve().parent / f".{Path(args.output).name}.shards"
        run_result = predict_distributed(
            args.data_root, model, predictor, PredictOptions(**options), args.devices, args.strategy, args.num_nodes,
            shard_dir=shards,
        )  # fmt: skip
        if run_result is None:  # non-zero ranks: rank 0 writes
            return 0
        require_studies(run_result, args.data_root)
    else:
        run_result = api.predict_folder(args.data_root, predictor, **options)
    for line in reused_folder_warnings(run_result, args.overlays, args.dicom_sr):
        print(line, file=sys.stderr)
    written = api.write_predictions(
        run_result, predictor, args.output, csv=args.csv, overlays=args.overlays, dicom_sr=args.dicom_sr, model=model
    )
    _summary(run_result, written, args)
    n_ok, n_bad = len(run_result.predictions), len(run_result.failures)
    return 0 if n_ok or not (n_bad or run_result.skipped_files) else 1


def _summary(run_result: PredictRun, written: dict[str, Any], args: argparse.Namespace) -> None:
    """The failures (stderr) and what was predicted and written (stdout)."""
    for f in run_result.failures:
        print(f"failed: study {f.study} ({f.folder}): {f.reason}", file=sys.stderr)
    warned = [r for r in run_result.records if r.warnings]
    for r in warned:
        for w in r.warnings:
            print(f"warning: study {r.study_uid}: {w}", file=sys.stderr)
    n_ok, n_bad = len(run_result.predictions), len(run_result.failures)
    print(f"predicted {n_ok} studies, {n_bad} failed, {len(run_result.skipped_files)} files skipped")
    if warned:
        print(f"{len(warned)} predicted studies carry a warning (listed in {written['errors']})")
    print(f"predictions: {written['predictions']}")
    print(f"errors: {written['errors']}")
    if "csv" in written:
        print(f"csv: {written['csv']}")
    if "overlay_files" in written:  # distinct files on disk, not studies: a shared name would show here
        print(f"overlays: {args.overlays} ({len(set(written['overlay_files']))} images)")
    if "sr_files" in written:
        print(f"dicom-sr: {args.dicom_sr} ({len(set(written['sr_files']))} reports)")
