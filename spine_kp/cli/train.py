"""``spine-kp train``: train a model from a config, with dotted overrides (``--model.backbone efficientnet_b0``).

Several ``--data ROOT --annotations GT.json`` pairs (paired in order) train one model on the union of their annotated
studies (``data.sources``, :mod:`spine_kp.data.sources`).
"""

from __future__ import annotations

import argparse
import sys

ACCEPTS_OVERRIDES = True


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="default", help="YAML file or packaged config name (default, demo_cpu, ...)")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        metavar="ROOT",
        help="data root holding the DICOM studies; repeat with --annotations to train on several data sets at once",
    )
    p.add_argument(
        "--annotations",
        required=True,
        action="append",
        metavar="GT_JSON",
        help="competition-format annotations.json of the studies under --data (the n-th goes with the n-th --data); "
        "a landmark a data set does not annotate is unknown there (no loss), not absent",
    )
    p.add_argument("--out", required=True, help="run directory (checkpoints/, logs/, config.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.ckpt")
    p.add_argument(
        "--init",
        metavar="CKPT",
        default=None,
        help="warm start from any spine_kp checkpoint (a run folder means its checkpoints/best.ckpt): loads every "
        "tensor that fits (backbone, decoder, the heads' rows of the landmarks and grades both schemas share); a "
        "fresh run otherwise (epoch 0, new optimizer); ignored with --resume",
    )
    p.add_argument("--fold", type=int, default=None, help="k-fold split index (data.num_folds folds)")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="train on the annotated studies found under --data and warn with the count of the others "
        "(data.skip_missing); without it a missing study is an error that lists them",
    )
    p.add_argument("--fast-dev-run", action="store_true", help="one train and one val batch, no checkpoints")
    p.epilog = "Any config key can be overridden: --model.backbone efficientnet_b0 --trainer.max_epochs 5"


def run(args: argparse.Namespace) -> int:
    from spine_kp.cli.main import UsageError
    from spine_kp.config import parse_override_args
    from spine_kp.engine.config import load_experiment
    from spine_kp.engine.train import replace_data_sources, train

    # Config, annotation, data and checkpoint mistakes are UserErrors: spine-kp prints them as one error line.
    if len(args.data) != len(args.annotations):
        raise UsageError(
            f"{len(args.data)} --data but {len(args.annotations)} --annotations: give one --annotations per --data, "
            "in the same order (see spine-kp train --help)"
        )
    overrides = parse_override_args(list(getattr(args, "overrides", []) or []))
    if args.fold is not None:
        overrides["data.fold"] = str(args.fold)
    if args.skip_missing:
        overrides["data.skip_missing"] = "true"
    cfg = replace_data_sources(load_experiment(args.config, overrides), list(zip(args.data, args.annotations)))
    result = train(cfg, args.out, resume=args.resume, fast_dev_run=args.fast_dev_run, init=args.init)
    if not result.is_global_zero:  # DDP runs this command once per process: rank 0 alone reports
        return 0
    if result.skipped:
        roots = ", ".join(args.data)
        print(
            f"warning: trained without {len(result.skipped)} annotated record(s) not found under {roots} "
            f"(--skip-missing): {'; '.join(result.skipped[:3])}{'; ...' if len(result.skipped) > 3 else ''}",
            file=sys.stderr,
        )
    if result.init_report is not None:
        print(f"init: {result.init_report.summary()}")
    print(f"run directory: {result.run_dir}")
    print(f"best checkpoint: {result.best_checkpoint} ({cfg.trainer.monitor} = {result.best_score})")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.decode_fit is not None:
        f = result.decode_fit
        print(
            f"decoding fitted on the run's studies: absent_score {f['absent_score']:g} (caudal "
            f"{f['absent_score_caudal']:g}), step_tolerance "
            f"{f['step_tolerance']:g} ({f['within']:.1%} within 8 mm; the config's values {f['config_within']:.1%})"
        )
    if result.junction is not None:
        j, val = result.junction, result.junction.get("val") or {}
        found = (
            f"; validation: L5-S1 found in {val['junction_found']:.1%} of {val['sets']} candidate sets" if val else ""
        )
        print(f"junction check trained on {j['train_slices']} slices in {j['seconds_total']:g} s{found}")
    return 0
