"""Hand-made DICOM studies for the ingest tests, written with spine_kp.synth.dicom_write.

A plain module (not conftest.py) so test files can import it by a name no other test folder uses.

Every slice of a series is filled with one known value, ``series_value + 10 * rank`` where rank is the slice's
order along the slice normal, so a test can tell from the decoded pixels exactly which file was read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, write_series

SAG = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # normal -x
COR = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # normal +y
AX = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # normal +z


@dataclass
class WrittenSeries:
    """What a test needs to know about a series it wrote."""

    series_uid: str
    uids_by_rank: list[str]  # SOPInstanceUID of each slice, in order along the slice normal
    paths_by_rank: list[Path]
    value: float  # slice at rank r holds value + 10 * r

    def middle_uid(self) -> str:
        return self.uids_by_rank[(len(self.uids_by_rank) - 1) // 2]


@dataclass
class StudyBuilder:
    """Writes series of one study under ``root`` (each series in its own sub-folder unless told otherwise)."""

    root: Path
    study_uid: str = field(default_factory=generate_uid)
    _count: int = 0

    def add(
        self,
        description: str | None = "T2_TSE_SAG",
        *,
        orientation: Sequence[float] = SAG,
        n: int = 5,
        size: tuple[int, int] = (24, 20),
        protocol: str | None = None,
        te: float | None = 100.0,
        tr: float | None = 3000.0,
        ti: float | None = None,
        transfer_syntax: str = "explicit",
        reverse_instance_numbers: bool = False,
        shuffle_files: bool = True,
        folder: str | None = None,
        spacing: tuple[float, float] = (0.5, 0.6),
    ) -> WrittenSeries:
        self._count += 1
        number = self._count
        normal = np.cross(orientation[:3], orientation[3:])
        ranks = np.arange(n)
        if shuffle_files:  # file order (and default names) unrelated to position
            ranks = np.random.default_rng(number).permutation(n)
        origin = np.array([3.0, -40.0, 60.0])
        positions = origin + (ranks[:, None] * 4.0 - 2.0 * n) * normal[None, :]  # (N, 3): along the normal
        value = 1000.0 * number
        pixels = np.broadcast_to((value + 10.0 * ranks)[:, None, None], (n, *size)).astype(float)
        instance_numbers = [int(n - r) if reverse_instance_numbers else int(r + 1) for r in ranks]
        meta = SeriesMeta(
            study_uid=self.study_uid, series_uid=generate_uid(), series_number=number,
            series_description=description, protocol_name=protocol, echo_time=te, repetition_time=tr,
            inversion_time=ti,
        )  # fmt: skip
        geometry = SeriesGeometry(tuple(orientation), positions, spacing, 4.0)
        out_dir = self.root / (folder if folder is not None else f"series{number}")
        names = [f"IM{number}_{i}" for i in range(n)]  # no extension: real archives often have none
        written = write_series(out_dir, pixels, geometry, meta, transfer_syntax=transfer_syntax,
                               instance_numbers=instance_numbers, file_names=names)  # fmt: skip
        by_rank = sorted(zip(ranks, written), key=lambda t: t[0])
        return WrittenSeries(meta.series_uid, [u for _, (_, u) in by_rank], [p for _, (p, _) in by_rank], value)
