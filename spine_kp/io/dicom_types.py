"""Value types and errors of the DICOM ingest (scan -> choose series -> decode one slice).

Geometry is the DICOM patient frame (LPS, mm). ``InstanceInfo.position`` is ImagePositionPatient projected on the
series' slice normal (row cosines x column cosines), the only order in which slices are sorted.
"""

from __future__ import annotations

from dataclasses import dataclass

from spine_kp.errors import UserError


class IngestError(UserError, ValueError):
    """A study or file cannot be used; the message names it and says what is wrong."""


class NoSagittalSeries(IngestError):
    """A study has no sagittal series that may serve as the T2 sagittal."""


class UnusableImage(IngestError):
    """An image decodes, but its pixels or geometry cannot be used (spacing, size, rescale or values)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file the scan left out and why (``"category: detail"``)."""

    path: str
    reason: str

    @property
    def category(self) -> str:
        """The reason without its detail, for counting ("not DICOM", "truncated", ...)."""
        return self.reason.split(":", 1)[0]


@dataclass(frozen=True)
class InstanceInfo:
    """One image file of a series. ``position``: ImagePositionPatient projected on the slice normal, mm."""

    path: str
    sop_instance_uid: str
    instance_number: int | None
    position: float


@dataclass(frozen=True)
class SeriesInfo:
    """One series of a study, classified, with its images sorted along the slice normal.

    Attributes:
        plane: "sagittal" | "coronal" | "axial" | "oblique" | "unknown" (from ImageOrientationPatient).
        weighting: "T2" | "T2FS" (fat-suppressed T2) | "T1" | "unknown".
        weighting_source: what decided the weighting, e.g. "description 'T2_TSE_SAG'" or "TE 100 ms / TR 3000 ms".
        instances: images of the stack sorted by position (ascending along the normal).
        scouts: images whose orientation or size disagree with the majority (or flagged LOCALIZER).
        spacing: PixelSpacing (row_mm, col_mm); rows, cols: image size of the stack.
        orientation: ImageOrientationPatient of the stack.
    """

    study_uid: str
    series_uid: str
    description: str
    plane: str
    weighting: str
    instances: tuple[InstanceInfo, ...]
    scouts: tuple[InstanceInfo, ...]
    spacing: tuple[float, float]
    rows: int
    cols: int
    echo_time: float | None
    repetition_time: float | None
    transfer_syntax: str
    weighting_source: str = ""
    series_number: int | None = None
    inversion_time: float | None = None
    orientation: tuple[float, ...] = ()

    @property
    def num_slices(self) -> int:
        return len(self.instances)

    @property
    def label(self) -> str:
        """Short human label, e.g. "T2 sagittal 'T2_TSE_SAG'"."""
        text = f"{self.weighting} {self.plane}"
        return f"{text} '{self.description}'" if self.description else f"{text} (no description)"


@dataclass(frozen=True)
class StudyIndex:
    """All usable series of one study. ``folder``: common parent folder of its files."""

    study_uid: str
    series: tuple[SeriesInfo, ...]
    folder: str


@dataclass(frozen=True)
class ScanResult:
    """Studies found under a root (sorted by folder, then UID) and the files left out."""

    studies: dict[str, StudyIndex]
    skipped: tuple[SkippedFile, ...]
