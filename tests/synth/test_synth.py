"""Phantom studies and data sets (spine_kp.synth): determinism, geometry, grades, DICOM tags, tricky cases."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.uid import BasicTextSRStorage, JPEG2000Lossless, RLELossless

from spine_kp.cli.main import main
from spine_kp.io.annotations import read_annotations
from spine_kp.schema import Schema, load_schema
from spine_kp.synth import TRICKY_KINDS, SynthOptions, SynthStudy, make_dataset, make_study
from spine_kp.synth.anatomy import Body, Disc
from spine_kp.synth.grades import sample_grades
from spine_kp.synth.plan import SCHEDULE, sample_plan

SCHEMA = load_schema()
CLEAN = SynthOptions(size=192, axial=False, tricky=False)


# ---------------------------------------------------------------- helpers
def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _read_all(root: Path) -> tuple[list[pydicom.Dataset], list[Path]]:
    """Every DICOM dataset under ``root`` and every file that is not DICOM."""
    datasets, other = [], []
    for p in _files(root):
        try:
            datasets.append(pydicom.dcmread(p))
        except InvalidDicomError:
            other.append(p)
    return datasets, other


def _normal(ds: pydicom.Dataset) -> np.ndarray:
    o = np.array([float(v) for v in ds.ImageOrientationPatient])
    return np.cross(o[:3], o[3:])


def _disc_shape(study: SynthStudy, name: str) -> dict[str, float]:
    """Per-disc measurements from the T2 sagittal label maps, in the disc's own frame (mm)."""
    s = study.get("t2_sag")
    d = study.anatomy.structure(name)
    o = np.asarray(s.geometry.orientation)
    sr, sc = s.geometry.spacing
    lid = study.label_id(name)
    reach, xs, beyond = [], [], 0
    for j in range(len(s.pixels)):
        rows, cols = np.nonzero(s.labels[j] == lid)
        if not len(rows):
            continue
        pts = s.geometry.positions[j] + np.outer(cols * sc, o[:3]) + np.outer(rows * sr, o[3:])
        a = study.pose.to_anatomy(pts)
        u, v = d.frame.local(a[:, 1], a[:, 2])
        reach.append(float(u.max()) - d.half_depth)  # beyond the posterior margin of a normal disc
        xs.append(float(a[:, 0].mean()))
        beyond += int((np.abs(v) > d.height / 2 + 1.5).sum())  # disc material past its own endplates
    j = study.annotated_index
    mask = s.labels[j] == lid
    left = max((r for r, x in zip(reach, xs) if x > 4.0), default=np.nan)
    right = max((r for r, x in zip(reach, xs) if x < -4.0), default=np.nan)
    return {
        "t2": float(s.pixels[j][mask].mean()),
        "area": float(mask.sum()),
        "reach": max(reach),
        "asym": abs(left - right),
        "beyond": float(beyond),
    }


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five tiny studies: with five or more studies every tricky case occurs."""
    out = tmp_path_factory.mktemp("synth") / "ds"
    make_dataset(out, 5, seed=3, size=64)
    return out


@pytest.fixture(scope="module")
def disc_variants() -> dict[str, dict[str, float]]:
    """The same study with its L4-L5 disc forced to each disc grade."""
    return {
        g: _disc_shape(make_study(11, 2, options=CLEAN, grades={"L4-L5": (g,)}), "L4-L5")
        for g in ("v1", "v2", "v3", "v4", "v5", "v6", "v7")
    }


# ---------------------------------------------------------------- determinism
def test_make_study_is_deterministic_and_seeded() -> None:
    opts = SynthOptions(size=96)
    a, b = make_study(9, 4, options=opts), make_study(9, 4, options=opts)
    assert [s.role for s in a.series] == [s.role for s in b.series]
    for sa, sb in zip(a.series, b.series):
        assert sa.pixels.tobytes() == sb.pixels.tobytes()
        assert sa.sop_uids == sb.sop_uids and sa.meta == sb.meta
    assert a.record == b.record
    c = make_study(10, 4, options=opts)
    assert c.study_uid != a.study_uid
    assert not np.array_equal(c.get("t2_sag").pixels[0], a.get("t2_sag").pixels[0])


def test_study_does_not_depend_on_dataset_size_or_workers(tmp_path: Path) -> None:
    one = make_dataset(tmp_path / "one", 1, seed=5, size=48, axial=False)
    two = make_dataset(tmp_path / "two", 2, seed=5, size=48, axial=False, workers=2)
    assert two.workers == 2
    a, b = tmp_path / "one" / "studies" / "study0000", tmp_path / "two" / "studies" / "study0000"
    fa, fb = _files(a), _files(b)
    assert [p.relative_to(a) for p in fa] == [p.relative_to(b) for p in fb]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(fa, fb))  # byte-identical files
    ra = read_annotations(one.annotations, SCHEMA)
    rb = read_annotations(two.annotations, SCHEMA)
    assert ra[0] == rb[0] and len(rb) == 2


# ---------------------------------------------------------------- geometry
@pytest.mark.parametrize("index", [0, 1, 2, 3])
def test_landmarks_sit_on_their_drawn_structure(index: int) -> None:
    study = make_study(2, index, options=SynthOptions(size=160, axial=False))
    t2 = study.get("t2_sag")
    labels = t2.labels[study.annotated_index]
    h, w = labels.shape
    points = study.record.primary.points
    assert [p.identification for p in points] == list(SCHEMA.landmarks)
    for p in points:
        x, y = p.coord
        assert 0.04 * w < x < 0.96 * w and 0.04 * h < y < 0.96 * h, p
        assert labels[int(round(y)), int(round(x))] == study.label_id(p.identification), p
        structure = study.anatomy.structure(p.identification)
        assert isinstance(structure, Disc if p.kind == "disc" else Body)
        assert p.z_index == study.annotated_index


def test_annotated_slice_is_usually_the_middle_frame() -> None:
    plans = [sample_plan(np.random.default_rng(i), i, None, True) for i in range(400)]
    shifted = sum(p.annotated_shift != 0 for p in plans) / len(plans)
    assert 0.04 < shifted < 0.18
    assert {p.annotated_shift for p in plans} == {-1, 0, 1}
    study = make_study(0, 1, options=SynthOptions(size=64, axial=False))
    n = len(study.get("t2_sag").pixels)
    assert study.annotated_index == (n - 1) // 2 + study.plan.annotated_shift


def test_default_protocol_ranges() -> None:
    plans = [sample_plan(np.random.default_rng(i), i, None, True) for i in range(200)]
    for p in plans:
        t2 = p.series["t2_sag"]
        assert 11 <= p.n_sag <= 17
        assert 0.5 <= p.fov / t2.shape[0] <= 0.9  # in-plane spacing (mm)
        assert 384 <= t2.shape[0] <= 512
        assert 80 <= t2.sequence.te <= 120 and 3000 <= t2.sequence.tr <= 5000
        t1 = p.series["t1_sag"].sequence
        assert 8 <= t1.te <= 20 and 400 <= t1.tr <= 700 and t1.ti is None
        assert p.series["stir_sag"].sequence.ti is not None
    encodings = Counter((s.bits, s.slope != 1.0 or s.intercept != 0.0) for p in plans for s in p.series.values())
    assert {k[0] for k in encodings} == {12, 16} and any(k[1] for k in encodings)
    descriptions = {p.series["stir_sag"].description for p in plans}
    assert {"T2_TIRM_SAG", "FST2 SAG"} <= descriptions
    assert any(p.series["t2_sag"].description == "" for p in plans)


# ---------------------------------------------------------------- grades
def test_degenerated_disc_is_darker_and_thinner(disc_variants: dict[str, dict[str, float]]) -> None:
    assert disc_variants["v2"]["t2"] < 0.7 * disc_variants["v1"]["t2"]
    assert disc_variants["v2"]["area"] < 0.9 * disc_variants["v1"]["area"]


def test_disc_contours_reach_into_the_canal_by_grade(disc_variants: dict[str, dict[str, float]]) -> None:
    reach = {g: v["reach"] for g, v in disc_variants.items()}
    assert reach["v1"] < 1.0
    assert reach["v3"] > reach["v1"] + 1.2  # diffuse bulge
    assert reach["v5"] > reach["v1"] + 2.5  # protrusion
    assert reach["v6"] > reach["v5"] + 1.5  # extrusion reaches furthest
    assert disc_variants["v6"]["beyond"] > disc_variants["v1"]["beyond"] + 20  # migrated fragment


def test_asymmetric_bulge_differs_between_sides(disc_variants: dict[str, dict[str, float]]) -> None:
    assert disc_variants["v4"]["asym"] > 2.0
    assert disc_variants["v3"]["asym"] < 1.0


def test_schmorl_node_pushes_disc_material_into_the_endplate(disc_variants: dict[str, dict[str, float]]) -> None:
    assert disc_variants["v7"]["beyond"] > disc_variants["v1"]["beyond"] + 8
    assert disc_variants["v7"]["reach"] < 1.0  # no posterior change


def test_vertebral_degeneration_changes_marrow_signal() -> None:
    opts = SynthOptions(size=160, axial=False, tricky=False)
    v1 = make_study(11, 2, options=opts, grades={"L3": ("v1",)})
    v2 = make_study(11, 2, options=opts, grades={"L3": ("v2",)})
    assert v2.grades["L3"] == ("v2",) and v1.grades["L3"] == ("v1",)
    diffs = []
    for role in ("t1_sag", "t2_sag"):
        a, b = v1.get(role), v2.get(role)
        j = len(a.pixels) // 2
        mask = a.labels[j] == v1.label_id("L3")
        diffs.append(abs(b.pixels[j][mask].mean() - a.pixels[j][mask].mean()) / a.pixels[j][mask].mean())
    assert max(diffs) > 0.05  # Modic change near the endplates


def test_grade_sampling_is_imbalanced_and_multilabel() -> None:
    counts: dict[str, Counter] = defaultdict(Counter)
    multi = 0
    for i in range(300):
        for name, labels in sample_grades(np.random.default_rng(i), SCHEMA).items():
            kind = SCHEMA.kind_of(name)
            counts[kind].update(labels)
            multi += len(labels) > 1
            assert labels and all(g in SCHEMA.grades_of(name) for g in labels)
            if not SCHEMA.kind(kind).multi_label:
                assert len(labels) == 1
    for kind, c in counts.items():
        assert SCHEMA.grade_meaning(kind, c.most_common(1)[0][0]) == "normal"
        assert set(c) == set(SCHEMA.kind(kind).grades)  # every label occurs
    assert multi > 50


def test_forcing_unknown_grades_fails() -> None:
    with pytest.raises(ValueError, match="unknown label"):
        make_study(0, 0, options=CLEAN, grades={"L4-L5": ("v9",)})
    with pytest.raises(ValueError, match="unknown landmark"):
        make_study(0, 0, options=CLEAN, grades={"C3": ("v1",)})


def test_landmarks_come_from_the_schema() -> None:
    data = SCHEMA.to_dict()
    data["landmarks"] = [lm for lm in data["landmarks"] if lm["name"] in ("L1", "L1-L2", "L2")]
    small = Schema.from_dict(data)
    study = make_study(1, 0, schema=small, options=SynthOptions(size=64, axial=False))
    assert [p.identification for p in study.record.primary.points] == ["L1", "L1-L2", "L2"]
    data["landmarks"].append({"name": "C3", "kind": "vertebra"})
    with pytest.raises(ValueError, match="C3"):
        make_study(1, 0, schema=Schema.from_dict(data), options=SynthOptions(size=64))


# ---------------------------------------------------------------- files and tags
def test_annotations_parse_and_match_the_files(dataset: Path) -> None:
    records = read_annotations(dataset / "annotations.json", SCHEMA)
    assert len(records) == 5
    datasets, _ = _read_all(dataset / "studies")
    by_sop = {ds.SOPInstanceUID: ds for ds in datasets}
    for rec in records:
        im = rec.primary
        ds = by_sop[im.instance_uid]
        assert ds.SeriesInstanceUID == im.series_uid and ds.StudyInstanceUID == rec.study_uid
        assert im.pixel_spacing == pytest.approx([float(v) for v in ds.PixelSpacing], rel=1e-4)
        assert [p.identification for p in im.points] == list(SCHEMA.landmarks)
        # zIndex is the annotated image's index among the sagittal slices sorted along the normal
        n = _normal(ds)
        same = [d for d in datasets if d.SeriesInstanceUID == im.series_uid and abs(_normal(d) @ n) > 0.99]
        order = sorted(same, key=lambda d: float(np.array(d.ImagePositionPatient, float) @ n))
        assert [d.SOPInstanceUID for d in order].index(im.instance_uid) == im.points[0].z_index


def test_series_tags_and_rescale_round_trip(dataset: Path) -> None:
    study = make_study(3, 4, options=SynthOptions(size=64))
    datasets, _ = _read_all(dataset / "studies" / study.folder)
    by_sop = {ds.SOPInstanceUID: ds for ds in datasets}
    for s in study.series:
        for j, uid in enumerate(s.sop_uids):
            ds = by_sop[uid]
            assert ds.StudyInstanceUID == study.study_uid and ds.SeriesInstanceUID == s.meta.series_uid
            assert [float(v) for v in ds.ImageOrientationPatient] == pytest.approx(s.geometry.orientation, abs=1e-5)
            assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(s.geometry.positions[j], abs=1e-3)
            assert [float(v) for v in ds.PixelSpacing] == pytest.approx(s.geometry.spacing, rel=1e-5)
            assert ds.InstanceNumber == s.instance_numbers[j]
            real = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
            assert np.allclose(real, s.pixels[j], atol=1e-3)
            if s.role.endswith("_sag"):
                assert abs(_normal(ds)[0]) > 0.99  # sagittal: the normal is left-right
    t2, t1 = study.get("t2_sag"), study.get("t1_sag")
    assert t2.meta.echo_time > 60 and t1.meta.echo_time < 30 and t1.meta.repetition_time < 1000
    assert study.get("stir_sag").meta.inversion_time is not None


def test_tricky_cases_are_present(dataset: Path) -> None:
    assert set(TRICKY_KINDS) == {k for i in SCHEDULE for k in SCHEDULE[i] if i < 5}
    datasets, other = _read_all(dataset / "studies")
    assert {p.name for p in other} & {"README.txt", ".DS_Store"}  # stray non-DICOM files
    assert any(ds.SOPClassUID == BasicTextSRStorage for ds in datasets)  # non-image object
    images = [ds for ds in datasets if "PixelData" in ds]
    syntaxes = {ds.file_meta.TransferSyntaxUID for ds in images}
    assert syntaxes & {RLELossless, JPEG2000Lossless}  # a compressed series that still decodes
    assert all(
        ds.pixel_array.size for ds in images if ds.file_meta.TransferSyntaxUID in (RLELossless, JPEG2000Lossless)
    )
    series: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in images:
        series[ds.SeriesInstanceUID].append(ds)
    # a coronal scout filed inside a sagittal series
    assert any(len({round(abs(_normal(d)[0])) for d in members}) == 2 for members in series.values())
    # a sagittal series whose InstanceNumber runs against the slice positions
    reversed_found = False
    for members in series.values():
        sag = [d for d in members if abs(_normal(d)[0]) > 0.99]
        if len(sag) > 2:
            n = _normal(sag[0])
            order = sorted(sag, key=lambda d: float(np.array(d.ImagePositionPatient, float) @ n))
            numbers = [int(d.InstanceNumber) for d in order]
            reversed_found |= numbers == sorted(numbers, reverse=True)
    assert reversed_found
    # a study where no series has a description or protocol name: weighting must come from TE/TR
    per_study: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    for ds in images:
        per_study[ds.StudyInstanceUID].append(ds)
    assert any(all("SeriesDescription" not in d and "ProtocolName" not in d for d in v) for v in per_study.values())
    # nested folders and files without .dcm occur
    rel = [p.relative_to(dataset / "studies") for p in _files(dataset / "studies")]
    assert any(len(r.parts) > 2 for r in rel) or any(p.suffix != ".dcm" for p in rel)


def test_existing_output_is_not_overwritten_silently(dataset: Path) -> None:
    with pytest.raises(FileExistsError):
        make_dataset(dataset, 1, seed=0, size=48)


def test_cli_writes_studies_annotations_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(["synth", str(out), "--studies", "2", "--seed", "4", "--size", "64", "--preview", "--no-axial"])
    assert rc == 0
    assert "wrote 2 studies" in capsys.readouterr().out
    assert len(read_annotations(out / "annotations.json", SCHEMA)) == 2
    assert (out / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (out / "studies").iterdir()) == ["study0000", "study0001"]
    assert main(["synth", str(out), "--studies", "1", "--size", "64"]) == 2  # refuses a non-empty OUT


def test_unknown_dataset_option_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        make_dataset(tmp_path / "x", 1, seed=0, size=48, colour=True)
