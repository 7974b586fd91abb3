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

Scoring is the project's evaluator (``evaluate_records``, as ``spine-kp evaluate``): predictions are made on the
middle frame of the chosen series and compared, in pixels of that series, with ground truth that may lie on a
neighbouring frame; distances are in mm with the ground-truth image's spacing. Besides its localization figures at
``--radius`` (8 mm), this script reports, with the functions below:

* identification accuracy: share of ground-truth landmarks whose same-identification prediction is within r AND is
  the nearest prediction of any identification (the level is right, not just close); as in the evaluator's
  localization, "the prediction" of an identification is its best-scored point;
* order violations: studies whose predictions of the ground truth's identifications are not strictly increasing
  head -> feet. "Along the spine" everywhere here means along the principal axis of the study's ground-truth points
  (in mm), oriented head -> feet (positive row component, since sagittal rows run head -> feet); the row direction
  when the study has fewer than two distinct ground-truth points;
* the competition's figure: the public baseline's macro F1 at 6 mm (``spine_kp.evaluation.baseline_f1``), with the
  evaluator's mAP, AP per class and ECE per kind (the grades; all at ``--radius`` except the macro F1);
* level shifts: studies whose median signed offset along the spine (prediction minus ground truth, same
  identification) is within 0.3 level of a whole non-zero number of levels; a level is the median distance along
  the spine between adjacent landmarks of one kind (L3 -> L4, L3-L4 -> L4-L5) in that study's ground truth.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spine_kp.config import ConfigError, parse_override_args
from spine_kp.engine.config import ExperimentConfig, load_experiment, resolve_config_path
from spine_kp.evaluation.evaluate import evaluate_records
from spine_kp.evaluation.matching import DEFAULT_RADIUS_MM
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.io.atomic import atomic_write_text
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord

Coord = tuple[float, float]
Spacing = tuple[float, float]
# set by --data, --annotations and --folds
RESERVED = ("data.root", "data.annotations", "data.sources", "data.fold", "data.num_folds")


# --------------------------------------------------------------------------------------------- pure metric functions
@dataclass(frozen=True)
class GtPoint:
    """One ground-truth landmark: identification, (x, y) in pixels, spacing (row_mm, col_mm) of its image."""

    identification: str
    xy: Coord
    spacing: Spacing


@dataclass(frozen=True)
class StudyPoints:
    """One study reduced to what the metrics need.

    Attributes:
        uid: study UID.
        gt: every ground-truth landmark (all images of the record).
        pred: identification -> (x, y) pixels of its best-scored prediction (same pixel grid as the ground truth).
    """

    uid: str
    gt: tuple[GtPoint, ...]
    pred: Mapping[str, Coord]


def to_mm(xy: Coord, spacing: Spacing) -> np.ndarray:
    """(x, y) pixels -> (x, y) mm with spacing (row_mm, col_mm)."""
    return np.array([xy[0] * spacing[1], xy[1] * spacing[0]], dtype=np.float64)


def best_predictions(record: StudyRecord | None) -> dict[str, Coord]:
    """Identification -> coordinates of its best-scored point (no score ranks as 1.0; ties keep the first)."""
    best: dict[str, tuple[float, Coord]] = {}
    for p in record.points if record is not None else ():
        score = 1.0 if p.score is None else float(p.score)
        if p.identification not in best or score > best[p.identification][0]:
            best[p.identification] = (score, (float(p.coord[0]), float(p.coord[1])))
    return {k: v[1] for k, v in best.items()}


def study_points(gt: StudyRecord, pred: StudyRecord | None) -> StudyPoints:
    """Pair a ground-truth record (every image carries ``pixel_spacing``) with its prediction record (or None)."""
    if any(im.pixel_spacing is None and im.points for im in gt.images):
        raise ValueError(f"study {gt.study_uid}: a ground-truth image has no pixel spacing (fill it first)")
    points = tuple(
        GtPoint(p.identification, (float(p.coord[0]), float(p.coord[1])), im.pixel_spacing or (1.0, 1.0))
        for im in gt.images
        for p in im.points
    )
    return StudyPoints(gt.study_uid, points, best_predictions(pred))


def identification_hits(study: StudyPoints, radius: float) -> list[bool]:
    """Per ground-truth landmark: its same-identification prediction is within ``radius`` mm and is the nearest
    prediction of any identification (a tie with another identification still counts as right)."""
    hits = []
    for g in study.gt:
        own = study.pred.get(g.identification)
        if own is None:
            hits.append(False)
            continue
        gmm = to_mm(g.xy, g.spacing)
        d_own = float(np.linalg.norm(to_mm(own, g.spacing) - gmm))
        d_any = min(float(np.linalg.norm(to_mm(xy, g.spacing) - gmm)) for xy in study.pred.values())
        hits.append(d_own <= radius and d_own <= d_any)
    return hits


def identification_accuracy(studies: Iterable[StudyPoints], radius: float) -> float | None:
    """Share of all ground-truth landmarks (pooled over studies) counted by :func:`identification_hits`, or None."""
    hits = [h for s in studies for h in identification_hits(s, radius)]
    return float(np.mean(hits)) if hits else None


def _first_gt(study: StudyPoints) -> dict[str, GtPoint]:
    out: dict[str, GtPoint] = {}
    for g in study.gt:
        out.setdefault(g.identification, g)
    return out


def spine_axis(study: StudyPoints) -> np.ndarray:
    """Unit (x, y) vector in mm along the spine, head -> feet: the principal axis of the ground-truth points, with a
    positive row (y) component; (0, 1) when there are fewer than two distinct points."""
    pts = np.array([to_mm(g.xy, g.spacing) for g in study.gt]).reshape(-1, 2)
    if len(np.unique(pts, axis=0)) < 2:
        return np.array([0.0, 1.0])
    axis = np.linalg.svd(pts - pts.mean(axis=0), full_matrices=False)[2][0]
    return -axis if axis[1] < 0 or (axis[1] == 0 and axis[0] < 0) else axis


def order_violation(study: StudyPoints, order: Sequence[str]) -> bool:
    """Whether the predictions of the ground truth's identifications, taken in cranio-caudal ``order`` (the schema's
    landmark order), are not strictly increasing along the spine. Never-predicted ones are left out."""
    gt = _first_gt(study)
    if not gt:
        return False
    spacing = next(iter(gt.values())).spacing
    axis = spine_axis(study)
    proj = [float(to_mm(study.pred[n], spacing) @ axis) for n in order if n in gt and n in study.pred]
    return bool(np.any(np.diff(proj) <= 0))


def level_offset(study: StudyPoints, kinds: Sequence[Sequence[str]]) -> float | None:
    """Median signed offset (prediction - ground truth, same identification) along the spine, in levels.

    Args:
        study: one study.
        kinds: the landmarks of each kind in cranio-caudal order (vertebrae, discs); adjacent entries are one level
            apart, and the median ground-truth distance along the spine of such present pairs is the level.

    Returns:
        Positive = predicted towards the feet; None without a level or without any predicted ground-truth landmark.
    """
    gt = _first_gt(study)
    axis = spine_axis(study)
    proj = {n: float(to_mm(g.xy, g.spacing) @ axis) for n, g in gt.items()}
    steps = [proj[b] - proj[a] for names in kinds for a, b in zip(names, names[1:]) if a in proj and b in proj]
    level = float(np.median(steps)) if steps else 0.0
    offsets = [
        float((to_mm(study.pred[n], g.spacing) - to_mm(g.xy, g.spacing)) @ axis)
        for n, g in gt.items()
        if n in study.pred
    ]
    if level <= 0 or not offsets:
        return None
    return float(np.median(offsets)) / level


def whole_level_shift(offset: float | None, tolerance: float = 0.3) -> int:
    """The whole number of levels n != 0 that a :func:`level_offset` is about (|offset - n| <= ``tolerance``), else 0.

    A whole-level shift puts landmarks where their neighbours are; an offset between levels (or undefined) is a
    localization error, not a shift, and gives 0.
    """
    if offset is None:
        return 0
    n = int(np.sign(offset) * np.floor(abs(offset) + 0.5))
    return n if n != 0 and abs(offset - n) <= tolerance else 0


def per_level_shares(errors: Mapping[str, np.ndarray], radius: float) -> dict[str, float | None]:
    """Identification -> share of its landmarks with error <= ``radius`` mm (NaN = never predicted = a miss)."""
    return {n: (float(np.mean(np.nan_to_num(e, nan=np.inf) <= radius)) if len(e) else None) for n, e in errors.items()}


# ------------------------------------------------------------------------------------------------------- one run
def merge_by_study(records: Iterable[StudyRecord]) -> dict[str, StudyRecord]:
    """Study UID -> one record holding all its images (as the evaluator merges them)."""
    out: dict[str, StudyRecord] = {}
    for r in records:
        prev = out.get(r.study_uid)
        out[r.study_uid] = r if prev is None else dataclasses.replace(prev, images=prev.images + r.images)
    return out


def score(gt: Sequence[StudyRecord], pred: Sequence[StudyRecord], schema: Schema, radius: float) -> dict[str, Any]:
    """Every figure of one run: the evaluator's localization and mAP plus this script's level metrics."""
    res = evaluate_records(gt, pred, schema, radius=radius)
    loc = res.localization.overall
    pred_by = merge_by_study(pred)
    studies = [study_points(r, pred_by.get(uid)) for uid, r in sorted(merge_by_study(gt).items())]
    kinds = [schema.landmarks_of_kind(k.name) for k in schema.kinds]
    offsets = {s.uid: level_offset(s, kinds) for s in studies}
    shifts = {uid: whole_level_shift(o) for uid, o in offsets.items()}
    return {
        "n_studies": res.n_studies,
        "n_landmarks": loc.count,
        "within_radius": loc.within_radius,
        "median_mm": loc.median,
        "p95_mm": loc.p95,
        "never_predicted": loc.never_predicted,
        "identification_accuracy": identification_accuracy(studies, radius),
        "order_violations": sum(order_violation(s, schema.landmarks) for s in studies),
        "order_violation_studies": [s.uid for s in studies if order_violation(s, schema.landmarks)],
        "level_shifts": sum(v != 0 for v in shifts.values()),
        "level_shift_studies": {uid: v for uid, v in shifts.items() if v != 0},
        "level_offsets": offsets,
        "per_level_within_radius": per_level_shares(res.errors, radius),
        "per_level": [s.to_dict() for s in res.localization.per_identification],
        "map": res.map,
        "macro_f1": res.baseline_macro_f1,
        "ap": {c.name: c.ap for c in res.classes if c.n_gt > 0},
        "ece": {r.name: r.ece for r in res.calibration if r.name != "all"},
        "missing_studies": list(res.missing_studies),
    }


def fill_gt_spacing(
    gt: Sequence[StudyRecord], studies: Mapping[str, Any], root: str, pred: Sequence[StudyRecord]
) -> list[StudyRecord]:
    """Ground truth with spacing from the already-scanned ``studies`` (StudyIndex); the root is rescanned only when
    some annotated instance is not among them."""
    by_instance = {
        inst.sop_instance_uid: (float(se.spacing[0]), float(se.spacing[1]))
        for st in studies.values()
        for se in st.series
        for inst in se.instances
    }
    known = [
        dataclasses.replace(
            r,
            images=tuple(
                dataclasses.replace(im, pixel_spacing=im.pixel_spacing or by_instance.get(im.instance_uid))
                for im in r.images
            ),
        )
        for r in gt
    ]
    return fill_spacing(known, data_root=root, pred_records=pred)


def predict(
    predictor: Any, studies: list[Any], args: argparse.Namespace, out_json: Path
) -> tuple[list[StudyRecord], list[dict[str, str]]]:
    """Predict StudyIndex entries with a ``Predictor`` and write them to ``out_json``.

    Returns:
        (prediction records, failed studies with reasons).
    """
    from spine_kp.predict.outputs import write_outputs
    from spine_kp.predict.runner import PredictOptions, predict_studies

    run = predict_studies(
        studies,
        predictor,
        PredictOptions(workers=args.workers, progress=False, flip_tta=getattr(args, "flip_tta", False)),
    )
    run.predictions.sort(key=lambda p: p.slice.study_uid)
    write_outputs(run, predictor.schema, out_json)
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
    from spine_kp.inference.predictor import Predictor

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
    predictor = Predictor.from_checkpoint(ckpt, device=args.device)
    studies = [index[u] for u in sorted(test) if u in index]
    pred, failures = predict(predictor, studies, args, out / "heldout_predictions.json")
    predict_s = time.perf_counter() - t
    gt = fill_gt_spacing(held_out, index, cfg.data.root, pred)
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
    from spine_kp.inference.predictor import Predictor
    from spine_kp.io.annotations import read_annotations
    from spine_kp.io.dicom import scan

    t = time.perf_counter()
    predictor = Predictor.from_checkpoint(args.zero_shot, device=args.device)
    gt = read_annotations(args.annotations, predictor.schema)
    index = scan(args.data, workers=max(1, args.workers)).studies
    scan_s = time.perf_counter() - t
    t = time.perf_counter()
    studies = [index[u] for u in sorted({r.study_uid for r in gt} & set(index))]  # only annotated studies
    pred, failures = predict(predictor, studies, args, Path(args.out) / "zero_shot" / "predictions.json")
    predict_s = time.perf_counter() - t
    gt = fill_gt_spacing(gt, index, args.data, pred)
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
    ap.add_argument("--flip-tta", action="store_true", help="predict with the anterior-posterior flip averaged in")
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
