"""Fuzzing the ingest and a prediction run with broken phantom DICOM files (truncated, bytes flipped, tags dropped or
absurd): a bad file or study is listed with its reason, and every other study is still scanned and predicted."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from fuzz_phantoms import (
    Phantoms,
    PhantomStudy,
    TinyPredictor,
    accounted_files,
    all_files,
    check_run,
    fuzz_settings,
    mutated,
    set_tags,
    write_phantom_root,
)
from hypothesis import event, example, given
from hypothesis import strategies as st

from spine_kp.io.dicom import SkippedFile, scan
from spine_kp.io.header import read_header
from spine_kp.predict.runner import PredictOptions, PredictRun, predict_studies

OPTIONS = PredictOptions(batch_size=4, workers=1, progress=False)
# what a file that cannot be used is skipped as (SkippedFile.category)
SKIP_CATEGORIES = {"not DICOM", "truncated", "corrupt", "incomplete header", "non-image object", "multi-frame",
                   "not greyscale", "no geometry", "unreadable", "duplicate"}  # fmt: skip


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Phantoms:
    return write_phantom_root(tmp_path_factory.mktemp("fuzz_dicom"))


def _targets(study: PhantomStudy, which: str, subset: list[int]) -> list[Path]:
    files = study.t2_files
    if which == "middle":
        return [files[(len(files) - 1) // 2]]
    if which == "all":
        return list(files)
    return [files[i % len(files)] for i in sorted(set(subset))] or [files[0]]


def _scan_and_predict(root: Path, phantoms: dict[str, PhantomStudy]):
    """Scan and predict as ``predict_folder`` does, and check what must hold whatever the files hold."""
    result = scan(root)
    assert accounted_files(result) == all_files(root)  # nothing vanished without a reason
    for s in result.skipped:
        assert s.category in SKIP_CATEGORIES and "\n" not in s.reason, s.reason
    predictor = TinyPredictor()
    run = predict_studies([result.studies[u] for u in sorted(result.studies)], predictor, OPTIONS, PredictRun())
    check_run(run, result, root, predictor)
    good = phantoms["good"]
    (pred,) = [p for p in run.predictions if p.slice.study_uid == good.study_uid]
    assert pred.slice.instance_uid == good.t2_middle_uid and pred.slice.num_slices == len(good.t2_files)
    return result, run


VICTIMS = st.sampled_from(["native", "rle"])
WHICH = st.sampled_from(["middle", "all", "some"])
SUBSET = st.lists(st.integers(0, 40), min_size=1, max_size=6)


@st.composite
def byte_mutations(draw: st.DrawFn) -> tuple[str, float | list[tuple[float, int, bool]]]:
    """("truncate", fraction kept) or ("flip", [(position fraction, xor mask, in the header?), ...])."""
    if draw(st.booleans()):
        return "truncate", draw(st.floats(0.0, 0.9999))
    flips = st.tuples(st.floats(0.0, 0.9999), st.integers(1, 255), st.booleans())
    return "flip", draw(st.lists(flips, min_size=1, max_size=8))


def _apply_bytes(mutation: tuple[str, object]):
    kind, how = mutation

    def change(data: bytes) -> bytes:
        if kind == "truncate":
            return data[: min(int(len(data) * how), len(data) - 1)]  # type: ignore[operator]
        out = bytearray(data)
        for where, mask, header in how:  # type: ignore[union-attr]
            span = min(len(out), 1400) if header else len(out)  # the phantom headers end near byte 1300
            out[int(where * span)] ^= mask
        return bytes(out)

    return change


@fuzz_settings(90)
@given(victim=VICTIMS, which=WHICH, subset=SUBSET, mutation=byte_mutations())
def test_truncated_or_flipped_files_are_skipped_or_fail_their_study_only(
    phantoms: Phantoms, victim: str, which: str, subset: list[int], mutation
) -> None:
    root, studies = phantoms.root, phantoms
    targets = _targets(studies[victim], which, subset)
    with mutated(targets, _apply_bytes(mutation)):
        result, run = _scan_and_predict(root, studies)
    event(
        f"{mutation[0]}: skipped {sum(str(p) in {s.path for s in result.skipped} for p in targets)}/{len(targets)}"
        f", failed {bool(run.failures)}"
    )
    if mutation[0] == "truncate":  # a cut file is never indexed: the header tells where the file must end
        skipped = {s.path for s in result.skipped}
        assert all(str(path) in skipped for path in targets), "a truncated file was indexed"
    else:  # whatever a flipped byte did, the study holding the file is predicted or listed as failed
        study = studies[victim].study_uid
        assert study in {p.slice.study_uid for p in run.predictions} | {f.study for f in run.failures} or all(
            str(p) in {s.path for s in result.skipped} for p in targets
        )


# ---- absurd or missing header values ------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "abc", "", "1e300", "1e-300", "0.5", "2", "-0.7"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
SPACING = st.one_of(
    st.tuples(NUMBERS, NUMBERS).map("\\".join),
    st.sampled_from(["abc", "0.5", "0.5\\0.5\\0.5", "\\"]),
)
REQUIRED = ["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "Rows", "Columns", "PixelSpacing",
            "ImageOrientationPatient", "ImagePositionPatient", "PixelData"]  # fmt: skip
TAG_EDITS = st.one_of(
    st.builds(lambda v: {"Rows": v}, st.one_of(st.just(0), st.integers(0, 65535))),
    st.builds(lambda v: {"Columns": v}, st.one_of(st.just(65535), st.integers(0, 65535))),
    st.builds(lambda v: {"PixelSpacing": v}, SPACING),
    st.builds(lambda v: {"NumberOfFrames": v}, st.sampled_from(["1000000", "0", "-3", "abc", "2", "1"])),
    st.builds(lambda v: {"RescaleSlope": v}, NUMBERS),
    st.builds(lambda v: {"RescaleIntercept": v}, NUMBERS),
    st.builds(lambda v: {"BitsAllocated": v}, st.sampled_from([0, 1, 8, 12, 32, 64])),
    st.builds(lambda v: {"SamplesPerPixel": v}, st.sampled_from([0, 3, 4])),
    st.builds(lambda k: {k: None}, st.sampled_from(REQUIRED)),
)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _expected_skip(edit: dict) -> str | None:
    """The SkippedFile category a file with this edit must get, where the header alone decides it."""
    ((keyword, value),) = edit.items()
    if value is None:
        if keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
            return "incomplete header"
        return {"Rows": "non-image object", "Columns": "non-image object", "PixelData": "truncated"}.get(
            keyword, "no geometry"
        )
    if keyword in ("Rows", "Columns") and value == 0:
        return "corrupt"
    if keyword == "PixelSpacing":
        parts = [_number(v) for v in value.split("\\")]
        if len(parts) != 2 or not all(v is not None and math.isfinite(v) for v in parts):
            return "no geometry"
    if keyword == "NumberOfFrames" and (_number(value) or 1) > 1:
        return "multi-frame"
    if keyword == "SamplesPerPixel" and value not in (0, 1):
        return "not greyscale"
    return None


def _bad_rescale(edit: dict) -> bool:
    """True when the edit is a RescaleSlope or RescaleIntercept no image can be rescaled with."""
    ((keyword, value),) = edit.items()
    if keyword not in ("RescaleSlope", "RescaleIntercept") or not value.strip():
        return False
    number = _number(value)
    if number is None or not math.isfinite(number):
        return True
    with np.errstate(over="ignore"):
        return keyword == "RescaleSlope" and np.float32(number) == 0  # the rescale runs in float32


@fuzz_settings(100)
@given(victim=VICTIMS, which=WHICH, subset=SUBSET, edit=TAG_EDITS)
# the absurd values the issue names, on every T2 file or on the middle one only, are always among the examples
@example(victim="native", which="all", subset=[0], edit={"Rows": 0})
@example(victim="rle", which="all", subset=[0], edit={"Columns": 65535})
@example(victim="native", which="all", subset=[0], edit={"PixelSpacing": "abc"})
@example(victim="rle", which="all", subset=[0], edit={"PixelSpacing": "0\\0.5"})
@example(victim="native", which="all", subset=[0], edit={"PixelSpacing": "-0.7\\0.7"})
@example(victim="native", which="all", subset=[0], edit={"NumberOfFrames": "1000000"})
@example(victim="native", which="middle", subset=[0], edit={"RescaleSlope": "0"})
@example(victim="rle", which="middle", subset=[0], edit={"RescaleSlope": "nan"})
@example(victim="native", which="middle", subset=[0], edit={"RescaleSlope": "1e-300"})  # 0 in float32
@example(victim="native", which="all", subset=[0], edit={"RescaleIntercept": "inf"})
@example(victim="native", which="all", subset=[0], edit={"RescaleSlope": "1e34"})  # finite, but no intensity
@example(victim="native", which="all", subset=[0], edit={"BitsAllocated": 8})
@example(victim="native", which="middle", subset=[0], edit={"Rows": 10})
@example(victim="rle", which="middle", subset=[0], edit={"Rows": 10})
@example(victim="rle", which="all", subset=[0], edit={"Rows": 10})  # the RLE plugin panics (a BaseException)
@example(victim="native", which="all", subset=[0], edit={"SOPInstanceUID": None})
def test_absurd_or_missing_tags_are_skipped_or_fail_their_study_only(
    phantoms: Phantoms, victim: str, which: str, subset: list[int], edit: dict
) -> None:
    root, studies = phantoms.root, phantoms
    study = studies[victim]
    targets = _targets(study, which, subset)
    with mutated(targets, set_tags(edit)):
        result, run = _scan_and_predict(root, studies)
    skipped = {s.path: s for s in result.skipped}
    failures = {f.study: f.reason for f in run.failures}
    predicted = {p.slice.study_uid: p for p in run.predictions}
    category = _expected_skip(edit)
    event(f"{victim} {which} {next(iter(edit))}: skip {category}, failed {study.study_uid in failures}")
    if category is not None:
        for path in targets:
            assert skipped[str(path)].category == category, (edit, skipped.get(str(path)))
        if which == "all":  # no T2 file left: the fat-suppressed T2 (STIR) series stands in
            assert "fat-suppressed T2" in predicted[study.study_uid].slice.reason
    middle = study.t2_files[(len(study.t2_files) - 1) // 2]
    if _bad_rescale(edit) and middle in targets:  # the middle slice cannot be rescaled: the study fails, named
        ((keyword, _),) = edit.items()
        assert failures[study.study_uid].startswith(f"UnusableImage: {middle}: {keyword}"), failures
    ((keyword, value),) = edit.items()
    if keyword == "PixelSpacing" and which == "all" and category is None:  # parsed, but zero or negative
        spacing = [float(v) for v in value.split("\\")]
        if min(spacing) <= 0:
            assert failures[study.study_uid].startswith("UnusableImage: "), failures
            assert "PixelSpacing" in failures[study.study_uid] and str(study.folder) in failures[study.study_uid]


def test_a_header_value_pydicom_cannot_convert_skips_the_file(phantoms: Phantoms, tmp_path: Path) -> None:
    """BitsAllocated (US) of 3 bytes, read by pydicom (the reader for what the fast walker hands over): pydicom
    raises a bare Exception (BytesLengthException) converting it; the file is skipped, not the scan stopped."""
    source = phantoms["native"].t2_files[0].read_bytes()
    at = source.index(b"\x28\x00\x00\x01US\x02\x00")  # (0028,0100) BitsAllocated, explicit VR, length 2
    path = tmp_path / "odd_us.dcm"
    path.write_bytes(source[:at] + b"\x28\x00\x00\x01US\x03\x00\x10\x00\x00" + source[at + 10 :])
    header = read_header(str(path), fast=False)
    assert isinstance(header, SkippedFile) and header.reason.startswith("unreadable: BytesLengthException: ")
    assert "\n" not in header.reason
