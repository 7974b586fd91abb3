"""Scan a data root for DICOM studies, reading headers only, and index them by study and series.

Any folder depth and any file names are accepted. Files that are not usable MR images are recorded as
:class:`~spine_kp.io.dicom_types.SkippedFile` with a reason; nothing here raises on a bad file. Slices are sorted
by ImagePositionPatient projected on the slice normal (patient frame, mm), never by InstanceNumber or z alone.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from spine_kp.io.classify import classify_weighting, find_scouts, plane_of, slice_normal
from spine_kp.io.dicom_types import (
    IngestError,
    InstanceInfo,
    ScanResult,
    SeriesInfo,
    SkippedFile,
    StudyIndex,
)
from spine_kp.io.header import ImageHeader, read_header
from spine_kp.io.study_folders import separate_foreign

T = TypeVar("T")


def list_files(root: str | Path) -> list[str]:
    """Every regular file under ``root`` (any depth, symlinked folders not followed), in a stable order."""
    out: list[str] = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        out.extend(os.path.join(folder, name) for name in sorted(files))
    return out


def symlinked_folders(root: str | Path) -> list[str]:
    """Links to folders under ``root``, which the scan does not follow (a link may loop, or lead out of the root)."""
    out: list[str] = []
    for folder, dirs, _ in os.walk(root):
        out.extend(os.path.join(folder, d) for d in sorted(dirs) if os.path.islink(os.path.join(folder, d)))
    return out


def no_study_message(root: str | Path, skipped_reasons: Sequence[str]) -> str:
    """The one line for a data root where the scan found no study: what it skipped, by kind, and the folder links.

    Args:
        root: the data root as the user gave it.
        skipped_reasons: the reasons of the skipped files (``SkippedFile.reason``, ``"not DICOM: ..."``).
    """
    counts = Counter(r.split(":", 1)[0] for r in skipped_reasons)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    detail = f" ({len(skipped_reasons)} file(s) skipped: {kinds})" if skipped_reasons else ""
    links = symlinked_folders(root)
    if links:
        detail += (
            f"; {len(links)} symlinked folder(s) skipped, e.g. {links[0]}: links to folders are not followed, "
            "so give the folder a link points to as the data root (or copy the studies in)"
        )
    return f"{root}: no DICOM study found{detail}"


def _most_common(values: Iterable[T], default: T) -> T:
    """Most frequent value that is not empty/None (first seen wins ties), else ``default``."""
    counts = Counter(v for v in values if v not in (None, ""))
    return counts.most_common(1)[0][0] if counts else default


def build_series(headers: Sequence[ImageHeader]) -> SeriesInfo:
    """Classify one series from the headers of its images (all of one StudyInstanceUID + SeriesInstanceUID).

    Scouts (see :func:`~spine_kp.io.classify.find_scouts`) are set apart; the remaining images are sorted by
    their position along the normal of the largest group, ties broken by InstanceNumber then SOPInstanceUID.
    """
    scout_mask, reference = find_scouts([h.orientation for h in headers], [(h.rows, h.cols) for h in headers],
                                        [h.localizer for h in headers])  # fmt: skip
    stack = [h for h, s in zip(headers, scout_mask) if not s]
    ref = headers[reference]
    normal = slice_normal(ref.orientation)

    projections = (np.asarray([h.position for h in headers]) @ normal).tolist()  # (N,) mm along the normal

    def info(i: int) -> InstanceInfo:
        h = headers[i]
        return InstanceInfo(h.path, h.sop_uid, h.instance_number, projections[i])

    def key(i: InstanceInfo) -> tuple[float, int, str]:
        return (round(i.position, 3), i.instance_number if i.instance_number is not None else 0, i.sop_instance_uid)

    description = _most_common((h.description for h in stack), "")
    protocol = _most_common((h.protocol_name for h in stack), "")
    echo = _most_common((h.echo_time for h in stack), None)
    repetition = _most_common((h.repetition_time for h in stack), None)
    inversion = _most_common((h.inversion_time for h in stack), None)
    weighting, source = classify_weighting(description or None, protocol or None, echo, repetition, inversion)
    return SeriesInfo(
        study_uid=ref.study_uid,
        series_uid=ref.series_uid,
        description=description or protocol,
        plane=plane_of(ref.orientation),
        weighting=weighting,
        instances=tuple(sorted((info(i) for i, s in enumerate(scout_mask) if not s), key=key)),
        scouts=tuple(sorted((info(i) for i, s in enumerate(scout_mask) if s), key=key)),
        spacing=(ref.spacing[0], ref.spacing[1]),
        rows=ref.rows,
        cols=ref.cols,
        echo_time=echo,
        repetition_time=repetition,
        transfer_syntax=_most_common((h.transfer_syntax for h in stack), ""),
        weighting_source=source,
        series_number=_most_common((h.series_number for h in stack), None),
        inversion_time=inversion,
        orientation=tuple(ref.orientation),
    )


def _series_sort_key(s: SeriesInfo) -> tuple[int, str]:
    return (s.series_number if s.series_number is not None else 1 << 30, s.series_uid)


def build_index(results: Iterable[ImageHeader | SkippedFile]) -> ScanResult:
    """Group per-file results by study and series into a :class:`ScanResult`.

    A file repeating a SOPInstanceUID already seen in its series (a copy) is skipped with the first file named.
    Files of a StudyInstanceUID that lie inside another study's folder are skipped as "foreign study"
    (:mod:`spine_kp.io.study_folders`).
    """
    skipped: list[SkippedFile] = []
    groups: dict[str, dict[str, list[ImageHeader]]] = defaultdict(lambda: defaultdict(list))
    seen: dict[tuple[str, str, str], str] = {}
    for r in results:
        if isinstance(r, SkippedFile):
            skipped.append(r)
            continue
        first = seen.setdefault((r.study_uid, r.series_uid, r.sop_uid), r.path)
        if first != r.path:
            skipped.append(SkippedFile(r.path, f"duplicate: same SOPInstanceUID as {first}"))
            continue
        groups[r.study_uid][r.series_uid].append(r)
    kept, foreign, _ = separate_foreign(groups)  # a StudyInstanceUID inside another study's folder: left out
    skipped.extend(foreign)
    studies: list[StudyIndex] = []
    for study_uid, by_series in kept.items():
        series = sorted((build_series(h) for h in by_series.values()), key=_series_sort_key)
        folders = {os.path.dirname(h.path) for hs in by_series.values() for h in hs}
        studies.append(StudyIndex(study_uid, tuple(series), os.path.commonpath(sorted(folders))))
    studies.sort(key=lambda s: (s.folder, s.study_uid))
    return ScanResult({s.study_uid: s for s in studies}, tuple(skipped))


def scan(root: str | Path, workers: int = 1) -> ScanResult:
    """Index every DICOM study under ``root`` by reading file headers only.

    Args:
        root: data root or one study folder (any depth, any file names).
        workers: processes reading headers in parallel (1 = in this process).

    Returns:
        Studies keyed by StudyInstanceUID (ordered by folder) and the skipped files with their reasons.

    Raises:
        IngestError: ``root`` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise IngestError(f"{root}: not a folder")
    paths = list_files(root)
    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(read_header, paths, chunksize=max(1, len(paths) // (workers * 8))))
    else:
        results = [read_header(p) for p in paths]
    return build_index(results)
