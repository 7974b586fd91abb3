"""Classify an MR series from its headers: imaging plane, contrast weighting, scouts mixed into it.

Everything here is pure (numbers and strings in, labels out), so the rules are cheap to test one by one.
Geometry is the DICOM patient frame (LPS, mm): ImageOrientationPatient = (row cosines, column cosines).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

PLANES = ("sagittal", "coronal", "axial", "oblique", "unknown")
WEIGHTINGS = ("T2", "T2FS", "T1", "unknown")

# A slice normal whose largest component is below this (over ~41 degrees from every axis) is called oblique.
_DOMINANT_MIN = 0.75

# TE/TR fallback (ms). T2: long TE and long TR; T1: short TE and short TR; STIR: short inversion time.
T2_MIN_TE, T2_MIN_TR = 60.0, 1500.0
T1_MAX_TE, T1_MAX_TR = 30.0, 1000.0
STIR_MAX_TI = 250.0

# Descriptions are upper-cased; "T2" may be glued to other words (SAGT2, FST2, T2W, T2加权), so only digits around
# it are excluded (T12 is a vertebra, not a weighting).
_T2 = re.compile(r"(?<!\d)T2(?!\d)(?!\s*\*)")
_T1 = re.compile(r"(?<!\d)T1(?!\d)")
# Fat suppression. "FS" must stand alone or be glued to T2 (FST2, T2FS), because FSE / FRFSE mean fast spin echo.
# Also German (fettgesättigt, Fettunterdrückung) and Chinese (压脂, 抑脂, 脂肪抑制).
_FAT_SUPPRESSED = re.compile(
    r"STIR|TIRM|SPAIR|SPIR\b|FAT[\s_\-]*(SAT|SUP)|(?<![A-Z])FS(?![A-Z])|T2[\s_\-]*FS(?!E)|FS[\s_\-]*T2"
    r"|DIXON[\s_\-]*W|FETT|压脂|抑脂|脂肪抑制"
)
# Images that are never the diagnostic sagittal T2 even if "T2" appears in the name.
_NOT_A_WEIGHTING = re.compile(r"LOCALI[SZ]ER|SCOUT|SURVEY|(?<![A-Z])LOC(?![A-Z])|DWI|DIFFUSION|ADC|MYELO")


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
    """(3,) unit slice normal = row direction x column direction (zeros for a degenerate orientation)."""
    o = np.asarray(orientation, dtype=float)
    n = np.cross(o[:3], o[3:])
    norm = float(np.linalg.norm(n))
    return n / norm if norm > 1e-6 else np.zeros(3)


def plane_of(orientation: Sequence[float]) -> str:
    """Imaging plane from ImageOrientationPatient: the patient axis the slice normal is closest to.

    x (left-right) -> "sagittal", y (anterior-posterior) -> "coronal", z (head-feet) -> "axial"; "oblique" when
    no component dominates, "unknown" for a degenerate orientation.
    """
    n = np.abs(slice_normal(orientation))
    if not n.any():
        return "unknown"
    axis = int(np.argmax(n))
    if n[axis] < _DOMINANT_MIN:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def weighting_from_text(text: str | None) -> str:
    """Weighting named by a SeriesDescription / ProtocolName: "T2", "T2FS", "T1" or "unknown".

    STIR / TIRM / SPAIR / FS / FAT SAT / DIXON water mean fat-suppressed T2 unless T1 is named (a T1 FS is a T1).
    A text naming both T1 and T2, or neither, is "unknown" (the caller then falls back to TE/TR).
    """
    if not text:
        return "unknown"
    t = text.upper()
    if _NOT_A_WEIGHTING.search(t):
        return "unknown"
    has_t1, has_t2 = bool(_T1.search(t)), bool(_T2.search(t))
    if has_t1 and has_t2:
        return "unknown"
    if has_t1:
        return "T1"
    if _FAT_SUPPRESSED.search(t):
        return "T2FS"
    return "T2" if has_t2 else "unknown"


def weighting_from_timing(
    echo_time: float | None, repetition_time: float | None, inversion_time: float | None = None
) -> str:
    """Weighting from EchoTime / RepetitionTime (ms): the fallback when the names say nothing.

    A short inversion time (<= 250 ms) with long TR is STIR, i.e. fat-suppressed T2, whatever the TE; long TE
    (> ~60 ms) with long TR is T2; short TE with short TR is T1; anything else (proton density, missing values)
    is "unknown".
    """
    if echo_time is None or repetition_time is None:
        return "unknown"
    if inversion_time is not None and 0 < inversion_time <= STIR_MAX_TI and repetition_time >= T2_MIN_TR:
        return "T2FS"  # STIR: a short inversion nulls fat; its TE is often moderate (30-70 ms)
    if echo_time >= T2_MIN_TE and repetition_time >= T2_MIN_TR:
        return "T2"
    if echo_time <= T1_MAX_TE and repetition_time <= T1_MAX_TR:
        return "T1"
    return "unknown"


def classify_weighting(
    description: str | None,
    protocol_name: str | None,
    echo_time: float | None,
    repetition_time: float | None,
    inversion_time: float | None = None,
) -> tuple[str, str]:
    """Weighting of a series and where it came from.

    Returns:
        (weighting, source), e.g. ("T2", "description 'T2_TSE_SAG'") or ("T1", "TE 12 ms / TR 500 ms").
    """
    for label, text in (("description", description), ("protocol name", protocol_name)):
        w = weighting_from_text(text)
        if w != "unknown":
            return w, f"{label} '{text}'"
    w = weighting_from_timing(echo_time, repetition_time, inversion_time)
    te = "?" if echo_time is None else f"{echo_time:g}"
    tr = "?" if repetition_time is None else f"{repetition_time:g}"
    ti = "" if inversion_time is None else f" / TI {inversion_time:g} ms"
    return w, f"TE {te} ms / TR {tr} ms{ti}"


def find_scouts(
    orientations: Sequence[Sequence[float]],
    sizes: Sequence[tuple[int, int]],
    localizer: Sequence[bool] | None = None,
    tol: float = 0.05,
) -> tuple[np.ndarray, int]:
    """Flag the images of one series that are not part of its stack, and pick the stack's reference image.

    Images are grouped by (rows, cols) and orientation (direction cosines within ``tol``). The largest group is
    the stack; an image is a scout when its group has at most half as many images (a localizer or a stray
    image of another size or plane), or when its ImageType says LOCALIZER. Groups of comparable size are all
    kept: a multi-block axial series (one angled block per disc) has no majority and no scouts.

    Args:
        orientations: (N, 6) ImageOrientationPatient per image.
        sizes: (rows, cols) per image.
        localizer: per image, whether ImageType names it a localizer.
        tol: direction cosine tolerance (0.05 is about 3 degrees).

    Returns:
        ((N,) bool, True for scouts; index of the first image of the largest group, whose orientation defines
        the series plane and slice normal). Never flags every image.
    """
    o = np.asarray(orientations, dtype=float).reshape(-1, 6)
    loc = np.zeros(len(o), bool) if localizer is None else np.asarray(localizer, bool)
    candidates = np.flatnonzero(~loc) if (~loc).any() else np.arange(len(o))
    groups: list[list[int]] = []  # greedy clustering in file order: deterministic, no rounding boundaries
    for i in candidates.tolist():
        for g in groups:
            if tuple(sizes[g[0]]) == tuple(sizes[i]) and np.abs(o[g[0]] - o[i]).max() <= tol:
                g.append(i)
                break
        else:
            groups.append([i])
    largest = max(len(g) for g in groups)
    scouts = np.ones(len(o), bool)
    for g in groups:
        if 2 * len(g) > largest:
            scouts[g] = False
    reference = next(g for g in groups if len(g) == largest)[0]
    return scouts, reference
