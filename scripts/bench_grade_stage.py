"""Benchmark of the crop grading stage's training options on one trained landmark network.

Usage:
    python scripts/bench_grade_stage.py --run RUN_DIR --test-root ROOT --test-annotations GT.json \\
        [--variant NAME key=value ...] [--out OUT.json]

``RUN_DIR`` is a finished training run (``config.yaml`` and ``checkpoints/best.ckpt``). Its landmark network stays
fixed; for each variant the crop stage is retrained on the run's own split (``SpineDataModule`` of the run's config,
so the same training and validation studies), with the variant's ``grade_stage`` overrides (e.g.
``pos_weight_power=0.5``), then the held-out studies under ``--test-root`` are predicted (middle slice, as
``spine-kp predict``) and scored by the project's evaluator (8 mm). The row ``head`` grades with the landmark
network's grade head alone (no stage). Every variant trains with the same seed.

``--top-k-grades K`` scores as ``predict --top-k-grades K`` does: with K = the number of grades, every grade of every
landmark is a ranked point, so AP measures the ranking alone and not also which grades pass the emission threshold.

Printed: mAP, AP per disc grade, false positives per disc grade, ECE per kind and training seconds; the same goes to
``--out`` as JSON. Variants default to: today's weighting, its square root, no weighting, focal loss (gamma 2,
square-root weights) and logit adjustment (tau 1, no weighting).

``--cv DIR`` does the same by cross-validation, on the fold runs that ``scripts/bench_real.py`` left in ``DIR``
(``DIR/fold{k}``: the run, its ``train_annotations.json`` and ``test_annotations.json``): per variant and fold the
stage is retrained on the fold's own training/validation split (which never held the fold's test studies), the
fold's test studies are predicted with the fold's landmark network, and the predictions of all folds are pooled and
scored together; rows then also carry the competition's macro F1 (6 mm) and the AP of every class.

``--flip-tta`` predicts the test studies with the mirrored image averaged in (as ``tianchi_cpu``'s model card does).
``--refit-score-maps`` fits every row's score maps again on each fold's validation split with that row's predictor,
as the end of training would for that variant (otherwise every row keeps the fold checkpoint's maps, fitted for its
own stage). Variants that differ only in ``combine`` (a predict-time setting) share one trained stage per fold and
seed, so ``--variant replace --variant average combine=average`` is a paired comparison.

``--seeds S1 S2 ...`` trains each variant once per seed (rows ``NAME seed S``) and adds a row ``NAME mean``: one seed's
figures on rare grades move by more than most differences between variants.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import yaml

from spine_kp.api import evaluate, load_predictor, predict_folder, predict_studies
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import label_stats
from spine_kp.engine.config import load_experiment
from spine_kp.engine.grade_stage_train import train_grade_stage
from spine_kp.engine.score_map_fit import fit_score_maps
from spine_kp.inference.crop_stage import CropStage
from spine_kp.io.annotations import read_annotations
from spine_kp.io.atomic import atomic_write_text
from spine_kp.schema import load_schema

DEFAULT_VARIANTS = {
    "full pos_weight (today)": {},
    "sqrt pos_weight": {"pos_weight_power": 0.5},
    "no pos_weight": {"pos_weight_power": 0.0},
    "focal g2 + sqrt": {"pos_weight_power": 0.5, "focal_gamma": 2.0},
    "logit adjust t1": {"pos_weight_power": 0.0, "logit_adjust": 1.0},
}


def _parse_variants(items: list[list[str]] | None) -> dict[str, dict[str, Any]]:
    if not items:
        return dict(DEFAULT_VARIANTS)
    out = {}
    for name, *pairs in items:
        out[name] = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}
    return out


def _score(predictor: Any, root: Path, gt: list, schema: Any, top_k: int | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    run = predict_folder(root, predictor, workers=2, top_k_grades=top_k)
    res = evaluate(run, gt, schema=schema)
    disc = [c for c in res.classes if c.kind == "disc" and c.defined]
    return {
        "mAP": res.map,
        "disc_ap": {c.grade: c.ap for c in disc},
        "disc_fp": {c.grade: c.fp for c in disc},
        "ece": {r.name: r.ece for r in res.calibration},
        "median_mm": res.localization.overall.median,
        "predict_s": round(time.perf_counter() - t0, 1),
    }


def _figures(gt: list, records: list, schema: Any) -> dict[str, Any]:
    """The figures of pooled predictions: mAP, AP per class and per disc grade, FP per disc grade, macro F1, ECE."""
    res = evaluate(records, gt, schema=schema)
    disc = [c for c in res.classes if c.kind == "disc" and c.defined]
    return {
        "mAP": res.map,
        "macro_f1": res.baseline_macro_f1,
        "ap": {c.name: c.ap for c in res.classes if c.defined},
        "disc_ap": {c.grade: c.ap for c in disc},
        "disc_fp": {c.grade: c.fp for c in disc},
        "ece": {r.name: r.ece for r in res.calibration},
        "median_mm": res.localization.overall.median,
    }


def _cv_folds(cv: Path, flip_tta: bool = False) -> list[dict[str, Any]]:
    """Each fold run of a bench_real.py folder: its config, split, landmark predictor (predicting with flip-TTA
    or not), test studies and truth."""
    from spine_kp.io.dicom import scan

    folds, index = [], None
    for run in sorted(p.parent for p in cv.glob("fold*/config.yaml")):
        cfg = load_experiment(run / "config.yaml")
        dm = SpineDataModule(cfg.data, schema=load_schema(cfg.schema))
        dm.setup("fit")
        index = index or scan(cfg.data.root).studies
        gt = read_annotations(run / "test_annotations.json", dm.schema)
        base = load_predictor(run, device="cpu", grade_stage=None)
        base = base.with_decode(dataclasses.replace(base.decode, flip_tta=flip_tta))
        studies = [index[r.study_uid] for r in gt if r.study_uid in index]
        folds.append({"run": run, "cfg": cfg, "dm": dm, "gt": gt, "base": base, "studies": studies, "stages": {}})
    if not folds:
        raise SystemExit(f"--cv {cv}: no fold*/config.yaml (run scripts/bench_real.py --out {cv} first)")
    return folds


def _fold_stage(fold: dict[str, Any], stage_cfg: Any, seed: int | None) -> tuple[Any, float]:
    """The fold's crop stage trained with ``stage_cfg`` and ``seed``, and its training seconds (0: trained before).
    ``combine`` acts at predict time only, so variants that differ in it alone share one trained stage."""
    dm, seed = fold["dm"], fold["cfg"].seed if seed is None else seed
    key = json.dumps([seed, {**dataclasses.asdict(stage_cfg), "combine": None}], sort_keys=True, default=str)
    if key in fold["stages"]:
        return fold["stages"][key].with_combine(stage_cfg.combine), 0.0
    t0 = time.perf_counter()
    payload = train_grade_stage(
        stage_cfg, dm.schema, label_stats(dm.train_records, dm.schema), dm.train_records, dm.val_records,
        dm.studies, seed=seed,
    )  # fmt: skip
    stage = CropStage.from_payload(payload, dm.schema, fold["base"].trained)
    fold["stages"][key] = stage
    return stage, time.perf_counter() - t0


def _cv_row(
    folds: list[dict[str, Any]], stage_cfg: Any, seed: int | None, top_k: int | None, refit_maps: bool = False
) -> dict[str, Any]:
    """One variant by cross-validation (stage_cfg None: the grade head alone); predictions pooled over the folds.
    With ``refit_maps`` each fold's score maps are fitted again on its validation split with the variant's predictor,
    as training would fit them for that variant (on the points it writes: ``top_k`` goes into the predictor's card)."""
    records, gt, seconds = [], [], 0.0
    for f in folds:
        predictor = f["base"]
        if top_k is not None:
            predictor = predictor.with_decode(dataclasses.replace(predictor.decode, top_k_grades=top_k))
        if stage_cfg is not None:
            stage, took = _fold_stage(f, stage_cfg, seed)
            seconds += took
            predictor = predictor.with_grade_stage(stage)
        if refit_maps:
            maps = fit_score_maps(predictor, f["dm"].val_records, f["dm"].studies)
            predictor = predictor.with_card(predictor.card.overridden(score_calibration=maps or {}))
        run = predict_studies(f["studies"], predictor, workers=2)
        records += [p.record for p in run.predictions]
        gt += f["gt"]
    row = _figures(gt, records, folds[0]["base"].schema)
    row["train_s"] = round(seconds, 1)
    return row


def _mean(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of a variant's figures (mAP, AP and FP per disc grade, ECE, training seconds)."""

    def avg(values: list[float | None]) -> float:
        kept = [v for v in values if v is not None]
        return float(sum(kept) / len(kept)) if kept else 0.0

    first = runs[0]
    return {
        "mAP": avg([r["mAP"] for r in runs]),
        "disc_ap": {g: avg([r["disc_ap"][g] for r in runs]) for g in first["disc_ap"]},
        "disc_fp": {g: round(avg([r["disc_fp"][g] for r in runs]), 1) for g in first["disc_fp"]},
        "ece": {k: avg([r["ece"].get(k) for r in runs]) for k in first["ece"]},
        "train_s": round(avg([r["train_s"] for r in runs]), 1),
        "overrides": first["overrides"],
        "seeds": [r["seed"] for r in runs],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="a finished run (with --test-root, --test-annotations)")
    ap.add_argument("--test-root", type=Path, default=None)
    ap.add_argument("--test-annotations", type=Path, default=None)
    ap.add_argument("--cv", type=Path, default=None, help="a scripts/bench_real.py output folder (fold runs)")
    ap.add_argument("--variant", nargs="+", action="append", metavar="NAME [key=value ...]")
    ap.add_argument("--epochs", type=int, default=None, help="override grade_stage.epochs for every variant")
    ap.add_argument(
        "--top-k-grades",
        type=int,
        default=None,
        help="as predict --top-k-grades: write at least K grades per landmark as scored points (AP then ranks every "
        "grade of every landmark, not only the confident ones); default: the fold checkpoints' decoding.top_k_grades",
    )
    ap.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="train each variant once per seed (default: the run's seed)"
    )
    ap.add_argument("--flip-tta", action="store_true", help="--cv: predict with flip-TTA (as tianchi_cpu's card does)")
    ap.add_argument(
        "--refit-score-maps",
        action="store_true",
        help="--cv: fit each row's score maps again on every fold's validation split, as training would for it",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.cv is not None:
        return _main_cv(ap, args)
    if args.run is None or args.test_root is None or args.test_annotations is None:
        ap.error("give --run, --test-root and --test-annotations, or --cv DIR")

    cfg = load_experiment(args.run / "config.yaml")
    variants = _parse_variants(args.variant)
    stage_cfgs = {}
    for name, overrides in variants.items():  # every variant is checked before anything trains
        extra = {"epochs": args.epochs} if args.epochs is not None else {}
        try:
            stage_cfgs[name] = dataclasses.replace(cfg.grade_stage, enabled=True, **overrides, **extra)
        except (TypeError, ValueError) as exc:
            ap.error(f"--variant {name}: {exc}")
    dm = SpineDataModule(cfg.data, schema=load_schema(cfg.schema))
    dm.setup("fit")
    schema = dm.schema
    stats = label_stats(dm.train_records, schema)
    gt = read_annotations(args.test_annotations, schema)
    base = load_predictor(args.run, device="cpu", grade_stage=None)
    rows: dict[str, dict[str, Any]] = {"head": _score(base, args.test_root, gt, schema, args.top_k_grades)}
    print(f"head: {rows['head']}", flush=True)
    for name, overrides in variants.items():
        stage_cfg = stage_cfgs[name]
        runs = []
        for seed in args.seeds or [cfg.seed]:
            t0 = time.perf_counter()
            payload = train_grade_stage(
                stage_cfg, schema, stats, dm.train_records, dm.val_records, dm.studies, seed=seed
            )
            seconds = time.perf_counter() - t0
            stage = CropStage.from_payload(payload, schema, base.trained)
            row = _score(base.with_grade_stage(stage), args.test_root, gt, schema, args.top_k_grades)
            row.update(
                train_s=round(seconds, 1),
                overrides=overrides,
                seed=seed,
                val_mAP=payload["metrics"]["best_val_mAP"],
                best_epoch=payload["metrics"]["best_epoch"],
                val_history=payload["metrics"]["val_mAP_per_epoch"],
            )
            runs.append(row)
            key = name if len(args.seeds or [0]) == 1 else f"{name} seed {seed}"
            rows[key] = row
            print(f"{key}: {row}", flush=True)
            if args.out:
                atomic_write_text(args.out, json.dumps(rows, indent=1))
        if len(runs) > 1:
            rows[f"{name} mean"] = _mean(runs)

    grades = sorted({g for r in rows.values() for g in r["disc_ap"]})
    print("\n| variant | mAP | disc AP " + " / ".join(grades) + " | disc FP | ECE vertebra / disc | train s |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        aps = " / ".join(f"{r['disc_ap'][g]:.2f}" for g in grades)
        fps = " / ".join(str(r["disc_fp"][g]) for g in grades)
        ece = " / ".join(f"{r['ece'].get(k) or 0:.3f}" for k in ("vertebra", "disc"))
        print(f"| {name} | {r['mAP']:.3f} | {aps} | {fps} | {ece} | {r.get('train_s', '-')} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=1))
    return 0


def _main_cv(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    folds = _cv_folds(args.cv, flip_tta=args.flip_tta)
    base_stage = folds[0]["cfg"].grade_stage
    variants = _parse_variants(args.variant)
    stage_cfgs = {}
    for name, overrides in variants.items():  # every variant is checked before anything trains
        extra = {"epochs": args.epochs} if args.epochs is not None else {}
        try:
            stage_cfgs[name] = dataclasses.replace(base_stage, enabled=True, **overrides, **extra)
        except (TypeError, ValueError) as exc:
            ap.error(f"--variant {name}: {exc}")
    refit = args.refit_score_maps
    rows: dict[str, dict[str, Any]] = {"head": _cv_row(folds, None, None, args.top_k_grades, refit)}
    print(f"head: {rows['head']}", flush=True)
    for seed in args.seeds or [None]:  # seed by seed, so variants that differ in combine alone share a trained stage
        for name, stage_cfg in stage_cfgs.items():
            key = name if seed is None else f"{name} seed {seed}"
            rows[key] = {**_cv_row(folds, stage_cfg, seed, args.top_k_grades, refit), "overrides": variants[name]}
            print(f"{key}: {rows[key]}", flush=True)
            if args.out:
                atomic_write_text(args.out, json.dumps(rows, indent=1))
    classes = list(rows["head"]["ap"])
    print(f"\n{len(folds)}-fold CV, predictions pooled over the folds' test studies\n")
    print("| variant | macro F1 | mAP | AP " + " / ".join(classes) + " | ECE " + " / ".join(rows["head"]["ece"]) + " |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        aps = " / ".join(f"{r['ap'].get(c) or 0:.2f}" for c in classes)
        ece = " / ".join(f"{v or 0:.3f}" for v in r["ece"].values())
        print(f"| {name} | {r['macro_f1'] or 0:.3f} | {r['mAP'] or 0:.3f} | {aps} | {ece} |")
    if args.out:
        atomic_write_text(args.out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
