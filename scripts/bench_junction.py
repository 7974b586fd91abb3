"""The junction check by nested cross-validation on the fold runs of ``scripts/bench_real.py``.

    python scripts/bench_junction.py --cv CV_DIR [--margins 0 2 4] [--seed S] [--flip-tta] [--refit-score-maps]
        [--grade-stage KEY=VALUE ...] [--out bench_junction.json]

For every fold run in CV_DIR (``fold*/config.yaml``, as bench_real.py writes them) the landmark network and the run's
own stage, decoding and score maps stay as trained; the junction check (``junction`` config section, with
``enabled`` set) is trained on the run's own training split (``SpineDataModule`` of its config: the split training
used, which never held the fold's test studies) and the fold's test studies are predicted without it and with it at
every ``--margin`` (a predict-time setting: one training serves all). The test studies of all folds are pooled and
scored by the project's evaluator: share within 8 mm, median, whole-level shifts, order violations, macro F1 (6 mm),
mAP, ECE, and which studies are a level off in each row.

``--flip-tta`` predicts with the mirrored image averaged in (as a card with ``decode.flip_tta`` does);
``--grade-stage KEY=VALUE ...`` retrains each fold's crop grading stage with those ``grade_stage`` settings first (e.g.
``init=stage/grade_stage.pt combine=average``, the recipe of ``tianchi_cpu``), shared by every row; and
``--refit-score-maps`` fits every row's score maps again on the fold's validation split with that row's predictor, as
training fits them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import yaml

from spine_kp.api import evaluate, load_predictor, predict_studies
from spine_kp.data.datamodule import SpineDataModule
from spine_kp.data.labels import label_stats
from spine_kp.engine.config import load_experiment
from spine_kp.engine.grade_stage_train import train_grade_stage
from spine_kp.engine.junction_train import train_junction
from spine_kp.engine.score_map_fit import fit_score_maps
from spine_kp.evaluation.levels import level_metrics
from spine_kp.evaluation.spacing import fill_spacing
from spine_kp.inference.crop_stage import CropStage
from spine_kp.inference.junction_torch import JunctionCheck
from spine_kp.io.annotations import read_annotations
from spine_kp.io.atomic import atomic_write_text
from spine_kp.io.dicom import scan
from spine_kp.schema import load_schema


def figures(gt: list, records: list, schema: Any) -> dict[str, Any]:
    """Localization, level and grade figures of pooled predictions (ground truth with its spacing filled)."""
    res = evaluate(records, gt, schema=schema)
    levels = level_metrics(gt, records, schema, 8.0)
    loc = res.localization.overall
    return {
        "within_8mm": loc.within_radius,
        "median_mm": loc.median,
        "p95_mm": loc.p95,
        "never_predicted": loc.never_predicted,
        "level_shifts": levels["level_shifts"],
        "level_shift_studies": levels["level_shift_studies"],
        "order_violations": levels["order_violations"],
        "macro_f1": res.baseline_macro_f1,
        "mAP": res.map,
        "ap": {c.name: c.ap for c in res.classes if c.defined},
        "ece": {r.name: r.ece for r in res.calibration},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cv", type=Path, required=True, help="a bench_real.py --out folder (fold*/ runs)")
    ap.add_argument("--margins", type=float, nargs="+", default=[0.0], help="junction.margin values to predict with")
    ap.add_argument("--seed", type=int, default=None, help="the check's training seed (default: each run's seed)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="other junction settings")
    ap.add_argument("--flip-tta", action="store_true", help="predict with the mirrored image averaged in")
    ap.add_argument("--grade-stage", nargs="*", default=None, metavar="KEY=VALUE", help="retrain the crop stage first")
    ap.add_argument("--refit-score-maps", action="store_true", help="fit each row's score maps on the validation split")
    ap.add_argument("--out", type=Path, default=None, help="JSON of every figure (default: CV_DIR/bench_junction.json)")
    args = ap.parse_args(argv)
    extra = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    stage_set = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.grade_stage or [])}
    rows: dict[str, dict[str, list]] = {}
    trained: list[dict[str, Any]] = []
    index = None
    schema = None
    runs = sorted(p.parent for p in args.cv.glob("fold*/config.yaml"))
    if not runs:
        raise SystemExit(f"--cv {args.cv}: no fold*/config.yaml (run scripts/bench_real.py --out {args.cv} first)")
    for run in runs:
        cfg = load_experiment(run / "config.yaml")
        dm = SpineDataModule(cfg.data, schema=load_schema(cfg.schema))
        dm.setup("fit")
        schema = dm.schema
        index = index or scan(cfg.data.root).studies
        gt = read_annotations(run / "test_annotations.json", schema)
        studies = [index[r.study_uid] for r in gt if r.study_uid in index]
        base = load_predictor(run, device="cpu", junction=None)
        base = base.with_decode(dataclasses.replace(base.decode, flip_tta=args.flip_tta))
        if args.grade_stage is not None:
            stage_cfg = dataclasses.replace(cfg.grade_stage, enabled=True, **stage_set)
            stats = label_stats(dm.train_records, schema)
            stage = train_grade_stage(
                stage_cfg, schema, stats, dm.train_records, dm.val_records, dm.studies, seed=cfg.seed
            )
            base = base.with_grade_stage(CropStage.from_payload(stage, schema, base.trained))
        jcfg = dataclasses.replace(cfg.junction, enabled=True, **extra)
        seed = cfg.seed if args.seed is None else args.seed
        t0 = time.perf_counter()
        payload = train_junction(jcfg, schema, dm.train_records, dm.val_records, dm.studies, seed=seed)
        if payload is None:
            raise SystemExit(f"{run}: the junction check was not trained (see the log)")
        took = time.perf_counter() - t0
        trained.append({"run": str(run), "train_s": round(took, 1), "metrics": payload["metrics"]})
        print(f"{run.name}: junction trained in {took:.0f} s, validation {payload['metrics']['val']}", flush=True)
        variants = {"decoded chain": base}
        for m in args.margins:
            check = JunctionCheck.from_weights(dataclasses.replace(jcfg, margin=m), schema, payload["state_dict"])
            variants[f"junction margin {m:g}"] = base.with_junction(check)
        for name, predictor in variants.items():
            if args.refit_score_maps:
                maps = fit_score_maps(predictor, dm.val_records, dm.studies)
                predictor = predictor.with_card(predictor.card.overridden(score_calibration=maps or {}))
            out = predict_studies(studies, predictor, workers=2)
            row = rows.setdefault(name, {"gt": [], "pred": []})
            row["pred"] += [p.record for p in out.predictions]
            row["gt"] += fill_spacing(gt, pred_records=[p.record for p in out.predictions], studies=index)
    result: dict[str, Any] = {
        "cv": str(args.cv),
        "junction": dataclasses.asdict(jcfg),
        "flip_tta": args.flip_tta,
        "grade_stage": stage_set if args.grade_stage is not None else None,
        "refit_score_maps": args.refit_score_maps,
        "folds": trained,
        "rows": {},
    }
    print(
        f"{'variant':24s} {'within 8 mm':>11s} {'median':>7s} {'shifted':>7s} {'order':>5s} {'macroF1':>7s} {'mAP':>6s}"
    )
    for name, row in rows.items():
        f = figures(row["gt"], row["pred"], schema)
        result["rows"][name] = f
        print(
            f"{name:24s} {f['within_8mm']:11.4f} {f['median_mm']:7.2f} {f['level_shifts']:7d} "
            f"{f['order_violations']:5d} {f['macro_f1']:7.4f} {f['mAP']:6.4f}"
        )
    out = args.out or args.cv / "bench_junction.json"
    atomic_write_text(out, json.dumps(result, indent=1, default=str))
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
