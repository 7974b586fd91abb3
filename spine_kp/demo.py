"""The end-to-end pipeline on phantom studies: synth -> train -> predict held-out studies -> evaluate.

Used by ``spine-kp demo`` and by ``scripts/learning_curve.py`` (the measured learning figures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spine_kp.api import evaluate, load_predictor, predict_folder, write_predictions
from spine_kp.engine.config import ExperimentConfig
from spine_kp.engine.train import replace_data_paths, train
from spine_kp.evaluation.report import write_report
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.predict.runner import PredictRun
from spine_kp.schema import load_schema
from spine_kp.synth import make_dataset


@dataclass
class DemoResult:
    """What the demo made and measured (seconds per stage)."""

    out: Path
    checkpoint: Path
    evaluation: EvaluationResult
    run: PredictRun
    written: dict[str, Any]
    report: dict[str, Path]
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    cfg: ExperimentConfig,
    out: str | Path,
    train_studies: int = 200,
    test_studies: int = 50,
    seed: int = 0,
    workers: int = 2,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the whole pipeline; the held-out set uses ``seed + 1`` so no study is shared with training.

    Existing phantom sets in ``out`` (same sizes asked before) are reused, so a rerun only retrains.
    """
    out = Path(out)
    seconds: dict[str, float] = {}
    train_dir, test_dir = out / "train", out / "test"
    schema = load_schema(cfg.schema)  # the phantoms are drawn and annotated in the experiment's schema
    t = time.perf_counter()
    log(f"1/4 writing phantom studies to {out} ({train_studies} training, {test_studies} held-out)")
    # annotations.json is written last: without it a set is the demo's own interrupted output, rewritten whole
    if not (train_dir / "annotations.json").exists():
        make_dataset(train_dir, train_studies, seed, workers=workers, overwrite=True, schema=schema)
    if not (test_dir / "annotations.json").exists():
        make_dataset(test_dir, test_studies, seed + 1, workers=workers, overwrite=True, schema=schema)
    seconds["synth"] = time.perf_counter() - t

    t = time.perf_counter()
    log("2/4 training")
    result = train(replace_data_paths(cfg, train_dir / "studies", train_dir / "annotations.json"), out / "run")
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:
        raise RuntimeError(f"training in {out / 'run'} wrote no checkpoint")
    seconds["train"] = time.perf_counter() - t

    t = time.perf_counter()
    log("3/4 predicting the held-out studies")
    predictor = load_predictor(checkpoint, device="auto")
    run = predict_folder(test_dir / "studies", predictor, workers=workers, progress=True)
    written = write_predictions(
        run, predictor, out / "predictions.json", csv=out / "predictions.csv", overlays=out / "overlays"
    )
    seconds["predict"] = time.perf_counter() - t

    t = time.perf_counter()
    log("4/4 evaluating with the 8 mm rules")
    evaluation = evaluate(run, test_dir / "annotations.json", schema=schema)
    report = write_report(evaluation, out / "report")
    seconds["evaluate"] = time.perf_counter() - t
    return DemoResult(out, checkpoint, evaluation, run, written, report, seconds)
