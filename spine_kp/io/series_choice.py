"""Which series of a study to read: the sagittal T2 series, by rules that make the choice deterministic.

Only sagittal series qualify. Plain T2 first, then fat-suppressed T2 (STIR/TIRM/SPAIR/FS, a last resort), then
sagittal series whose weighting could not be told; T1 never. Among equals: more slices, then lower SeriesNumber, then
SeriesInstanceUID. Headers only (the scan's :class:`~spine_kp.io.dicom_types.StudyIndex`): nothing is decoded.
"""

from __future__ import annotations

from spine_kp.io.dicom_types import NoSagittalSeries, SeriesInfo, StudyIndex

# rank of a sagittal series by weighting (lower is better); a weighting not listed (T1) is never chosen
_PREFERENCE = {"T2": 0, "T2FS": 1, "unknown": 2}
_WHY = {
    "T2": "",
    "T2FS": " (last resort: no plain T2 sagittal)",
    "unknown": " (last resort: no T2 sagittal recognised; weighting unknown)",
}


def describe_study(study: StudyIndex) -> str:
    """How a message names a study: its UID and folder."""
    return f"study {study.study_uid} ({study.folder})"


def choose_series(study: StudyIndex) -> tuple[SeriesInfo, str]:
    """Pick the series to read the middle slice from, with a human-readable reason.

    Args:
        study: one study of a :class:`ScanResult`.

    Returns:
        (series, reason), e.g. "sagittal T2 by description 'T2_TSE_SAG' (15 slices); skipped: T1 sagittal
        'T1_TSE_SAG', T2 axial 'T2_TRA'".

    Raises:
        NoSagittalSeries: no sagittal series other than T1; the message lists what the study holds.
    """
    candidates = [s for s in study.series if s.plane == "sagittal" and s.instances and s.weighting in _PREFERENCE]
    if not candidates:
        found = ", ".join(f"{s.label} ({s.num_slices} slices)" for s in study.series) or "no image series"
        raise NoSagittalSeries(f"{describe_study(study)}: no sagittal T2 series (T1 is never used); found: {found}")

    def rank(s: SeriesInfo) -> tuple[int, int, int, str]:
        number = s.series_number if s.series_number is not None else 1 << 30
        return (_PREFERENCE[s.weighting], -s.num_slices, number, s.series_uid)

    best = min(candidates, key=rank)
    label = "fat-suppressed T2" if best.weighting == "T2FS" else best.weighting
    reason = f"sagittal {label} by {best.weighting_source} ({best.num_slices} slices){_WHY[best.weighting]}"
    if best.scouts:
        reason += f"; {len(best.scouts)} scout(s) left out of the series"
    others = [s.label for s in study.series if s is not best]
    if others:
        reason += "; skipped: " + ", ".join(others)
    return best, reason


__all__ = ["choose_series", "describe_study"]
