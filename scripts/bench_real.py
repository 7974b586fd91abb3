"""Benchmark on real (or any annotated) DICOM studies: k-fold cross-validation, or zero-shot scoring of a checkpoint.

Usage:
    python scripts/bench_real.py --data ROOT --annotations GT.json --out OUT [--config finetune_cpu] [--init CKPT]
        [--folds 5] [--only-fold K] [--set key=value ...] [--section.key value ...]
    python scripts/bench_real.py --data ROOT --annotations GT.json --out OUT --zero-shot CKPT

Cross-validation is nested: the annotated studies are split into K folds by study
(``spine_kp.data.datamodule.split_studies``, the project's deterministic split). Fold k's studies are the test studies:
they are left out of the annotation file that fold k trains on (``OUT/fold{k}/train_annotations.json``; the test
studies' own are ``test_annotations.json``), so training
never sees them, not even as validation. Training (``spine_kp.engine.train.train`` in this process, run dir
``OUT/fold{k}``) splits the remaining studies itself into training and validation (``data.val_fraction`` of the
config), and everything chosen during training (best epoch, grade temperatures, score calibration, the grading stage's
best epoch) is chosen on that inner validation split. Then the fold's test studies are predicted with the fold's
best checkpoint (``--checkpoint last``: the last epoch) and scored. ``--init`` weights must not have seen the test
studies either: initialise from a model trained on other data (the phantom-pretrained checkpoint).
``--zero-shot CKPT`` trains nothing: it predicts every annotated study under ROOT with CKPT. ``--pool`` trains nothing
either: it scores together the folds already in OUT (their ``test_annotations.json`` and
``heldout_predictions.json``), e.g. after folds were run by separate ``--only-fold`` processes side by side.

Scoring is the project's evaluator (``spine_kp.api.evaluate``, as ``spine-kp evaluate``): predictions are made on the
middle frame of the chosen series and compared, in pixels of that series, with ground truth that may lie on a
neighbouring frame; distances are in mm with the ground-truth image's spacing. Besides its localization figures at
``--radius`` (8 mm), the competition's figure (the public baseline's macro F1 at 6 mm,
``spine_kp.evaluation.baseline_f1``), mAP, AP per class and ECE per kind (the grades), this script reports the level
metrics of ``spine_kp.evaluation.levels``: identification accuracy (the level is right, not just close), order
violations (studies whose predictions are not strictly increasing head -> feet along the spine) and whole-level
shifts.

Everything is printed as a compact table and written atomically to ``OUT/bench_real.json`` (rewritten after each
fold); held-out predictions go to ``OUT/fold{k}/heldout_predictions.json`` (``OUT/zero_shot/predictions.json``).
Training progress bars are off unless ``--trainer.progress_bar true`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from spine_kp.api import evaluate, load_predictor, predict_studies, write_predictions
from spine_kp.config import ConfigError, parse_override_args
from spine_kp.engine.config import ExperimentConfig, load_experiment, resolve_config_path
from spine_kp.evaluation.levels import level_metrics, per_level_shares
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.io.atomic import atomic_write_text
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

# set by --data, --annotations and --folds
RESERVED = ("data.root", "data.annotations", "data.sources", "data.fold", "data.num_folds")


# ------------------------------------------------------------------------------------------------------- one run
def score(gt: Sequence[StudyRecord], pred: Sequence[StudyRecord], schema: Schema, radius: float) -> dict[str, Any]:
    """Every figure of one run (ground truth with its spacing filled): the evaluator's and the level metrics."""
    res = evaluate(pred, gt, schema=schema, radius=radius)
    loc = res.localization.overall
    levels = level_metrics(gt, pred, schema, radius)
    return {
        "n_studies": res.n_studies,
        "n_landmarks": loc.count,
        "within_radius": loc.within_radius,
        "median_mm": loc.median,
        "p95_mm": loc.p95,
        "never_predicted": loc.never_predicted,
        **levels,
        "per_level_within_radius": per_level_shares(res.errors, radius),
        "per_level": [s.to_dict() for s in res.localization.per_identification],
        "map": res.map,
        "macro_f1": res.baseline_macro_f1,
        "ap": {c.name: c.ap for c in res.classes if c.n_gt > 0},
        "ece": {r.name: r.ece for r in res.calibration if r.name != "all"},
        "missing_studies": list(res.missing_studies),
    }


def predict(
    predictor: Any, studies: list[Any], args: argparse.Namespace, out_json: Path
) -> tuple[list[StudyRecord], list[dict[str, str]]]:
    """Predict StudyIndex entries and write them to ``out_json``.

    Returns:
        (prediction records, failed studies with reasons).
    """
    run = predict_studies(studies, predictor, workers=args.workers, flip_tta=getattr(args, "flip_tta", None))
    write_predictions(run, predictor, out_json)
    return run.records, [f.to_dict() for f in run.failures]


def fold_split(uids: Iterable[str], fold: int, folds: int, seed: int) -> tuple[set[str], set[str]]:
    """(rest, test) study UIDs of fold ``fold``: the project's deterministic k-fold split by study."""
    from spine_kp.data.datamodule import split_studies

    rest, test = split_studies(sorted(set(uids)), 0.0, seed, fold=fold, num_folds=folds)
    return set(rest), set(test)


def write_subset(annotations: str | Path, keep: set[str], out: Path) -> Path:
    """The records of ``annotations`` whose studyUid is in ``keep``, written as is (competition format)."""
    raw = json.loads(Path(annotations).read_text(encoding="utf-8"))
    return atomic_write_text(out, json.dumps([r for r in raw if r.get("studyUid") in keep]) + "\n")


def run_fold(
    cfg: ExperimentConfig,
    fold: int,
    args: argparse.Namespace,
    init_kwargs: dict[str, str],
    gt_all: Sequence[StudyRecord],
    index: Mapping[str, Any],
) -> dict[str, Any]:
    """Train fold ``fold`` without its test studies, predict and score them; the fold's record (with raw records)."""
    from spine_kp.engine.train import train

    rest, test = fold_split((r.study_uid for r in gt_all), fold, args.folds, cfg.seed)
    out = Path(args.out) / f"fold{fold}"
    out.mkdir(parents=True, exist_ok=True)
    train_ann = write_subset(args.annotations, rest, out / "train_annotations.json")
    write_subset(args.annotations, test, out / "test_annotations.json")  # for scripts/bench_grade_stage.py
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, annotations=str(train_ann), fold=None))
    t = time.perf_counter()
    result = train(cfg, out, **init_kwargs)
    train_s = time.perf_counter() - t
    ckpt = result.best_checkpoint if getattr(args, "checkpoint", "best") == "best" else result.last_checkpoint
    ckpt = ckpt or result.last_checkpoint or result.best_checkpoint
    if ckpt is None:
        raise RuntimeError(f"fold {fold}: training in {out} wrote no checkpoint")
    held_out = [r for r in gt_all if r.study_uid in test]
    t = time.perf_counter()
    predictor = load_predictor(ckpt, device=args.device)
    studies = [index[u] for u in sorted(test) if u in index]
    pred, failures = predict(predictor, studies, args, out / "heldout_predictions.json")
    predict_s = time.perf_counter() - t
    gt = fill_spacing(held_out, pred_records=pred, studies=index)
    return {
        "fold": fold,
        "checkpoint": str(ckpt),
        "epochs": result.epochs,
        "best_score": result.best_score,
        "init": None if getattr(result, "init_report", None) is None else result.init_report.summary(),
        "grade_stage": result.grade_stage,
        "train_s": train_s,
        "predict_s": predict_s,
        "train_studies": len(rest),
        "held_out_studies": sorted(test),
        "failures": failures,
        "metrics": score(gt, pred, predictor.schema, args.radius),
        "_gt": gt,
        "_pred": pred,
        "_schema": predictor.schema,
    }


def run_zero_shot(args: argparse.Namespace) -> dict[str, Any]:
    """Predict every annotated study under the root with ``args.zero_shot`` and score them."""
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.dicom import scan

    t = time.perf_counter()
    predictor = load_predictor(args.zero_shot, device=args.device)
    gt = read_annotations(args.annotations, predictor.schema)
    index = scan(args.data, workers=max(1, args.workers)).studies
    scan_s = time.perf_counter() - t
    t = time.perf_counter()
    studies = [index[u] for u in sorted({r.study_uid for r in gt} & set(index))]  # only annotated studies
    pred, failures = predict(predictor, studies, args, Path(args.out) / "zero_shot" / "predictions.json")
    predict_s = time.perf_counter() - t
    gt = fill_spacing(gt, pred_records=pred, studies=index)
    return {
        "checkpoint": str(args.zero_shot),
        "load_and_scan_s": scan_s,
        "predict_s": predict_s,
        "failures": failures,
        "metrics": score(gt, pred, predictor.schema, args.radius),
    }


def pool_folds(args: argparse.Namespace, report: dict[str, Any]) -> int:
    """Score the finished folds in ``args.out`` together (each fold's test studies with its held-out predictions)."""
    from spine_kp.io.annotations import read_annotations

    out = Path(args.out)
    folds = sorted(p.parent for p in out.glob("fold*/heldout_predictions.json"))
    if not folds:
        print(f"error: --pool: no fold*/heldout_predictions.json in {out}", file=sys.stderr)
        return 2
    schema = _schema_of(folds[0])
    rows, gt, pred = [], [], []
    for fold in folds:
        g = read_annotations(fold / "test_annotations.json", schema)
        p = read_annotations(fold / "heldout_predictions.json", schema)
        g = fill_spacing(g, data_root=args.data, pred_records=p)
        rows.append((fold.name, score(g, p, schema, args.radius), None, None))
        gt += g
        pred += p
    report["pooled"] = score(gt, pred, schema, args.radius)
    report["pooled_folds"] = [f.name for f in folds]
    rows.append(("pooled", report["pooled"], None, None))
    atomic_write_text(out / "bench_real_pooled.json", json.dumps(report, indent=2) + "\n")
    sys.stdout.write(format_table(rows, args.radius))
    print(f"written: {out / 'bench_real_pooled.json'}")
    return 0


def _schema_of(fold: Path) -> Schema:
    """The schema a fold run was trained with (its config.yaml)."""
    from spine_kp.schema import load_schema

    return load_schema(load_experiment(fold / "config.yaml").schema)


# ------------------------------------------------------------------------------------------------------- report
def _f(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def format_table(rows: Sequence[tuple[str, dict[str, Any], float | None, float | None]], radius: float) -> str:
    """Summary rows (name, metrics, train_s, predict_s), then the share within r per level and run."""
    r = f"{radius:g}mm"
    head = f"{'run':<9} {'studies':>7} {'lmk':>5} {'<=' + r:>7} {'median':>7} {'p95':>7} {'never':>5} "
    head += f"{'ident':>6} {'order':>5} {'shift':>5} {'train_s':>8} {'pred_s':>7}"
    lines = [head]
    for name, m, tr, pr in rows:
        lines.append(
            f"{name:<9} {m['n_studies']:>7} {m['n_landmarks']:>5} {_f(m['within_radius'], '.3f'):>7} "
            f"{_f(m['median_mm'], '.2f'):>7} {_f(m['p95_mm'], '.2f'):>7} {m['never_predicted']:>5} "
            f"{_f(m['identification_accuracy'], '.3f'):>6} {m['order_violations']:>5} {m['level_shifts']:>5} "
            f"{_f(tr, '.1f'):>8} {_f(pr, '.1f'):>7}"
        )
    lines += ["", f"{'run':<9} {'macroF1':>7} {'mAP':>6} {'ECE':>13}  AP per class"]
    for name, m, _, _ in rows:
        ece = "/".join(_f(v, ".3f") for v in m.get("ece", {}).values()) or "-"
        aps = " ".join(f"{c} {_f(v, '.2f')}" for c, v in m.get("ap", {}).items())
        lines.append(f"{name:<9} {_f(m.get('macro_f1'), '.3f'):>7} {_f(m.get('map'), '.3f'):>6} {ece:>13}  {aps}")
    levels = list(dict.fromkeys(n for _, m, _, _ in rows for n in m["per_level_within_radius"]))
    widths = [max(7, len(name)) for name, *_ in rows]
    title = f"share within {r} per level:"
    lines += ["", f"{title} " + " ".join(f"{name:>{w}}" for (name, *_), w in zip(rows, widths))]
    for lv in levels:
        cells = (_f(m["per_level_within_radius"].get(lv), ".3f") for _, m, _, _ in rows)
        lines.append(f"{lv:<{len(title)}} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    return "\n".join(lines) + "\n"


def _public(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not k.startswith("_")}


def write_json(report: dict[str, Any], out: Path) -> Path:
    return atomic_write_text(out / "bench_real.json", json.dumps(report, indent=2) + "\n")


# ------------------------------------------------------------------------------------------------------- CLI
def default_config() -> str:
    """``finetune_cpu`` when it is packaged, else ``demo_cpu``."""
    try:
        resolve_config_path("finetune_cpu")
        return "finetune_cpu"
    except ConfigError:
        return "demo_cpu"


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    ap.add_argument("--data", required=True, help="data root holding the DICOM studies")
    ap.add_argument("--annotations", required=True, help="competition-format annotations.json")
    ap.add_argument("--out", required=True, help="output folder (fold runs, predictions, bench_real.json)")
    ap.add_argument("--config", default=None, help="training config (default finetune_cpu, else demo_cpu)")
    ap.add_argument("--init", default=None, help="initial weights for training (passed to train only when given)")
    ap.add_argument("--folds", type=int, default=5, help="number of folds K (data.num_folds)")
    ap.add_argument("--only-fold", type=int, default=None, help="run only this fold")
    ap.add_argument(
        "--zero-shot", default=None, metavar="CKPT", help="score this checkpoint on all studies, no training"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    ap.add_argument("--radius", type=float, default=DEFAULT_RADIUS_MM, help="radius in mm (default 8)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="prediction device")
    ap.add_argument("--workers", type=int, default=2, help="threads loading DICOM for prediction")
    ap.add_argument(
        "--checkpoint",
        choices=["last", "best"],
        default="best",
        help="which checkpoint of a fold to score (best: chosen on the fold's inner validation split, never on its"
        " test studies)",
    )
    ap.add_argument(
        "--flip-tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="predict with the anterior-posterior flip averaged in (default: the model card's decoding.flip_tta)",
    )
    ap.add_argument("--pool", action="store_true", help="score the folds already in --out together (no training)")
    args, rest = ap.parse_known_args(argv)
    try:
        overrides = parse_override_args([f"--{s}" for s in args.set] + rest)
    except ConfigError as exc:
        ap.error(str(exc))
    bad = [k for k in RESERVED if k in overrides]
    if bad:
        ap.error(f"{', '.join(bad)}: set by --data, --annotations and --folds; do not override them")
    if args.folds < 2 or (args.only_fold is not None and not 0 <= args.only_fold < args.folds):
        ap.error(f"--folds must be >= 2 and --only-fold in [0, {args.folds})")
    return args, overrides


def main(argv: Sequence[str] | None = None) -> int:
    args, overrides = parse_args(argv)
    out = Path(args.out)
    report: dict[str, Any] = {
        "data": str(args.data),
        "annotations": str(args.annotations),
        "radius_mm": args.radius,
        "order_axis": "principal axis of each study's ground-truth points (mm), oriented head->feet",
    }
    if args.pool:
        return pool_folds(args, report)
    if args.zero_shot:
        zs = run_zero_shot(args)
        report["zero_shot"] = zs
        write_json(report, out)
        sys.stdout.write(format_table([("zero-shot", zs["metrics"], None, zs["predict_s"])], args.radius))
        print(f"written: {out / 'bench_real.json'}")
        return 0

    from spine_kp.engine.train import train

    init_kwargs: dict[str, str] = {}
    if args.init:
        if "init" not in inspect.signature(train).parameters:
            print(
                "error: --init: spine_kp.engine.train.train() has no 'init' parameter in this version", file=sys.stderr
            )
            return 2
        init_kwargs["init"] = args.init
    config = args.config or default_config()
    overrides.setdefault("trainer.progress_bar", "false")
    try:
        cfg = load_experiment(config, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, root=str(args.data), annotations=str(args.annotations))
    )
    report.update({"config": config, "overrides": overrides, "init": args.init, "folds": args.folds, "cv": []})
    report["protocol"] = "nested: fold k's test studies are left out of its training annotations; inner validation"
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.dicom import scan
    from spine_kp.schema import load_schema

    gt_all = read_annotations(args.annotations, load_schema(cfg.schema))
    index = scan(args.data, workers=max(1, args.workers)).studies
    folds = [args.only_fold] if args.only_fold is not None else list(range(args.folds))
    done: list[dict[str, Any]] = []
    for k in folds:
        print(f"fold {k}/{args.folds}: training in {out / f'fold{k}'}", flush=True)
        done.append(run_fold(cfg, k, args, init_kwargs, gt_all, index))
        report["cv"] = [_public(f) for f in done]
        gt = [r for f in done for r in f["_gt"]]
        report["pooled"] = score(gt, [r for f in done for r in f["_pred"]], done[0]["_schema"], args.radius)
        write_json(report, out)
    rows = [(f"fold{f['fold']}", f["metrics"], f["train_s"], f["predict_s"]) for f in done]
    rows.append(("pooled", report["pooled"], sum(f["train_s"] for f in done), sum(f["predict_s"] for f in done)))
    sys.stdout.write(format_table(rows, args.radius))
    print(f"written: {out / 'bench_real.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
