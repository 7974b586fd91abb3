"""Batch prediction over a data root: scan, load middle slices in parallel, predict in batches, collect failures.

A study that cannot be read (no sagittal series, undecodable pixels, ...) is recorded with its reason and the
others go on. The input tree is only read.
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from spine_kp.errors import UserError
from spine_kp.inference.slice_predictor import SlicePrediction, SlicePredictor
from spine_kp.io.dicom import StudyIndex, load_middle_slice, scan
from spine_kp.types import Slice


@dataclass(frozen=True)
class PredictOptions:
    """Options of a batch prediction run (CLI flags)."""

    batch_size: int = 4
    workers: int = 2
    flip_tta: bool | None = None  # None: the model card's decoding.flip_tta
    fuse_neighbours: bool = False
    top_k_grades: int | None = None  # None: the model card's decoding.top_k_grades
    progress: bool = True


@dataclass(frozen=True)
class StudyFailure:
    """A study (or file) that produced no prediction, and why."""

    study: str
    folder: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"study": self.study, "folder": self.folder, "reason": self.reason}


@dataclass
class PredictRun:
    """Result of :func:`predict_folder`, with the time spent per stage (seconds)."""

    predictions: list[SlicePrediction] = field(default_factory=list)
    failures: list[StudyFailure] = field(default_factory=list)
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    timings: dict[str, float] = field(
        default_factory=lambda: {"scan": 0.0, "load": 0.0, "preprocess": 0.0, "model": 0.0, "decode": 0.0}
    )

    @property
    def records(self) -> list:
        return [p.record for p in self.predictions]


def load_study(study: StudyIndex, neighbours: int) -> Slice | StudyFailure:
    """The middle slice of a study's chosen series, or the reason it cannot be predicted (never raises)."""
    try:
        return load_middle_slice(study, neighbours=neighbours)
    except Exception as exc:  # one bad study must not stop the batch; the reason is reported
        return StudyFailure(study.study_uid, study.folder, f"{type(exc).__name__}: {exc}")


def _timed_load(study: StudyIndex, neighbours: int) -> tuple[Slice | StudyFailure, float]:
    t0 = time.perf_counter()
    item = load_study(study, neighbours)
    return item, time.perf_counter() - t0


def predict_studies(
    studies: list[StudyIndex], predictor: SlicePredictor, options: PredictOptions, run: PredictRun | None = None
) -> PredictRun:
    """Predict already-scanned studies (the middle frame of each chosen T2 sagittal series)."""
    run = run or PredictRun()
    want = predictor.slices_needed(options.fuse_neighbours)
    bar = tqdm(total=len(studies), unit="study", disable=not options.progress, file=sys.stderr, desc="predict")
    with ThreadPoolExecutor(max_workers=max(1, options.workers)) as pool:
        # Loading runs ahead in the pool while the model works; "load" sums the loader threads' time.
        loaded = pool.map(lambda s: _timed_load(s, want), studies)
        slices: list[Slice] = []
        for item, seconds in loaded:
            run.timings["load"] += seconds
            if isinstance(item, StudyFailure):
                run.failures.append(item)
                bar.update(1)
            else:
                slices.append(item)
            if len(slices) == options.batch_size:
                _run_batch(slices, predictor, options, run, bar)
                slices = []
        if slices:
            _run_batch(slices, predictor, options, run, bar)
    bar.close()
    return run


def _run_batch(
    slices: list[Slice], predictor: SlicePredictor, options: PredictOptions, run: PredictRun, bar: tqdm
) -> None:
    # Slices of different sizes are fine: every one is letterboxed to the network input size.
    try:
        preds = predictor.predict(
            slices,
            flip_tta=options.flip_tta,
            fuse_neighbours=options.fuse_neighbours,
            top_k_grades=options.top_k_grades,
            timings=run.timings,
        )
        run.predictions.extend(preds)
    except Exception as exc:  # a failing batch is retried study by study so only the culprit is lost
        if len(slices) == 1:
            s = slices[0]
            run.failures.append(StudyFailure(s.study_uid, str(Path(s.path).parent), f"{type(exc).__name__}: {exc}"))
        else:
            for s in slices:
                _run_batch([s], predictor, options, run, bar)
            return
    bar.update(len(slices))


def predict_folder(root: str | Path, predictor: SlicePredictor, options: PredictOptions | None = None) -> PredictRun:
    """Scan ``root`` and predict every study found in it.

    Returns:
        The predictions (sorted by study UID), failed studies with reasons and skipped files.

    Raises:
        UserError: ``root`` is not a folder.
    """
    options = options or PredictOptions()
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data root {root} is not a folder")
    run = PredictRun()
    t0 = time.perf_counter()
    result = scan(root, workers=max(1, options.workers))
    run.timings["scan"] = time.perf_counter() - t0
    run.skipped_files = [(s.path, s.reason) for s in result.skipped]
    studies = [result.studies[uid] for uid in sorted(result.studies)]
    predict_studies(studies, predictor, options, run)
    run.predictions.sort(key=lambda p: p.slice.study_uid)
    return run


def require_studies(run: PredictRun, root: str | Path) -> None:
    """Raise a :class:`UserError` when the scan of ``root`` found no study: naming what it skipped, by kind."""
    if not run.predictions and not run.failures:
        from spine_kp.io.scan import no_study_message

        raise UserError(no_study_message(root, [reason for _, reason in run.skipped_files]))
