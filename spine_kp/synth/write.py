"""Write phantom studies to disk: DICOM study folders, ``annotations.json`` and an optional preview.

Layout: ``OUT/studies/<study folder>/...`` with one of several real-world folder layouts per study (flat, a
folder per series, nested ``DICOM/<date>/<series>/``, files named by SOPInstanceUID), files with or without
``.dcm``, plus the study's tricky files; ``OUT/annotations.json`` in the competition format.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from spine_kp.errors import OutputExistsError
from spine_kp.io.annotations import write_annotations
from spine_kp.io.atomic import atomic_output, atomic_write_bytes, atomic_write_text
from spine_kp.io.output_guard import OutputClashError
from spine_kp.schema import Schema, load_schema
from spine_kp.synth.dicom_non_image import write_non_image
from spine_kp.synth.dicom_write import write_series
from spine_kp.synth.study import make_study
from spine_kp.synth.study_types import SynthOptions, SynthSeries, SynthStudy
from spine_kp.types import StudyRecord

PREVIEW_STUDIES = 8


@dataclass
class SynthSummary:
    """What :func:`make_dataset` wrote.

    Attributes:
        out: output root; annotations: path of ``annotations.json``; preview: path of ``preview.png`` or None.
        n_studies, n_files: studies and files written (DICOM and stray files).
        seconds: wall time; workers: processes used.
        grades: (kind, label) -> number of annotated points carrying it.
        tricky: tricky-case kind -> number of studies having it.
    """

    out: Path
    annotations: Path
    preview: Path | None
    n_studies: int
    n_files: int
    seconds: float
    workers: int
    grades: dict[tuple[str, str], int] = field(default_factory=dict)
    tricky: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        """Human-readable multi-line report."""
        lines = [
            f"wrote {self.n_studies} studies ({self.n_files} files) to {self.out / 'studies'} "
            f"in {self.seconds:.1f} s with {self.workers} worker(s)",
            f"annotations: {self.annotations}",
        ]
        if self.preview is not None:
            lines.append(f"preview: {self.preview}")
        if self.grades:
            lines.append("grades: " + ", ".join(f"{k}/{g}={n}" for (k, g), n in sorted(self.grades.items())))
        if self.tricky:
            lines.append("tricky cases: " + ", ".join(f"{k}={n}" for k, n in sorted(self.tricky.items())))
        return "\n".join(lines)


def _series_dir(study: SynthStudy, s: SynthSeries, root: Path) -> Path:
    layout = study.plan.layout
    if layout == "series_dirs":
        return root / f"SE{s.meta.series_number:04d}"
    if layout == "nested":
        tag = hashlib.sha1(s.meta.series_uid.encode()).hexdigest()[:8].upper()
        return root / "DICOM" / study.plan.study_date / tag
    return root


def _file_names(study: SynthStudy, s: SynthSeries) -> list[str]:
    ext = study.plan.extension
    layout = study.plan.layout
    if layout == "uid_names":
        return [f"{uid}{ext}" for uid in s.sop_uids]
    if layout == "flat":
        return [f"{s.meta.series_number:03d}_{n:04d}{ext}" for n in s.instance_numbers]
    return [f"IM{n:05d}{ext}" for n in s.instance_numbers]


def write_study(study: SynthStudy, studies_root: Path) -> list[Path]:
    """Write one study under ``studies_root / study.folder``; returns every file written."""
    root = Path(studies_root) / study.folder
    written: list[Path] = []
    for s in study.series:
        out = _series_dir(study, s, root)
        pairs = write_series(
            out,
            s.pixels,
            s.geometry,
            s.meta,
            transfer_syntax=s.transfer_syntax,
            instance_numbers=s.instance_numbers,
            sop_instance_uids=s.sop_uids,
            file_names=_file_names(study, s),
        )
        written.extend(p for p, _ in pairs)
    for k, name in enumerate(study.plan.stray_names):
        where = root if k == 0 or study.plan.layout == "flat" else _series_dir(study, study.series[0], root)
        if name == ".DS_Store":
            data = b"\x00\x00\x00\x01Bud1" + hashlib.sha256(study.study_uid.encode()).digest() * 4
            written.append(atomic_write_bytes(where / name, data))
        else:
            text = f"Phantom lumbar MRI study {study.index} (spine_kp synth). Not a DICOM file.\n"
            written.append(atomic_write_text(where / name, text))
    if "sr_object" in study.plan.tricky:
        written.append(_write_sr(study, root / f"SR{study.index:05d}{study.plan.extension}"))
    return written


def _write_sr(study: SynthStudy, path: Path) -> Path:
    """A Basic Text SR object in the study, with UIDs derived from the study's (so reruns are byte-identical)."""
    import pydicom

    write_non_image(path, study.study_uid, "sr")
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[study.study_uid, "sr"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study.study_uid, "sr-series"])
    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


@dataclass
class _Result:
    """What a worker sends back for one study."""

    record: StudyRecord
    n_files: int
    tricky: tuple[str, ...]
    preview: dict[str, np.ndarray] | None


def _one(args: tuple[int, int, Path, Schema, SynthOptions, bool]) -> _Result:
    seed, index, studies_root, schema, options, want_preview = args
    study = make_study(seed, index, schema=schema, options=options)
    files = write_study(study, studies_root)
    preview = None
    if want_preview and index < PREVIEW_STUDIES:
        preview = {"t2": study.get("t2_sag").pixels[study.annotated_index]}
        if index == 0:
            for role in ("t1_sag", "stir_sag"):
                s = study.get(role)
                preview[role] = s.pixels[len(s.pixels) // 2]
    return _Result(study.record, len(files), study.plan.tricky, preview)


def _limit_threads() -> None:
    """Workers are processes: keep BLAS single-threaded so they do not oversubscribe the cores."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


def _check_replaceable(out: Path, studies_root: Path, overwrite: bool) -> None:
    """Refuse, before writing anything, to replace earlier output without ``overwrite``, or to delete through a link.

    Raises:
        OutputExistsError: ``out/studies`` is not empty or ``out/annotations.json`` exists, without ``overwrite``.
        OutputClashError: ``overwrite`` and ``out/studies`` is a symbolic link (its target is never deleted).
    """
    annotations = out / "annotations.json"
    if not overwrite:
        clashes = [f"{studies_root} is not empty"] if studies_root.is_dir() and any(studies_root.iterdir()) else []
        if annotations.exists() or annotations.is_symlink():
            clashes.append(f"{annotations} exists")
        if clashes:
            raise OutputExistsError(f"{' and '.join(clashes)}; choose another OUT or pass --overwrite")
    elif studies_root.is_symlink():  # rmtree refuses a link; deleting what it points at is not ours to do
        raise OutputClashError(
            f"{studies_root} is a symbolic link (to {os.readlink(studies_root)}); --overwrite does not delete through "
            "links: remove the link or choose another OUT"
        )


def make_dataset(
    out: Path,
    n_studies: int,
    seed: int,
    *,
    size: int | None = None,
    workers: int = 1,
    preview: bool = False,
    schema: Schema | None = None,
    overwrite: bool = False,
    **options: object,
) -> SynthSummary:
    """Write ``n_studies`` phantom studies and their annotations. Long on purpose: the overwrite checks, the worker
    pool and the annotation file (written last, so an interrupted run is recognised) keep one visible order.

    Args:
        out: output root; studies go to ``out/studies/``, annotations to ``out/annotations.json``.
        n_studies: number of studies (study i is identical whatever this number).
        seed: data-set seed.
        size: sagittal matrix rows (None: 384-512 per study).
        workers: processes; 1 runs in this process. Workers are spawned (safe after torch is imported), so a
            script calling this with workers > 1 needs the usual ``if __name__ == "__main__":`` guard.
        preview: also save ``out/preview.png`` (annotated T2 slices of the first studies, T1/STIR of the first).
        schema: landmark schema (default: packaged).
        overwrite: replace an existing non-empty ``out/studies`` and an existing ``out/annotations.json``.
        **options: further :class:`~spine_kp.synth.SynthOptions` fields (``axial``, ``tricky``,
            ``empty_grade_rate``, ``randomize``).

    Returns:
        A summary of what was written.

    Raises:
        FileExistsError: ``out/studies`` exists and is not empty, or ``out/annotations.json`` exists, and
            ``overwrite`` is False.
        ValueError: ``overwrite`` and ``out/studies`` is a symbolic link (its target is never deleted).
        ValueError: bad counts, unknown options, or a schema the phantom cannot draw.
    """
    if n_studies < 0:
        raise ValueError(f"n_studies must be >= 0, got {n_studies}")
    if size is not None and size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    known = set(SynthOptions.__dataclass_fields__) - {"size"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"make_dataset: unknown option(s) {unknown}; known: {sorted(known)}")
    opts = SynthOptions(size=size, **options)  # type: ignore[arg-type]
    schema = schema or load_schema()
    out = Path(out)
    studies_root = out / "studies"
    _check_replaceable(out, studies_root, overwrite)
    if studies_root.exists() and any(studies_root.iterdir()):
        shutil.rmtree(studies_root)
    studies_root.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    jobs = [(seed, i, studies_root, schema, opts, preview) for i in range(n_studies)]
    workers = max(1, min(int(workers), n_studies or 1))
    if workers == 1:
        results = [_one(j) for j in jobs]
    else:
        _limit_threads()
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_one, jobs, chunksize=1))
    annotations = write_annotations(out / "annotations.json", [r.record for r in results])
    preview_path = None
    if preview and results:
        from spine_kp.synth.preview import save_preview

        records = [r.record for r in results]
        preview_path = save_preview(out / "preview.png", records, [r.preview for r in results], schema)
    grades: Counter[tuple[str, str]] = Counter((p.kind, g) for r in results for p in r.record.points for g in p.grades)
    tricky: Counter[str] = Counter(k for r in results for k in r.tricky)
    return SynthSummary(
        out=out,
        annotations=annotations,
        preview=preview_path,
        n_studies=n_studies,
        n_files=sum(r.n_files for r in results),
        seconds=time.perf_counter() - start,
        workers=workers,
        grades=dict(grades),
        tricky=dict(tricky),
    )
