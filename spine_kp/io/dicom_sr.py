"""Landmarks and grades of one study as a DICOM Structured Report (TID 1500 Measurement Report), via highdicom.

Document: a Comprehensive 3D SR (the IOD highdicom's TID 1500 examples use) with one TID 1410 "Planar ROI
Measurements and Qualitative Evaluations" group per landmark, holding

* a tracking identifier (the identification, e.g. "L4-L5") and a fresh tracking UID;
* the landmark as an SCOORD ``POINT`` on the predicted image (Referenced SOP Class/Instance UID of the source
  file), with geometric purpose (DCM 111010, "Center");
* the finding site: the vertebra or disc as a standard SNOMED CT code of CID 7603 "Vertebra" / CID 7604
  "Intervertebral Disc" (T12..L5 and T12/L1..L5/S1 all have one); a landmark without one (another schema)
  gets a private code, value = its identification;
* one coded qualitative evaluation per grade (private concept "grade", private value ``<kind>-<grade>``) and
  its score as a numeric measurement in UCUM ``{ratio}`` (private concept ``<kind>-<grade>-sc``);
* the algorithm identification (TID 4019: name, version, parameters) of the model.

Grades are schema data with no standard codes, so they and the score concepts use the private coding scheme
:data:`PRIVATE_SCHEME` ("99SPINEKP", declared in the Coding Scheme Identification Sequence).

Coordinates: the project's (x, y) has its origin at the centre of the top-left pixel (:mod:`spine_kp.types`);
DICOM SCOORD image coordinates put (0.0, 0.0) at the top-left *corner* of that pixel, so a point is written as
(x + 0.5, y + 0.5). Graphic Data is 32-bit float: a coordinate reads back within about 1e-4 pixels.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from spine_kp.io.atomic import atomic_output
from spine_kp.io.names import study_file_stem
from spine_kp.schema import Schema
from spine_kp.types import Point, StudyRecord

PRIVATE_SCHEME = "99SPINEKP"
#: Pixel-centre origin (spine_kp) -> pixel-corner origin (DICOM SCOORD).
SCOORD_OFFSET = 0.5
GRADE_CONCEPT = Code("grade", PRIVATE_SCHEME, "Grade")
SCORE_UNIT = codes.UCUM.Ratio
SR_SERIES_NUMBER = 990
# Type 2 attributes highdicom copies from the evidence; real archives (and the phantoms) may lack some.
_COPIED_TYPE2 = (
    "PatientID",
    "PatientName",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class AlgorithmInfo:
    """The model that produced the landmarks (TID 4019 and the SR's device observer).

    Attributes:
        name, version: algorithm name and version (at most 64 characters each).
        parameters: free-text parameters ("key=value").
        device_uid: UID of the device observer (stable per model, so reports of one model share it).
    """

    name: str
    version: str
    parameters: tuple[str, ...] = ()
    device_uid: str = ""


def _lo(text: str) -> str:
    """A value fitting a DICOM LO element (64 characters)."""
    return text[:64]


def level_code(identification: str, kind: str = "") -> Code:
    """The finding-site code of a landmark: SNOMED CT from CID 7603/7604 when one exists, else private.

    "L3" -> (36470004, SCT, "L3 vertebra"); "L5-S1" -> (715056000, SCT, "L5/S1 disc"). An identification with
    '-' is a disc (SPEC section 2). Without a standard code: (identification, 99SPINEKP, "<identification> <kind>").
    """
    if "-" in identification:
        keyword, cid = identification.replace("-", "") + "Disc", codes.cid7604
    else:
        keyword, cid = identification + "Vertebra", codes.cid7603
    try:
        return getattr(cid, keyword)
    except AttributeError:
        return Code(identification, PRIVATE_SCHEME, _lo(f"{identification} {kind}".strip()))


def grade_code(kind: str, grade: str, schema: Schema | None = None) -> Code:
    """Private code of a grade label, e.g. ("disc-v3", 99SPINEKP, "disc v3: diffuse bulge")."""
    meaning = f"{kind} {grade}"
    if schema is not None and kind in {k.name for k in schema.kinds} and grade in schema.kind(kind).grades:
        spec = schema.kind(kind)
        meaning += f": {spec.descriptions[spec.grades.index(grade)]}"
    return Code(f"{kind}-{grade}", PRIVATE_SCHEME, _lo(meaning))


def score_code(kind: str, grade: str) -> Code:
    """Private concept of the score of one grade, e.g. ("disc-v3-sc", 99SPINEKP, "Score of disc grade v3").

    Values stay within the 16 characters of Code Value for the default schema (older readers ignore the Long Code
    Value that highdicom uses beyond that).
    """
    return Code(f"{kind}-{grade}-sc", PRIVATE_SCHEME, _lo(f"Score of {kind} grade {grade}"))


def sr_file_name(study_uid: str) -> str:
    """A file name for the SR of a study: ``<stem>.dcm``, the stem from :func:`spine_kp.io.names.study_file_stem`."""
    return f"{study_file_stem(study_uid)}.dcm"


def read_source_header(path: str | Path) -> Dataset:
    """The header of the source image (no pixel data), with missing type 2 patient/study attributes left empty."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    for keyword in _COPIED_TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _landmark_groups(points: Sequence[Point]) -> list[list[Point]]:
    """Points of one landmark at one position together (a prediction has one point per emitted grade)."""
    groups: dict[tuple[str, float, float], list[Point]] = {}
    for p in points:
        groups.setdefault((p.identification, float(p.coord[0]), float(p.coord[1])), []).append(p)
    return list(groups.values())


def _roi_group(
    points: list[Point],
    source_image: hd.sr.SourceImageForRegion,
    schema: Schema,
    algorithm_id: hd.sr.AlgorithmIdentification,
) -> hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations:
    first = points[0]
    x, y = (float(v) + SCOORD_OFFSET for v in first.coord)
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.POINT,
        graphic_data=np.array([[x, y]], dtype=np.float64),
        source_image=source_image,
    )
    evaluations, measurements = [], []
    for p in points:
        for grade in p.grades:
            evaluations.append(hd.sr.QualitativeEvaluation(GRADE_CONCEPT, grade_code(p.kind, grade, schema)))
            if p.score is not None:
                measurements.append(
                    hd.sr.Measurement(name=score_code(p.kind, grade), value=float(p.score), unit=SCORE_UNIT)
                )
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=_lo(first.identification)),
        referenced_region=region,
        geometric_purpose=codes.DCM.Center,
        algorithm_id=algorithm_id,
        finding_sites=[hd.sr.FindingSite(level_code(first.identification, first.kind))],
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
    )


def build_sr(record: StudyRecord, source: Dataset, schema: Schema, algorithm: AlgorithmInfo) -> hd.sr.Comprehensive3DSR:
    """The SR document of one study's landmarks.

    Args:
        record: the study's points (coordinates in pixels of the source image, grades, scores).
        source: header of the image every point lies on (:func:`read_source_header`); patient and study
            attributes are copied from it.
        schema: grade descriptions for the code meanings.
        algorithm: the model, for the algorithm identification and the device observer.

    Raises:
        ValueError: the record names another study or image than ``source``, or has no points (TID 1500 needs at
            least one measurement group).
    """
    if not record.points:
        raise ValueError(f"study {record.study_uid}: no landmarks to report")
    if record.study_uid != source.StudyInstanceUID:
        raise ValueError(f"record of study {record.study_uid} but source image of study {source.StudyInstanceUID}")
    for image in record.images:
        if image.instance_uid != source.SOPInstanceUID:
            raise ValueError(f"study {record.study_uid}: points on {image.instance_uid}, not on the source image")
    source_image = hd.sr.SourceImageForRegion(
        referenced_sop_class_uid=source.SOPClassUID, referenced_sop_instance_uid=source.SOPInstanceUID
    )
    algorithm_id = hd.sr.AlgorithmIdentification(
        name=_lo(algorithm.name), version=_lo(algorithm.version), parameters=list(algorithm.parameters) or None
    )
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=algorithm.device_uid or generate_uid(),
        name=_lo(algorithm.name),
        manufacturer_name="spine_kp",
        model_name=_lo(algorithm.name),
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    groups = [_roi_group(pts, source_image, schema, algorithm_id) for pts in _landmark_groups(record.points)]
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=codes.cid100.MRIUnspecifiedBodyRegion,
        imaging_measurements=groups,
    )
    with warnings.catch_warnings():
        # Names are copied verbatim; an anonymised one-part name ("ANON") is not worth a warning per study.
        warnings.filterwarnings("ignore", message=".*unlikely to represent the intended person name")
        return _document(report, source, algorithm)


def _document(report: hd.sr.MeasurementReport, source: Dataset, algorithm: AlgorithmInfo) -> hd.sr.Comprehensive3DSR:
    return hd.sr.Comprehensive3DSR(
        evidence=[source],
        content=report,
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="spine_kp",
        manufacturer_model_name=_lo(algorithm.name),
        software_versions=_lo(algorithm.version),
        series_description="spine_kp landmarks and grades",
        is_complete=True,
        coding_schemes=[
            CodingSchemeIdentificationItem(
                designator=PRIVATE_SCHEME, name="spine_kp private codes", responsible_organization="spine_kp"
            )
        ],
    )


def write_sr(sr: Dataset, path: str | Path) -> Path:
    """Write an SR document atomically (a failure leaves neither a partial file nor a temporary one)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            dcmwrite(fh, sr, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)
