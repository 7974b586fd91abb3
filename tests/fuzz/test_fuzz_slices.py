"""Fuzzing the one place pixels enter the pipeline (``spine_kp.io.dicom`` loading a slice): spacing, size and rescale
values that cannot make a usable image raise UnusableImage naming the file, and nothing else gets through."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fuzz_phantoms import Phantoms, fuzz_settings, set_tags, write_phantom_root
from hypothesis import event, example, given
from hypothesis import strategies as st

from spine_kp.io.dicom import (
    MAX_PIXEL_VALUE,
    SPACING_MM,
    InstanceInfo,
    SeriesInfo,
    StudyIndex,
    UnusableImage,
    load_instance,
    load_middle_slice,
)


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Phantoms:
    return write_phantom_root(tmp_path_factory.mktemp("fuzz_slices"))


def _series(path: Path, n: int, spacing: tuple[float, float], rows: int, cols: int) -> SeriesInfo:
    """A T2 sagittal series of ``n`` images, all the file at ``path`` (the loader does not care)."""
    instances = tuple(InstanceInfo(str(path), f"1.2.3.{i}", i + 1, float(i)) for i in range(n))
    return SeriesInfo("1.2", "1.2.3", "T2_SAG", "sagittal", "T2", instances, (), spacing, rows, cols, 100.0, 3000.0, "")


# about half of each draw is usable, so that examples reach every check and the decoded values too
RESCALE = st.one_of(
    st.floats(-1000, 1000).map(repr),
    st.sampled_from(["", "1", "0", "-0", "nan", "inf", "-inf", "1e300", "1e-300", "1e-50", "abc", "2\\3"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
SPACING = st.one_of(
    st.floats(0.05, 5.0), st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.5, math.nan])
)
SIZE = st.one_of(st.none(), st.none(), st.tuples(st.integers(0, 70000), st.integers(0, 70000)))


def _rescale_ok(text: str, kind: str) -> bool:
    text = text.strip()
    if not text:
        return True
    try:
        value = float(text)
    except ValueError:
        return False
    with np.errstate(over="ignore"):
        return math.isfinite(value) and (kind == "intercept" or np.float32(value) != 0)


def _as_float(text: str, default: float) -> float:
    return float(text) if text.strip() else default


@fuzz_settings(110)
@given(
    victim=st.sampled_from(["native", "rle"]),
    spacing=st.one_of(st.tuples(st.floats(0.05, 5.0), st.floats(0.05, 5.0)), st.tuples(SPACING, SPACING)),
    size=SIZE,
    slope=st.one_of(st.just("1"), RESCALE),
    intercept=st.one_of(st.just("0"), RESCALE),
    neighbours=st.integers(0, 1),
)
@example(victim="native", spacing=(0.0, 0.5), size=None, slope="1", intercept="0", neighbours=0)
@example(victim="native", spacing=(1e-9, 0.5), size=None, slope="1", intercept="0", neighbours=0)  # beyond physical
@example(victim="rle", spacing=(0.5, 1e9), size=None, slope="1", intercept="0", neighbours=0)
@example(victim="rle", spacing=(math.inf, 0.5), size=None, slope="1", intercept="0", neighbours=0)
@example(victim="native", spacing=(0.5, 0.5), size=(64, 65535), slope="1", intercept="0", neighbours=0)
@example(victim="native", spacing=(0.5, 0.5), size=(0, 64), slope="1", intercept="0", neighbours=0)
@example(victim="rle", spacing=(0.5, 0.5), size=None, slope="0", intercept="0", neighbours=1)
@example(victim="native", spacing=(0.5, 0.5), size=None, slope="nan", intercept="0", neighbours=0)
@example(victim="native", spacing=(0.5, 0.5), size=None, slope="1", intercept="-inf", neighbours=0)
@example(victim="native", spacing=(0.5, 0.5), size=None, slope="1e-300", intercept="0", neighbours=0)
@example(victim="rle", spacing=(0.5, 0.5), size=None, slope="1e34", intercept="0", neighbours=0)
@example(victim="native", spacing=(0.5, 0.5), size=None, slope="1", intercept="-1e20", neighbours=0)
def test_a_slice_is_usable_or_unusable_image_names_its_file(
    phantoms: Phantoms,
    tmp_path: Path,
    victim: str,
    spacing: tuple[float, float],
    size: tuple[int, int] | None,
    slope: str,
    intercept: str,
    neighbours: int,
) -> None:
    studies = phantoms
    source = studies[victim].t2_files[0]
    path = tmp_path / f"{victim}.dcm"
    path.write_bytes(set_tags({"RescaleSlope": slope, "RescaleIntercept": intercept})(source.read_bytes()))
    stored = pydicom.dcmread(source).pixel_array.astype(np.float32)  # (64, 64), the phantom writes slope 1
    rows, cols = size if size is not None else stored.shape
    series = _series(path, 3, spacing, rows, cols)
    study = StudyIndex("1.2", (series,), str(tmp_path))

    spacing_ok = all(SPACING_MM[0] <= v <= SPACING_MM[1] for v in spacing)  # False for NaN too
    size_ok = (rows, cols) == stored.shape
    rescale_ok = _rescale_ok(slope, "slope") and _rescale_ok(intercept, "intercept")
    if rescale_ok:
        with np.errstate(all="ignore"):
            expected = stored * np.float32(_as_float(slope, 1.0)) + np.float32(_as_float(intercept, 0.0))
        values_ok = bool(np.abs(expected).max() <= MAX_PIXEL_VALUE)  # False for NaN and infinity too

    usable = spacing_ok and size_ok and rescale_ok and values_ok
    event("usable" if usable else "spacing" if not spacing_ok else "size" if not size_ok else "rescale or values")
    if usable:
        sl = load_middle_slice(study, neighbours=neighbours)
        assert sl.spacing == spacing and sl.pixels.shape == stored.shape
        np.testing.assert_allclose(sl.pixels, expected, rtol=1e-6)
        if neighbours:
            assert sl.stack is not None and np.isfinite(sl.stack).all() and sl.stack.shape == (3, rows, cols)
    else:
        with pytest.raises(UnusableImage) as info:
            load_instance(study, "1.2.3.1", neighbours=neighbours)
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        if not spacing_ok:  # checked first, before anything is decoded
            assert "PixelSpacing" in message
        elif size_ok and not rescale_ok:
            assert "Rescale" in message
