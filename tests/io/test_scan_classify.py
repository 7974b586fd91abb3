"""Series classification rules: plane, weighting by name and by timing, scouts."""

from __future__ import annotations

import numpy as np
import pytest

from spine_kp.io.classify import (
    classify_weighting,
    find_scouts,
    plane_of,
    slice_normal,
    weighting_from_text,
    weighting_from_timing,
)

SAG = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


def _rotated_sagittal(degrees: float) -> tuple[float, ...]:
    """Sagittal orientation rotated about the head-feet axis (rows tilt towards x)."""
    a = np.radians(degrees)
    return (float(np.sin(a)), float(np.cos(a)), 0.0, 0.0, 0.0, -1.0)


@pytest.mark.parametrize(
    ("orientation", "plane"),
    [
        (SAG, "sagittal"),
        ((0.0, -1.0, 0.0, 0.0, 0.0, -1.0), "sagittal"),  # normal +x: sign does not matter
        (_rotated_sagittal(30), "sagittal"),
        (_rotated_sagittal(60), "coronal"),
        (_rotated_sagittal(45), "oblique"),
        ((1.0, 0.0, 0.0, 0.0, 0.0, -1.0), "coronal"),
        ((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "axial"),
        ((1.0, 0.0, 0.0, 1.0, 0.0, 0.0), "unknown"),  # rows parallel to columns
    ],
)
def test_plane_of(orientation: tuple[float, ...], plane: str) -> None:
    assert plane_of(orientation) == plane


def test_slice_normal_is_row_cross_col() -> None:
    np.testing.assert_allclose(slice_normal(SAG), [-1.0, 0.0, 0.0])


@pytest.mark.parametrize(
    ("text", "weighting"),
    [
        ("T2_TSE_SAG", "T2"),
        ("t2_tse_sag", "T2"),
        ("SAG T2 FRFSE", "T2"),  # FSE / FRFSE = fast spin echo, not fat suppression
        ("T2FSE SAG", "T2"),
        ("Sagittal T2 gewichtet", "T2"),
        ("SAG T2 加权", "T2"),
        ("矢状位T2WI", "T2"),
        ("T2_TIRM_SAG", "T2FS"),
        ("FST2", "T2FS"),
        ("STIR", "T2FS"),
        ("sag stir", "T2FS"),
        ("T2 SPAIR sag", "T2FS"),
        ("t2_tse_fs_sag", "T2FS"),
        ("SAG T2 FAT SAT", "T2FS"),
        ("Sag T2 fettgesättigt", "T2FS"),
        ("SAG T2 压脂", "T2FS"),
        ("T1_TSE_SAG", "T1"),
        ("T1 FS post contrast", "T1"),  # fat-suppressed T1 is still T1
        ("T12 level", "unknown"),
        ("PD_TSE_SAG", "unknown"),
        ("localizer T2", "unknown"),
        ("T1/T2 combined", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_weighting_from_text(text: str | None, weighting: str) -> None:
    assert weighting_from_text(text) == weighting


@pytest.mark.parametrize(
    ("te", "tr", "ti", "weighting"),
    [
        (100.0, 3000.0, None, "T2"),
        (85.0, 2500.0, None, "T2"),
        (70.0, 4000.0, 150.0, "T2FS"),  # STIR: short inversion time
        (35.0, 4200.0, 180.0, "T2FS"),  # STIR with a moderate TE
        (12.0, 2000.0, 850.0, "unknown"),  # T1 FLAIR: long inversion time is not STIR
        (12.0, 500.0, None, "T1"),
        (25.0, 800.0, None, "T1"),
        (30.0, 3000.0, None, "unknown"),  # proton density
        (100.0, 600.0, None, "unknown"),
        (None, 3000.0, None, "unknown"),
        (100.0, None, None, "unknown"),
    ],
)
def test_weighting_from_timing(te: float | None, tr: float | None, ti: float | None, weighting: str) -> None:
    assert weighting_from_timing(te, tr, ti) == weighting


def test_classify_weighting_order_of_evidence() -> None:
    assert classify_weighting("T1_SAG", "t2_sag", 100.0, 3000.0) == ("T1", "description 'T1_SAG'")
    assert classify_weighting("SAG", "t2_tse_sag", 12.0, 500.0) == ("T2", "protocol name 't2_tse_sag'")
    assert classify_weighting(None, None, 12.0, 500.0) == ("T1", "TE 12 ms / TR 500 ms")
    assert classify_weighting(None, None, None, None) == ("unknown", "TE ? ms / TR ? ms")


def test_find_scouts_by_orientation_size_and_localizer_flag() -> None:
    axial = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    orientations = [SAG, SAG, axial, SAG, SAG, SAG]
    sizes = [(64, 64), (64, 64), (64, 64), (32, 32), (64, 64), (64, 64)]
    localizer = [False, False, False, False, False, True]
    scouts, reference = find_scouts(orientations, sizes, localizer)
    assert scouts.tolist() == [False, False, True, True, False, True]
    assert reference == 0


def test_find_scouts_tolerates_jitter_and_keeps_the_majority() -> None:
    jitter = tuple(v + 0.004 for v in SAG)
    assert not find_scouts([SAG, jitter, SAG], [(8, 8)] * 3)[0].any()
    # all flagged LOCALIZER: they are still the series, not scouts of nothing
    assert not find_scouts([SAG, SAG], [(8, 8)] * 2, [True, True])[0].any()


def test_multi_block_axial_has_no_scouts() -> None:
    blocks = [(1.0, 0.0, 0.0, 0.0, float(np.cos(a)), float(np.sin(a))) for a in np.radians([-10.0, 5.0, 20.0])]
    orientations = [blocks[i // 3] for i in range(9)]
    scouts, reference = find_scouts(orientations, [(32, 32)] * 9)
    assert not scouts.any() and reference == 0
    # ... but a lone image in another plane among them is a scout, and a bigger block becomes the reference
    scouts, reference = find_scouts([SAG, *orientations[3:], blocks[1]], [(32, 32)] * 8)
    assert scouts.tolist() == [True] + [False] * 7 and reference == 1
