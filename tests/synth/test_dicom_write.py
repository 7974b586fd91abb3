"""Round trips through the DICOM writer: pixels, rescale, geometry tags, every writable transfer syntax."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    BasicTextSRStorage,
    GrayscaleSoftcopyPresentationStateStorage,
    JPEGLSLossless,
    MRImageStorage,
)

from spine_kp.synth.dicom_non_image import write_non_image
from spine_kp.synth.dicom_write import (
    TRANSFER_SYNTAXES,
    SeriesGeometry,
    SeriesMeta,
    encodable_transfer_syntaxes,
    frame_of_reference_uid,
    write_series,
)

SAG = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # rows run anterior->posterior, columns head->feet; normal = -x


def _meta(**kw: object) -> SeriesMeta:
    base = dict(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        series_uid="1.2.826.0.1.3680043.8.498.2",
        series_number=3,
        series_description="T2_TSE_SAG",
        protocol_name="t2_tse_sag",
        echo_time=102.0,
        repetition_time=3500.0,
    )
    base.update(kw)
    return SeriesMeta(**base)  # type: ignore[arg-type]


def _geometry(n: int, step: float = 4.0) -> SeriesGeometry:
    # positions given in descending x, i.e. ascending along the normal (-x)
    pos = np.array([[10.0 - step * i, -20.0, 30.0] for i in range(n)])
    return SeriesGeometry(orientation=SAG, positions=pos, spacing=(0.6, 0.7), slice_thickness=3.5)


@pytest.mark.parametrize("syntax", encodable_transfer_syntaxes())
@pytest.mark.parametrize("bits", [12, 16])
@pytest.mark.parametrize("shape", [(40, 36), (24, 20)])  # 24 x 20: too small for pylibjpeg-openjpeg
def test_round_trip_each_syntax(tmp_path: Path, syntax: str, bits: int, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(bits)
    slope, intercept = 0.5, -100.0
    pixels = rng.uniform(-100.0, 1500.0, size=(3, *shape))
    out = write_series(
        tmp_path, pixels, _geometry(3), _meta(bits_stored=bits, rescale_slope=slope, rescale_intercept=intercept),
        transfer_syntax=syntax,
    )  # fmt: skip
    assert len(out) == 3
    for i, (path, uid) in enumerate(out):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == TRANSFER_SYNTAXES[syntax]
        assert ds.SOPInstanceUID == uid == ds.file_meta.MediaStorageSOPInstanceUID
        assert ds.SOPClassUID == MRImageStorage
        assert ds.BitsStored == bits
        real = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        # lossless: only the quantisation step of the slope separates input and decoded values
        np.testing.assert_allclose(real, pixels[i], atol=slope / 2 + 1e-9)


def test_geometry_and_identity_tags(tmp_path: Path) -> None:
    geo = _geometry(4)
    meta = _meta(inversion_time=150.0)
    out = write_series(tmp_path, np.zeros((4, 8, 6)), geo, meta)
    dss = [pydicom.dcmread(p) for p, _ in out]
    for i, ds in enumerate(dss):
        assert [float(v) for v in ds.ImageOrientationPatient] == list(SAG)
        np.testing.assert_allclose([float(v) for v in ds.ImagePositionPatient], geo.positions[i])
        assert [float(v) for v in ds.PixelSpacing] == [0.6, 0.7]
        assert float(ds.SliceThickness) == 3.5
        assert float(ds.SliceLocation) == pytest.approx(-geo.positions[i][0])  # projection on normal (-1, 0, 0)
        assert (ds.Rows, ds.Columns) == (8, 6)
        assert ds.StudyInstanceUID == meta.study_uid and ds.SeriesInstanceUID == meta.series_uid
        assert ds.SeriesDescription == "T2_TSE_SAG" and ds.ProtocolName == "t2_tse_sag"
        assert float(ds.EchoTime) == 102.0 and float(ds.RepetitionTime) == 3500.0 and float(ds.InversionTime) == 150
        assert ds.FrameOfReferenceUID == frame_of_reference_uid(meta.study_uid)
        assert ds.SeriesNumber == 3
    assert [int(ds.InstanceNumber) for ds in dss] == [1, 2, 3, 4]
    assert [p.name for p, _ in out] == [f"003_{i:04d}.dcm" for i in range(4)]


def test_default_instance_numbers_follow_position_not_input_order(tmp_path: Path) -> None:
    geo = _geometry(3)
    shuffled = SeriesGeometry(SAG, geo.positions[[2, 0, 1]], geo.spacing, geo.slice_thickness)
    out = write_series(tmp_path, np.zeros((3, 4, 4)), shuffled, _meta())
    assert [int(pydicom.dcmread(p).InstanceNumber) for p, _ in out] == [3, 1, 2]


def test_explicit_numbers_uids_names_and_omitted_tags(tmp_path: Path) -> None:
    uids = ["1.2.3.4.5.1", "1.2.3.4.5.2"]
    out = write_series(
        tmp_path, np.zeros((2, 4, 4)), _geometry(2),
        _meta(series_description=None, protocol_name=None, echo_time=None, repetition_time=None),
        instance_numbers=[7, 3], sop_instance_uids=uids, file_names=["b", "a/x.dcm"],
    )  # fmt: skip
    assert [(p.relative_to(tmp_path).as_posix(), u) for p, u in out] == [("b", uids[0]), ("a/x.dcm", uids[1])]
    ds = pydicom.dcmread(out[1][0])
    assert int(ds.InstanceNumber) == 3
    for keyword in ("SeriesDescription", "ProtocolName", "EchoTime", "RepetitionTime", "InversionTime"):
        assert keyword not in ds


def test_values_are_clipped_to_bits_stored(tmp_path: Path) -> None:
    px = np.array([[[-50.0, 5000.0, 70000.0]]])
    p12 = write_series(tmp_path / "a", px, _geometry(1), _meta(bits_stored=12))[0][0]
    p16 = write_series(tmp_path / "b", px, _geometry(1), _meta(bits_stored=16))[0][0]
    assert pydicom.dcmread(p12).pixel_array.tolist() == [[0, 4095, 4095]]
    assert pydicom.dcmread(p16).pixel_array.tolist() == [[0, 5000, 65535]]


def test_bad_arguments_raise(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pixels must be"):
        write_series(tmp_path, np.zeros((4, 4)), _geometry(1), _meta())
    with pytest.raises(ValueError, match="positions has 2 entries for 3 slices"):
        write_series(tmp_path, np.zeros((3, 4, 4)), _geometry(2), _meta())
    with pytest.raises(ValueError, match="unknown transfer_syntax"):
        write_series(tmp_path, np.zeros((1, 4, 4)), _geometry(1), _meta(), transfer_syntax="gif")
    with pytest.raises(ValueError, match="bits_stored"):
        write_series(tmp_path, np.zeros((1, 4, 4)), _geometry(1), _meta(bits_stored=8))


def test_jpegls_without_encoder_is_a_clear_error(tmp_path: Path) -> None:
    from pydicom.pixels.encoders import JPEGLSLosslessEncoder

    if JPEGLSLosslessEncoder.is_available:  # pyjpegls installed: it must then write real JPEG-LS
        out = write_series(tmp_path, np.ones((1, 4, 4)), _geometry(1), _meta(), transfer_syntax="jpegls")
        assert pydicom.dcmread(out[0][0]).file_meta.TransferSyntaxUID == JPEGLSLossless
    else:
        with pytest.raises(ValueError, match="pyjpegls"):
            write_series(tmp_path, np.ones((1, 4, 4)), _geometry(1), _meta(), transfer_syntax="jpegls")
        assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kind", "sop_class"), [("sr", BasicTextSRStorage), ("pr", GrayscaleSoftcopyPresentationStateStorage)]
)
def test_non_image_objects(tmp_path: Path, kind: str, sop_class: str) -> None:
    path = write_non_image(tmp_path / f"{kind}.dcm", "1.2.3.9", kind=kind)
    ds = pydicom.dcmread(path)
    assert ds.StudyInstanceUID == "1.2.3.9"
    assert ds.SOPClassUID == sop_class == ds.file_meta.MediaStorageSOPClassUID
    assert "PixelData" not in ds
    with pytest.raises(ValueError, match="kind must be"):
        write_non_image(tmp_path / "x.dcm", "1.2.3.9", kind="ct")
