"""Ingest picks the right series and the right frame on hand-made studies, including the tricky ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_studies import AX, StudyBuilder

from spine_kp.io.dicom import (
    IngestError,
    NoSagittalSeries,
    load_instance,
    load_middle_slice,
    read_study,
    scan,
)
from spine_kp.io.series_choice import choose_series
from spine_kp.synth.dicom_non_image import write_non_image
from spine_kp.synth.dicom_write import encodable_transfer_syntaxes


def _index(builder: StudyBuilder):  # noqa: ANN202
    return scan(builder.root).studies[builder.study_uid]


def _check_middle(builder: StudyBuilder, expected, neighbours: int = 0):  # noqa: ANN001, ANN202
    """Load the middle slice and check it is the middle (by position) of series ``expected``."""
    sl = load_middle_slice(_index(builder), neighbours=neighbours)
    n = len(expected.uids_by_rank)
    mid = (n - 1) // 2
    assert sl.series_uid == expected.series_uid
    assert sl.instance_uid == expected.uids_by_rank[mid]
    assert (sl.z_index, sl.num_slices) == (mid, n)
    assert sl.pixels.dtype == np.float32
    np.testing.assert_array_equal(sl.pixels, np.full(sl.shape, expected.value + 10 * mid, np.float32))
    return sl


def test_typical_lumbar_study(study: StudyBuilder) -> None:
    study.add("T1_TSE_SAG", te=12, tr=500)
    t2 = study.add("T2_TSE_SAG", n=7, reverse_instance_numbers=True)
    study.add("STIR_SAG", te=70, tr=4000, ti=150)
    study.add("T2_TRA", orientation=AX, n=9)
    sl = _check_middle(study, t2)
    assert sl.spacing == (0.5, 0.6) and sl.shape == (24, 20)
    assert sl.study_uid == study.study_uid and sl.series_description == "T2_TSE_SAG"
    assert sl.path == str(t2.paths_by_rank[3])
    assert sl.stack is None
    assert sl.reason == (
        "sagittal T2 by description 'T2_TSE_SAG' (7 slices); skipped: T1 sagittal 'T1_TSE_SAG', "
        "T2FS sagittal 'STIR_SAG', T2 axial 'T2_TRA'"
    )


def test_missing_descriptions_fall_back_to_te_tr(study: StudyBuilder) -> None:
    study.add(None, te=10, tr=450, n=9)  # T1 by timing, more slices: must still lose
    t2 = study.add(None, te=110, tr=3500, n=4)
    sl = _check_middle(study, t2)
    assert sl.reason.startswith("sagittal T2 by TE 110 ms / TR 3500 ms (4 slices)")


@pytest.mark.parametrize("plain", ["Sagittal T2 gewichtet", "SAG T2 加权", "t2_tse_sag", "SAG_T2_FRFSE"])
@pytest.mark.parametrize("fat_suppressed", ["T2_TIRM_SAG", "FST2", "STIR", "t2_tse_fs_sag"])
def test_fat_suppressed_names_lose_to_plain_t2(study: StudyBuilder, plain: str, fat_suppressed: str) -> None:
    # the fat-suppressed series has more slices and T2 timing: only its name tells it apart
    study.add(fat_suppressed, te=100, tr=3000, n=9)
    t2 = study.add(plain, n=5)
    sl = _check_middle(study, t2)
    assert f"T2FS sagittal '{fat_suppressed}'" in sl.reason


def test_fat_suppressed_t2_is_the_last_resort(study: StudyBuilder) -> None:
    study.add("T1_TSE_SAG", te=12, tr=500)
    stir = study.add("STIR_SAG", n=6)
    study.add("T2_TRA", orientation=AX)
    sl = _check_middle(study, stir)
    assert sl.reason.startswith("sagittal fat-suppressed T2 by description 'STIR_SAG' (6 slices) (last resort")


def test_unknown_weighting_only_after_fat_suppressed(study: StudyBuilder) -> None:
    unknown = study.add("SAG", te=None, tr=None, n=8)
    study.add("T1_SAG", te=12, tr=500)
    _check_middle(study, unknown)  # nothing better: the unknown sagittal, said so in the reason
    assert "weighting unknown" in load_middle_slice(_index(study)).reason
    stir = study.add("SAG STIR", n=3)
    _check_middle(study, stir)


def test_t1_only_raises_with_what_was_found(study: StudyBuilder) -> None:
    study.add("T1_TSE_SAG", te=12, tr=500, n=4)
    study.add("T2_TRA", orientation=AX, n=3)
    with pytest.raises(NoSagittalSeries) as err:
        load_middle_slice(_index(study))
    message = str(err.value)
    assert study.study_uid in message and str(study.root) in message
    assert "T1 sagittal 'T1_TSE_SAG' (4 slices)" in message and "T2 axial 'T2_TRA' (3 slices)" in message
    assert isinstance(err.value, IngestError)


def test_tie_break_more_slices_then_series_number(study: StudyBuilder) -> None:
    study.add("T2_SAG_a", n=5)
    longer = study.add("T2_SAG_b", n=7)
    _check_middle(study, longer)
    other = StudyBuilder(study.root.parent / "other")
    first = other.add("T2_SAG_a", n=5)
    other.add("T2_SAG_b", n=5)
    assert choose_series(_index(other))[0].series_uid == first.series_uid  # lower SeriesNumber


def test_scout_inside_the_series_does_not_shift_the_middle(study: StudyBuilder) -> None:
    t2 = study.add("T2_TSE_SAG", n=6, folder="t2")
    scout = study.add("loc", orientation=AX, n=1, size=(24, 20), folder="t2")
    ds = pydicom.dcmread(scout.paths_by_rank[0])
    ds.SeriesInstanceUID, ds.SeriesDescription = t2.series_uid, "T2_TSE_SAG"
    ds.save_as(scout.paths_by_rank[0])
    sl = _check_middle(study, t2)  # 6 slices -> index 2; counting the scout would give index 3 of 7
    assert "1 scout(s) left out of the series" in sl.reason
    with pytest.raises(IngestError, match="is a scout"):
        load_instance(_index(study), scout.uids_by_rank[0])


@pytest.mark.parametrize("syntax", [s for s in encodable_transfer_syntaxes() if s not in ("explicit", "implicit")])
def test_compressed_series(study: StudyBuilder, syntax: str) -> None:
    study.add("T1_SAG", te=12, tr=500)
    t2 = study.add("T2_SAG", n=5, transfer_syntax=syntax, size=(40, 36))
    series, _ = choose_series(_index(study))
    assert series.transfer_syntax == pydicom.dcmread(t2.paths_by_rank[0]).file_meta.TransferSyntaxUID.name
    sl = _check_middle(study, t2, neighbours=1)
    np.testing.assert_array_equal(sl.stack[:, 0, 0], [t2.value + 10, t2.value + 20, t2.value + 30])


def test_neighbours_stack_repeats_the_edges(study: StudyBuilder) -> None:
    t2 = study.add(n=5)
    sl = _check_middle(study, t2, neighbours=2)
    assert sl.stack.shape == (5, 24, 20) and sl.stack.dtype == np.float32
    np.testing.assert_array_equal(sl.stack[:, 0, 0], t2.value + 10 * np.arange(5))
    np.testing.assert_array_equal(sl.stack[2], sl.pixels)
    edge = load_instance(_index(study), t2.uids_by_rank[0], neighbours=2)
    np.testing.assert_array_equal(edge.stack[:, 5, 5], t2.value + 10 * np.array([0, 0, 0, 1, 2]))


def test_an_unusable_neighbouring_slice_is_replaced_by_the_middle_one_with_a_warning(study: StudyBuilder) -> None:
    t2 = study.add(n=5)
    bad = t2.paths_by_rank[3]  # the middle slice is rank 2
    ds = pydicom.dcmread(bad)
    ds.RescaleSlope = 0
    ds.save_as(bad)
    with pytest.warns(UserWarning, match=rf"{Path(bad).name}.*RescaleSlope.*middle slice stands in"):
        sl = load_middle_slice(_index(study), neighbours=1)
    np.testing.assert_array_equal(sl.stack[0], np.full(sl.shape, t2.value + 10, np.float32))  # rank 1 as it is
    np.testing.assert_array_equal(sl.stack[2], sl.pixels)  # rank 3 stood in for by the middle slice
    with pytest.raises(IngestError, match="RescaleSlope"):  # the middle slice itself has no stand-in
        load_instance(_index(study), t2.uids_by_rank[3])


def test_load_instance_of_any_series(study: StudyBuilder) -> None:
    study.add(n=5)
    ax = study.add("T2_TRA", orientation=AX, n=4, reverse_instance_numbers=True)
    index = _index(study)
    sl = load_instance(index, ax.uids_by_rank[3])
    assert (sl.series_uid, sl.z_index, sl.num_slices) == (ax.series_uid, 3, 4)
    np.testing.assert_array_equal(sl.pixels, np.full((24, 20), ax.value + 30, np.float32))
    with pytest.raises(IngestError, match="no image with SOPInstanceUID 1.2.3"):
        load_instance(index, "1.2.3")


def test_junk_around_a_study_does_not_matter(study: StudyBuilder) -> None:
    t2 = study.add(n=3)
    (study.root / "Thumbs.db").write_bytes(b"\x00\x01garbage")
    write_non_image(study.root / "sr.dcm", study.study_uid)
    cut = study.root / "cut.dcm"
    data = t2.paths_by_rank[0].read_bytes()
    ds = pydicom.dcmread(t2.paths_by_rank[0])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(cut)
    cut.write_bytes(cut.read_bytes()[: len(data) - 50])
    sl = read_study(study.root)
    assert sl.instance_uid == t2.middle_uid() and sl.num_slices == 3


def test_rescale_is_applied(tmp_path: Path) -> None:
    from dicom_studies import SAG

    from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, write_series

    pixels = np.linspace(-500, 1500, 3 * 16 * 20).reshape(3, 16, 20)  # 16 x 16 at least: MIN_SIDE
    meta = SeriesMeta("1.2.3", "1.2.3.1", 1, "T2 SAG", None, 100.0, 3000.0, rescale_slope=0.5, rescale_intercept=-600)
    geometry = SeriesGeometry(SAG, np.array([[0.0, 0, 0], [-1, 0, 0], [-2, 0, 0]]), (1.0, 1.0), 1.0)
    write_series(tmp_path, pixels, geometry, meta)
    sl = read_study(tmp_path)
    np.testing.assert_allclose(sl.pixels, pixels[1], atol=0.25)


def test_file_broken_after_the_scan_names_the_file(study: StudyBuilder) -> None:
    t2 = study.add(n=3)
    index = _index(study)
    middle = t2.paths_by_rank[1]
    middle.write_bytes(middle.read_bytes()[:-200])
    with pytest.raises(IngestError, match=str(middle)):
        load_middle_slice(index)


def test_read_study_wants_exactly_one_study(tmp_path: Path) -> None:
    StudyBuilder(tmp_path / "a").add(n=2)
    StudyBuilder(tmp_path / "b").add(n=2)
    with pytest.raises(IngestError, match="expected one study, found 2"):
        read_study(tmp_path)
    with pytest.raises(IngestError, match="not a folder"):
        scan(tmp_path / "missing")
