"""``spine-kp export``: a training checkpoint -> an ONNX graph that ``spine-kp predict --onnx`` runs without torch."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        help="best.ckpt / last.ckpt of a training run, or the run folder (meaning its checkpoints/best.ckpt)",
    )
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="ONNX file to write (atomically)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset, at least 17 (default 17)")
    p.add_argument(
        "--tolerance", type=float, default=1e-4, help="largest accepted |ONNX Runtime - PyTorch| (default 1e-4)"
    )
    p.add_argument(
        "--without-grade-stage",
        action="store_true",
        help="leave a checkpoint's crop grading stage out of the export: ONNX grades come from the grade head alone",
    )


def run(args: argparse.Namespace) -> int:
    from spine_kp.export.onnx import export_onnx
    from spine_kp.io.atomic import check_writable
    from spine_kp.io.output_guard import refuse_same_paths

    # before the (slow) export: never replace the checkpoint itself, and an unwritable --onnx fails now
    refuse_same_paths({"--onnx": args.onnx}, {"checkpoint": args.checkpoint})
    check_writable(args.onnx)
    result = export_onnx(
        args.checkpoint,
        args.onnx,
        opset=args.opset,
        tolerance=args.tolerance,
        without_grade_stage=args.without_grade_stage,
    )
    worst = max(result.max_abs_diff, key=result.max_abs_diff.get)
    size = f"{result.size_bytes / 1e6:.1f} MB"
    print(f"onnx: {result.path} ({size}, opset {result.opset}, backbone family {result.family})")
    print(f"checked against PyTorch: max |difference| {result.max_abs_diff[worst]:.2g} ({worst})")
    return 0
