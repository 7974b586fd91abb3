"""What ``evaluate --data`` checks beyond spacing: both files against the images of the scanned DICOM data root.

The rule is the training data module's (:mod:`spine_kp.io.data_checks`): a point lies outside its image beyond half a
pixel, a zIndex at or beyond the number of images of its series is out of range, and an image with points whose
instanceUid is not under the data root cannot be checked. None of them changes a score; each kind is a counted
warning (``spine-kp evaluate`` prints it; ``metrics.json`` and ``report.md`` hold the counts and the lines).

:func:`check_against_images` is pure (it takes the scanned studies); :func:`scan_data_root` is the one call of the
ingest scan (headers only, no pixels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from spine_kp.io.data_checks import DataCheck, check_records, shown
from spine_kp.io.dicom_types import StudyIndex
from spine_kp.types import StudyRecord

# (field of DataCheck, what its lines are) in the order the warnings are printed
_KINDS = (
    ("outside", "point(s) lie outside their image"),
    ("beyond", "zIndex value(s) lie beyond their series"),
    ("not_found", "image(s) with points are not under the data root; their points were not checked"),
)


@dataclass(frozen=True)
class DataChecks:
    """The ground truth and the predictions, each checked against the images of the data root."""

    annotations: DataCheck
    predictions: DataCheck

    @property
    def count(self) -> int:
        """Every finding of both files."""
        return len(self.annotations.problems) + len(self.predictions.problems)

    def to_dict(self) -> dict[str, object]:
        return {"annotations": self.annotations.to_dict(), "predictions": self.predictions.to_dict()}

    def warnings(self, annotations: str = "annotations", predictions: str = "predictions") -> list[str]:
        """One line per kind of finding and file, with its count and the first findings.

        Args:
            annotations: how to name the ground-truth file in the lines (its path).
            predictions: likewise the prediction file.
        """
        out = []
        for name, check in ((annotations, self.annotations), (predictions, self.predictions)):
            for field, what in _KINDS:
                lines = getattr(check, field)
                if lines:
                    out.append(f"{len(lines)} {what} ({name}: {shown(lines, 3)})")
        return out


def check_against_images(
    gt_records: Sequence[StudyRecord], pred_records: Sequence[StudyRecord], studies: Mapping[str, StudyIndex]
) -> DataChecks:
    """Check every image with points of both files against the scanned studies.

    Args:
        gt_records: ground truth.
        pred_records: predictions.
        studies: study UID -> StudyIndex (:func:`scan_data_root`).
    """
    return DataChecks(check_records(gt_records, studies), check_records(pred_records, studies))


def scan_data_root(root: str | Path) -> dict[str, StudyIndex]:
    """Scan ``root`` with the ingest code (headers only).

    Raises:
        IngestError: ``root`` is not a folder, or no DICOM study was found under it (a user error: one line).
    """
    from spine_kp.io.dicom import IngestError, scan  # lazy: evaluation without --data never needs the DICOM stack
    from spine_kp.io.scan import no_study_message

    result = scan(root)
    if not result.studies:
        raise IngestError(no_study_message(root, [s.reason for s in result.skipped]))
    return result.studies
