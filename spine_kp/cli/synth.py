"""``spine-kp synth OUT``: write phantom lumbar MRI studies (DICOM) and ``OUT/annotations.json``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (studies/ and annotations.json go inside)")
    parser.add_argument("--studies", type=int, default=20, help="number of studies (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="data-set seed (default 0)")
    parser.add_argument("--size", type=int, default=None,
                        help="sagittal image rows, e.g. 256..512 (default: 384-512 drawn per study)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--preview", action="store_true", help="also save OUT/preview.png")
    parser.add_argument("--schema", default=None, help="schema YAML or packaged name (default, tianchi)")
    parser.add_argument("--no-axial", action="store_true", help="omit the T2 axial series")
    parser.add_argument("--no-tricky", action="store_true", help="omit the tricky cases")
    parser.add_argument("--randomize", action="store_true",
                        help="domain randomisation for pretraining: wide/tight fields of view, fat-suppressed T2, "
                        "clean to noisy images")  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty OUT/studies and OUT/annotations.json"
    )


def run(args: argparse.Namespace) -> int:
    from spine_kp.errors import UserError
    from spine_kp.schema import load_schema
    from spine_kp.synth import make_dataset

    if args.studies < 0:
        raise UserError(f"--studies must be >= 0, got {args.studies}")
    if args.size is not None and not 32 <= args.size <= 1024:
        raise UserError(f"--size must be in 32..1024, got {args.size}")
    schema = load_schema(args.schema)
    try:
        summary = make_dataset(
            args.out,
            args.studies,
            args.seed,
            size=args.size,
            workers=args.workers,
            preview=args.preview,
            schema=schema,
            overwrite=args.overwrite,
            axial=not args.no_axial,
            tricky=not args.no_tricky,
            randomize=args.randomize,
        )
    except ValueError as exc:  # a schema the phantom cannot draw; the message names the landmark or grade
        if isinstance(exc, UserError):
            raise
        raise UserError(f"schema {args.schema}: {exc}" if args.schema else str(exc)) from exc
    print(summary.describe())
    return 0
