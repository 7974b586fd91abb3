"""Write valid non-image DICOM objects (a Basic Text SR, a presentation state) that belong to a study: the files
a real study folder holds beside its images, which the scanner must skip (test fixtures)."""

from __future__ import annotations

from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.uid import (
    BasicTextSRStorage,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
    generate_uid,
)

from spine_kp.io.atomic import atomic_output
from spine_kp.synth.dicom_write import base_dataset


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.update({"CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning})
    return item


def write_non_image(path: Path, study_uid: str, kind: str = "sr") -> Path:
    """Write a valid non-image DICOM object belonging to ``study_uid``.

    Args:
        path: file to write.
        study_uid: StudyInstanceUID the object claims.
        kind: ``"sr"`` (Basic Text SR) or ``"pr"`` (Grayscale Softcopy Presentation State).

    Returns:
        ``path``.
    """
    if kind not in ("sr", "pr"):
        raise ValueError(f"{path}: kind must be 'sr' or 'pr', got {kind!r}")
    sop_class = BasicTextSRStorage if kind == "sr" else GrayscaleSoftcopyPresentationStateStorage
    ds = base_dataset(sop_class, generate_uid(), study_uid, ExplicitVRLittleEndian)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = "ANON"
    ds.PatientName = "ANON"
    ds.StudyDate = "20260101"
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 900 if kind == "sr" else 901
    ds.InstanceNumber = 1
    if kind == "sr":
        ds.update(
            {
                "Modality": "SR",
                "SeriesDescription": "Report",
                "ValueType": "CONTAINER",
                "ContinuityOfContent": "SEPARATE",
                "CompletionFlag": "COMPLETE",
                "VerificationFlag": "UNVERIFIED",
            }
        )
        ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic Imaging Report")]
        item = Dataset()
        item.update({"RelationshipType": "CONTAINS", "ValueType": "TEXT", "TextValue": "Phantom: no findings."})
        item.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
        ds.ContentSequence = [item]
    else:
        ds.update(
            {
                "Modality": "PR",
                "SeriesDescription": "Presentation state",
                "ContentLabel": "PHANTOM",
                "PresentationCreationDate": "20260101",
                "PresentationCreationTime": "000000",
            }
        )
    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)
