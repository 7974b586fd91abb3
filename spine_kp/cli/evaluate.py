"""``spine-kp evaluate``: score a prediction JSON against a ground-truth JSON with the 8 mm rules.

Exit codes: 0 success; 2 malformed input (bad JSON/record, unknown schema, no spacing for a study).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", required=True, metavar="GT.json", help="ground-truth JSON")
    parser.add_argument("--predictions", required=True, metavar="PRED.json", help="prediction JSON (points with score)")
    parser.add_argument("--data", metavar="ROOT", help="DICOM data root: spacing of the annotated instances")
    parser.add_argument("--radius", type=float, default=8.0, help="matching radius in mm (default 8; 6 = competition)")
    parser.add_argument(
        "--match-level", action="store_true", help="a prediction may only match ground truth of its identification"
    )
    parser.add_argument("--report", metavar="DIR", help="write metrics.json, report.md, pr_curves.png, errors.png")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.add_argument("--schema", metavar="FILE", help="schema YAML (default: the packaged lumbar schema)")


def run(args: argparse.Namespace) -> int:
    from spine_kp.evaluation.evaluate import evaluate_files
    from spine_kp.evaluation.report import format_result, to_json, write_report
    from spine_kp.evaluation.spacing import SpacingError
    from spine_kp.io.annotations import AnnotationError
    from spine_kp.schema import SchemaError, load_schema

    if not args.radius > 0:
        print(f"error: --radius must be positive, got {args.radius}", file=sys.stderr)
        return 2
    try:
        schema = load_schema(args.schema)
        result = evaluate_files(
            args.annotations,
            args.predictions,
            schema,
            data_root=args.data,
            radius=args.radius,
            match_level=args.match_level,
        )
    except (AnnotationError, SpacingError, SchemaError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for uid in result.unknown_studies:
        print(f"warning: {args.predictions}: study {uid} is not in {args.annotations}; ignored", file=sys.stderr)
    for uid in result.missing_studies:
        print(f"warning: study {uid} has no prediction; its ground truth counts as FN", file=sys.stderr)
    sys.stdout.write(to_json(result) if args.json else format_result(result))
    if args.report:
        written = write_report(result, args.report)
        print(f"report written to {args.report}: {', '.join(written)}", file=sys.stderr)
    return 0
