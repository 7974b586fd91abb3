"""Phantom grades are drawn by meaning (spine_kp.synth.grades): every meaning shows on its structure, a meaning
the phantom cannot draw is an error naming it, and the tianchi schema gets its own (multi-label) phantoms."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import ndimage

from spine_kp.cli.main import main
from spine_kp.schema import MEANINGS, Schema, load_schema
from spine_kp.synth import SynthOptions, SynthStudy, make_study
from spine_kp.synth.grades import GRADE_LOOKS, grade_looks, sample_grades
from spine_kp.types import Point

OPTS = SynthOptions(size=160, axial=False, tricky=False)
FORCED = {"disc": "L3-L4", "vertebra": "L3"}  # the structure each kind's meanings are drawn on
REGION_MM = 10.0  # a meaning changes pixels only this close to its structure (extrusion migrates furthest)
# Meanings that change the structure's height: the levels below move, so pixels change outside the region too.
MOVES_LEVELS = {("disc", "degeneration"), ("vertebra", "degeneration")}


def _all_meanings_schema() -> Schema:
    """The default landmarks, each kind graded with every meaning the phantom draws (label = meaning name)."""
    data = load_schema().to_dict()
    data["name"] = "all_meanings"
    for kind in ("vertebra", "disc"):
        data["kinds"][kind]["grades"] = {m: {"meaning": m} for m in GRADE_LOOKS[kind]}
    return Schema.from_dict(data)


ALL = _all_meanings_schema()
DRAWN = [(kind, m) for kind in ("disc", "vertebra") for m in GRADE_LOOKS[kind] if m != "normal"]


def _study(kind: str, meaning: str) -> SynthStudy:
    grades = {name: ("normal",) for name in FORCED.values()}
    grades[FORCED[kind]] = (meaning,)
    return make_study(11, 2, schema=ALL, options=OPTS, grades=grades)


def _point(study: SynthStudy, name: str) -> Point:
    return next(p for p in study.record.points if p.identification == name)


@pytest.fixture(scope="module")
def normal() -> SynthStudy:
    return _study("disc", "normal")


def _region(study: SynthStudy, name: str) -> np.ndarray:
    """(S, H, W) T2 sagittal voxels within REGION_MM of structure ``name``, slice by slice."""
    s = study.get("t2_sag")
    step = int(round(REGION_MM / min(s.geometry.spacing)))
    return np.stack([ndimage.binary_dilation(lab == study.label_id(name), iterations=step) for lab in s.labels])


def _changed(a: SynthStudy, b: SynthStudy) -> np.ndarray:
    """(S, H, W) T2 sagittal voxels that differ by more than 5 % of the normal image's bright end."""
    pa, pb = (x.get("t2_sag").pixels.astype(np.float64) for x in (a, b))
    return np.abs(pa - pb) > 0.05 * np.percentile(pa, 99)


def test_every_vocabulary_meaning_is_drawn_on_some_structure() -> None:
    drawn = {m for table in GRADE_LOOKS.values() for m in table}
    assert drawn == set(MEANINGS)
    assert all(look.normal == (m == "normal") for table in GRADE_LOOKS.values() for m, look in table.items())


@pytest.mark.parametrize(("kind", "meaning"), DRAWN, ids=[f"{k}-{m}" for k, m in DRAWN])
def test_each_meaning_is_drawn_on_its_structure(normal: SynthStudy, kind: str, meaning: str) -> None:
    study = _study(kind, meaning)
    name = FORCED[kind]
    assert study.grades[name] == (meaning,) and _point(study, name).grades == (meaning,)
    changed = _changed(normal, study)
    region = _region(normal, name) | _region(study, name)
    assert (changed & region).sum() >= 5, "the meaning does not show on its structure"
    if (kind, meaning) not in MOVES_LEVELS:
        assert not (changed & ~region).any(), "the meaning changes pixels away from its structure"
    else:  # the structure's own signal changes (desiccated disc, Modic marrow)
        j, jn = study.annotated_index, normal.annotated_index
        means = [
            x.get(role).pixels[i][x.get(role).labels[i] == x.label_id(name)].mean()
            for role in ("t2_sag", "t1_sag")
            for x, i in ((normal, jn), (study, j))
        ]
        assert max(abs(means[1] - means[0]) / means[0], abs(means[3] - means[2]) / means[2]) > 0.05


def test_default_schema_grades_map_to_their_meanings_looks() -> None:
    """The default schema's phantoms are those of its meanings (so they stay what they were before meanings)."""
    schema = load_schema()
    for kind in ("vertebra", "disc"):
        looks = grade_looks(schema, kind)
        assert list(looks) == list(schema.kind(kind).grades)
        for grade, look in looks.items():
            assert look is GRADE_LOOKS[kind][schema.grade_meaning(kind, grade)]


def test_default_schema_sampling_is_pinned() -> None:
    """Seeded default-schema grades are part of the data set other benchmarks use: they must not drift.

    The counts are those of the generator before it drew by meaning (keyed by label then).
    """
    schema = load_schema()
    counts = Counter(
        (schema.kind_of(name), g)
        for i in range(40)
        for name, labels in sample_grades(np.random.default_rng(i), schema).items()
        for g in labels
    )
    assert counts == {
        ("disc", "v1"): 127, ("disc", "v2"): 62, ("disc", "v3"): 25, ("disc", "v4"): 16, ("disc", "v5"): 18,
        ("disc", "v6"): 6, ("disc", "v7"): 12, ("vertebra", "v1"): 171, ("vertebra", "v2"): 69,
    }  # fmt: skip


def _schema_with(kind: str, meanings: dict[str, str | None]) -> Schema:
    data = load_schema().to_dict()
    # None: the older format, a description without a meaning
    data["kinds"][kind]["grades"] = {g: "text" if m is None else {"meaning": m} for g, m in meanings.items()}
    return Schema.from_dict(data, source="test schema")


@pytest.mark.parametrize(
    ("kind", "meanings", "message"),
    [
        ("vertebra", {"v1": "normal", "v2": "protrusion"}, r"'v2'.*cannot draw meaning 'protrusion' on a vertebra"),
        ("disc", {"v1": None, "v2": None}, r"kind 'disc', grade 'v1' declares no meaning"),
        ("disc", {"v1": "bulge", "v2": "protrusion"}, r"no grade meaning 'normal'"),
    ],
    ids=["undrawable", "no-meaning", "no-normal"],
)
def test_grades_the_phantom_cannot_draw_are_errors(kind: str, meanings: dict[str, str | None], message: str) -> None:
    schema = _schema_with(kind, meanings)
    with pytest.raises(ValueError, match=message):
        make_study(0, 0, schema=schema, options=SynthOptions(size=64, axial=False))


# ---------------------------------------------------------------- tianchi
def test_tianchi_phantom_grades_are_its_labels_and_discs_are_multi_label() -> None:
    schema = load_schema("tianchi")
    discs: Counter[tuple[str, ...]] = Counter()
    for i in range(200):
        grades = sample_grades(np.random.default_rng(i), schema)
        assert tuple(grades) == schema.landmarks
        for name, labels in grades.items():
            assert labels and set(labels) <= set(schema.grades_of(name))
            if schema.kind_of(name) == "disc":
                discs[labels] += 1
            else:
                assert len(labels) == 1
    assert {g for labels in discs for g in labels} == set(schema.kind("disc").grades)  # every label occurs
    assert discs.most_common(1)[0][0] == ("v1",)
    assert discs[("v2", "v5")] >= 20  # bulge with a Schmorl's node, common in the competition's data


def test_tianchi_study_draws_bulge_and_schmorl_node_together() -> None:
    schema = load_schema("tianchi")
    opts = SynthOptions(size=128, axial=False, tricky=False)
    normal = make_study(4, 1, schema=schema, options=opts, grades={"L4-L5": ("v1",)})
    both = make_study(4, 1, schema=schema, options=opts, grades={"L4-L5": ("v5", "v2")})
    assert _point(both, "L4-L5").grades == ("v2", "v5")  # schema order
    looks = (normal.anatomy.structure("L4-L5").look, both.anatomy.structure("L4-L5").look)
    assert looks[1].schmorl > 3.0 and looks[0].schmorl == 0.0 and looks[1].bulge > looks[0].bulge + 1.0


def test_cli_names_the_file_and_field_of_an_unknown_or_undrawable_meaning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = load_schema("tianchi").to_dict()
    data["kinds"]["disc"]["grades"]["v2"] = {"meaning": "bulging"}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(data))
    assert main(["synth", str(tmp_path / "out"), "--studies", "1", "--size", "64", "--schema", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "kinds.disc.grades.v2.meaning: unknown meaning 'bulging'" in err

    data["kinds"]["disc"]["grades"]["v2"] = {"meaning": "bulge"}
    data["kinds"]["vertebra"]["grades"]["v2"] = {"meaning": "schmorl_node"}  # drawn on discs only
    bad.write_text(yaml.safe_dump(data))
    assert main(["synth", str(tmp_path / "out"), "--studies", "1", "--size", "64", "--schema", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "grade 'v2'" in err and "cannot draw meaning 'schmorl_node' on a vertebra" in err
