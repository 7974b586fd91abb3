"""``spine-kp evaluate``: score a prediction JSON against a ground-truth JSON with the 8 mm rules.

With ``--data ROOT`` the root is scanned once (headers only): it gives the spacing of annotated images that have
none, and both files are checked against its images; points outside their image, zIndex values beyond their series
and images not under the root are counted warnings on stderr (and in ``metrics.json`` / ``report.md``).

Without ``--schema`` the schema is the one the prediction records name (``spine-kp predict`` writes it), else the
default (:mod:`spine_kp.evaluation.schema_choice`). Text from the files that the output cannot encode (a lone
surrogate in a studyUid) is printed as a backslash escape.

Exit codes: 0 success; 2 a mistake in the input (bad JSON/record, a value beyond the plausibility limits, a study
twice in one file, ground truth without points, files that look swapped, labels outside the schema or files naming
different schemas without ``--schema``, unknown schema, no spacing for a study, a ``--data`` root that is not a folder
or holds no DICOM study).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM  # numpy only; run() imports the evaluator anyway

    parser.add_argument("--annotations", required=True, metavar="GT.json", help="ground-truth JSON")
    parser.add_argument("--predictions", required=True, metavar="PRED.json", help="prediction JSON (points with score)")
    parser.add_argument(
        "--data",
        metavar="ROOT",
        help="DICOM data root: spacing of the annotated instances, and both files checked against its images"
        " (points outside their image, zIndex beyond the series: counted warnings)",
    )
    parser.add_argument(
        "--radius",
        type=float,
        default=DEFAULT_RADIUS_MM,
        help=f"matching radius in mm (default {DEFAULT_RADIUS_MM:g}; 6 = competition)",
    )
    parser.add_argument(
        "--match-level", action="store_true", help="a prediction may only match ground truth of its identification"
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write metrics.json, report.md, pr_curves.png, errors.png, reliability.png"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")
    parser.add_argument(
        "--schema",
        metavar="SCHEMA",
        help="schema YAML or packaged name (default, tianchi); default: the one the predictions name, else 'default'",
    )


def run(args: argparse.Namespace) -> int:
    from spine_kp.errors import UserError
    from spine_kp.evaluation.evaluate import evaluate_files
    from spine_kp.evaluation.report import REPORT_FILES, to_json, write_report
    from spine_kp.evaluation.tables import format_result
    from spine_kp.io.atomic import check_writable
    from spine_kp.io.output_guard import refuse_same_paths
    from spine_kp.io.text import write_escaped

    # Malformed files, a schema error or a study without spacing are UserErrors: one error line, exit 2.
    if not args.radius > 0:
        raise UserError(f"--radius must be positive, got {args.radius}")
    if args.data is not None and not Path(args.data).is_dir():  # checked even when no spacing has to be looked up
        raise UserError(f"--data {args.data}: not a folder")
    if args.report:  # before scoring, so an unwritable report folder fails before any output
        refuse_same_paths(  # a report folder holding the inputs would overwrite them
            {f"--report {name}": Path(args.report) / name for name in REPORT_FILES},
            {"--annotations": args.annotations, "--predictions": args.predictions},
        )
        check_writable(args.report, folder=True)
    result = evaluate_files(
        args.annotations,
        args.predictions,
        args.schema,  # None: the schema the files name, else the default; given: the user's wins
        data_root=args.data,
        radius=args.radius,
        match_level=args.match_level,
    )
    # UIDs come from the files: what the streams cannot encode (a lone surrogate) is escaped, never a traceback
    warnings = list(result.warnings)
    warnings += [
        f"{args.predictions}: study {uid} is not in {args.annotations}; ignored" for uid in result.unknown_studies
    ]
    warnings += [f"study {uid} has no prediction; its ground truth counts as FN" for uid in result.missing_studies]
    if result.data_checks is not None:
        warnings += result.data_checks.warnings(args.annotations, args.predictions)
    for line in warnings:
        write_escaped(sys.stderr, f"warning: {line}\n")
    write_escaped(sys.stdout, to_json(result) if args.json else format_result(result))
    if args.report:
        written = write_report(result, args.report)
        write_escaped(sys.stderr, f"report written to {args.report}: {', '.join(written)}\n")
    return 0
