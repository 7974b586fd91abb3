"""Data types of in-memory phantom studies, and the UID / tag helpers every series shares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydicom.uid import generate_uid

from spine_kp.synth.anatomy import Anatomy
from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta
from spine_kp.synth.phantom import Pose
from spine_kp.synth.plan import SeriesPlan, StudyPlan
from spine_kp.types import StudyRecord


@dataclass(frozen=True)
class SynthOptions:
    """Knobs of the phantom data set.

    Attributes:
        size: rows of the sagittal images (256..512 typical; smaller for tests); None draws 384/448/512.
        axial: add the T2 axial blocks.
        tricky: add the tricky cases (see ``plan.TRICKY_KINDS``).
        empty_grade_rate: share of annotated points written with an empty grade ("ignore" in evaluation).
        randomize: domain randomisation for pretraining (see ``plan.randomize_plan``): fields of view from
            tight to the whole lower spine, fat-suppressed and water-image T2 contrasts, clean to noisy images,
            the spine anywhere in the image.
    """

    size: int | None = None
    axial: bool = True
    tricky: bool = True
    empty_grade_rate: float = 0.0
    randomize: bool = False


@dataclass(eq=False)
class SynthSeries:
    """One stack of a series as it will be written.

    Attributes:
        role: "t2_sag", "t1_sag", "stir_sag", "t2_ax" (one per axial block) or "scout".
        pixels: (N, H, W) float32 real-world values exactly as stored (rescale applied), in position order.
        geometry: orientation, (N, 3) positions (ascending along the normal), spacing, thickness.
        meta: identity and acquisition tags; blocks of one series share it.
        sop_uids: SOPInstanceUID per slice; instance_numbers: InstanceNumber per slice.
        transfer_syntax: name accepted by ``dicom_write.write_series``.
        labels: (N, H, W) int16 structure labels (index into ``SynthStudy.label_names``), sagittal only.
    """

    role: str
    pixels: np.ndarray
    geometry: SeriesGeometry
    meta: SeriesMeta
    sop_uids: tuple[str, ...]
    instance_numbers: tuple[int, ...]
    transfer_syntax: str = "explicit"
    labels: np.ndarray | None = None


@dataclass(eq=False)
class SynthStudy:
    """A phantom study in memory, with its ground truth."""

    index: int
    seed: int
    study_uid: str
    folder: str
    series: tuple[SynthSeries, ...]
    record: StudyRecord
    grades: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    annotated_index: int
    plan: StudyPlan
    anatomy: Anatomy
    pose: Pose

    def get(self, role: str) -> SynthSeries:
        """First stack with this role."""
        for s in self.series:
            if s.role == role:
                return s
        raise KeyError(f"study {self.index} has no {role!r} series; it has {[s.role for s in self.series]}")

    def label_id(self, name: str) -> int:
        """Label value of structure ``name`` in ``SynthSeries.labels``."""
        return self.label_names.index(name)


def synth_uid(seed: int, index: int, *parts: object) -> str:
    """Deterministic DICOM UID from the data-set seed, the study index and a label of the object."""
    return generate_uid(entropy_srcs=[f"spine_kp-synth:{seed}:{index}", *[str(p) for p in parts]])


def series_meta(plan: StudyPlan, sp: SeriesPlan, study_uid: str, series_uid: str, index: int) -> SeriesMeta:
    """Tags of one series from its protocol."""
    seq = sp.sequence
    return SeriesMeta(
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=sp.series_number,
        series_description=sp.description,
        protocol_name=sp.protocol,
        echo_time=round(seq.te, 2),
        repetition_time=round(seq.tr, 1),
        inversion_time=None if seq.ti is None else round(seq.ti, 1),
        patient_id=f"ANON{index:05d}",
        study_date=plan.study_date,
        bits_stored=sp.bits,
        rescale_slope=sp.slope,
        rescale_intercept=sp.intercept,
    )
