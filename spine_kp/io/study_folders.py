"""One study, one folder: files that carry a StudyInstanceUID inside another study's folder are left out.

The scan groups images by StudyInstanceUID wherever they lie under the data root, so a series copied into study
A's folder with study B's UID (a mislabelled export, a hostile sender) would join B and could change B's prediction
without a word. The rule: a study's folder is the common folder of its files; when the folder of study A lies
strictly inside the folder of study B, the files of B that lie in A's folder are foreign to B, and so are B's files
elsewhere in the branch of B's folder that holds A's folder (a series of B put in ``A/intruder/`` beside A's own
``A/DICOM/...``), unless that branch holds most of B's files (then it is B's own). They are skipped,
counted as ``"foreign study"`` with the folder and both UIDs, and one warning per folder and UID is logged; B keeps
its files outside A's folder and A is unchanged. Studies that merely share a folder (a flat export of several
studies, or studies whose series folders sit side by side) are left as they are: neither folder lies strictly
inside the other.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence

from spine_kp.io.dicom_types import SkippedFile
from spine_kp.io.header import ImageHeader

log = logging.getLogger(__name__)


def study_folder(paths: Sequence[str]) -> str:
    """The common folder of a study's files."""
    return os.path.commonpath(sorted({os.path.dirname(p) for p in paths}))


def _territory(path: str, folder: str) -> str:
    """The child of ``folder`` that ``path`` lies in (``folder`` itself for a path directly in it)."""
    rel = os.path.relpath(path, folder)
    return folder if rel == "." else os.path.join(folder, rel.split(os.sep)[0])


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def separate_foreign(
    groups: Mapping[str, Mapping[str, list[ImageHeader]]],
) -> tuple[dict[str, dict[str, list[ImageHeader]]], list[SkippedFile], list[str]]:
    """Leave out of every study the files that lie inside another study's folder (see the module docstring).

    Args:
        groups: StudyInstanceUID -> SeriesInstanceUID -> headers, as the scan grouped them.

    Returns:
        (the groups without the foreign files, the foreign files as skipped, one warning line per folder and UID).
    """
    folders = {uid: study_folder([h.path for hs in series.values() for h in hs]) for uid, series in groups.items()}
    foreign: dict[str, str] = {}  # path -> folder of the study it lies in
    for uid, folder in folders.items():
        nested = [f for other, f in folders.items() if other != uid and f != folder and _inside(f, folder)]
        if not nested:
            continue
        paths = [h.path for hs in groups[uid].values() for h in hs]
        main = Counter(_territory(os.path.dirname(p), folder) for p in paths).most_common(1)[0][0]
        for p in paths:
            where = os.path.dirname(p)
            home = next((f for f in nested if _inside(where, f)), None)
            if home is None:  # beside the other study's folder, in the branch that holds it (not B's own branch)
                home = next((f for f in nested if _territory(f, folder) == _territory(where, folder) != main), None)
            if home is not None:
                foreign[p] = home
    if not foreign:
        return {uid: dict(series) for uid, series in groups.items()}, [], []
    kept: dict[str, dict[str, list[ImageHeader]]] = {}
    left_out: dict[tuple[str, str], list[str]] = {}  # (uid, folder it lies in) -> paths
    for uid, series in groups.items():
        for series_uid, headers in series.items():
            keep = [h for h in headers if h.path not in foreign]
            for h in headers:
                if h.path in foreign:
                    left_out.setdefault((uid, foreign[h.path]), []).append(h.path)
            if keep:
                kept.setdefault(uid, {})[series_uid] = keep
    skipped: list[SkippedFile] = []
    warnings: list[str] = []
    for (uid, folder), paths in left_out.items():
        owners = ", ".join(sorted(o for o, f in folders.items() if f == folder)) or "?"
        rest = study_folder([h.path for hs in kept.get(uid, {}).values() for h in hs])
        reason = (
            f"foreign study: StudyInstanceUID {uid} (its study is in {rest}) inside the folder {folder} of study "
            f"{owners}; left out of both"
        )
        skipped.extend(SkippedFile(p, reason) for p in paths)
        warnings.append(
            f"warning: {len(paths)} file(s) in {folder} (study {owners}) carry StudyInstanceUID {uid}, whose study "
            f"is in {rest}: left out of both studies (a study is one StudyInstanceUID in its own folder)"
        )
    for line in warnings:
        log.warning(line)
    return kept, skipped, warnings
