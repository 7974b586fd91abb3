from __future__ import annotations

import pytest
import yaml

from spine_kp.schema import (
    MEANINGS,
    KindSpec,
    Schema,
    SchemaError,
    load_schema,
    packaged_schema,
    packaged_schemas,
)


def test_default_schema_matches_spec():
    s = load_schema()
    assert s.landmarks_of_kind("vertebra") == ("T12", "L1", "L2", "L3", "L4", "L5")
    assert s.landmarks_of_kind("disc") == ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    # cranio-caudal order alternates vertebra / disc
    assert s.landmarks[:4] == ("T12", "T12-L1", "L1", "L1-L2")
    assert s.kind("vertebra").grades == ("v1", "v2") and not s.kind("vertebra").multi_label
    assert s.kind("disc").grades == tuple(f"v{i}" for i in range(1, 8)) and s.kind("disc").multi_label
    assert s.classes[0] == ("vertebra", "v1") and len(s.classes) == 9
    assert s.kind_of("L4-L5") == "disc" and s.index("L5-S1") == 11


def test_unknown_names_list_the_valid_ones():
    s = load_schema("default")
    with pytest.raises(KeyError, match="T12-L1"):
        s.index("T11-T12")
    with pytest.raises(KeyError, match="vertebra"):
        s.kind("rib")


def test_other_schema_needs_no_code(tmp_path):
    data = {
        "name": "cervical",
        "kinds": {"vertebra": {"grades": {"a": "ok", "b": "bad"}}},
        "landmarks": [{"name": "C2", "kind": "vertebra"}, {"name": "C3", "kind": "vertebra"}],
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(data))
    s = load_schema(p)
    assert s.landmarks == ("C2", "C3") and s.classes == (("vertebra", "a"), ("vertebra", "b"))
    assert Schema.from_dict(s.to_dict()) == s


def test_bad_schema_errors_name_the_problem(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(
        yaml.safe_dump({"kinds": {"disc": {"grades": {"v1": "n"}}}, "landmarks": [{"name": "X", "kind": "rib"}]})
    )
    with pytest.raises(SchemaError, match="unknown kind 'rib'"):
        load_schema(p)
    p.write_text(yaml.safe_dump({"kinds": {}, "landmarks": [], "colour": 1}))
    with pytest.raises(SchemaError, match="colour"):
        load_schema(p)
    with pytest.raises(SchemaError, match="does not exist"):
        load_schema(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- grade meanings
def test_packaged_schemas_declare_a_meaning_for_every_grade():
    assert {"default", "tianchi"} <= set(packaged_schemas())
    for name in packaged_schemas():
        s = load_schema(name)
        for k in s.kinds:
            assert len(k.meanings) == len(k.grades) and all(m in MEANINGS for m in k.meanings), (name, k.name)
            assert "normal" in k.meanings, (name, k.name)


def test_default_schema_meanings():
    s = load_schema()
    assert s.kind("vertebra").meanings == ("normal", "degeneration")
    assert s.kind("disc").meanings == (
        "normal", "degeneration", "diffuse_bulge", "asymmetric_bulge", "protrusion", "extrusion", "herniation"
    )  # fmt: skip
    assert s.grade_meaning("disc", "v5") == "protrusion" and s.kind("disc").descriptions[1] == "degenerative change"
    with pytest.raises(KeyError, match="v8"):
        s.grade_meaning("disc", "v8")


def test_tianchi_schema_is_the_competition_label_set():
    s = load_schema("tianchi")
    assert s.name == "tianchi"
    assert s.landmarks_of_kind("vertebra") == ("L1", "L2", "L3", "L4", "L5")
    assert s.landmarks_of_kind("disc") == ("T12-L1", "L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")
    # cranio-caudal order: each disc sits between the vertebrae it names
    assert s.landmarks == ("T12-L1", "L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5", "L5", "L5-S1")
    assert s.kind("vertebra").grades == ("v1", "v2") and not s.kind("vertebra").multi_label
    assert s.kind("vertebra").meanings == ("normal", "degeneration")
    disc = s.kind("disc")
    assert disc.multi_label and disc.grades == ("v1", "v2", "v3", "v4", "v5")
    assert disc.meanings == ("normal", "bulge", "protrusion", "extrusion", "schmorl_node")
    assert len(s.classes) == 7


def test_meanings_survive_to_dict_and_from_dict():
    s = load_schema("tianchi")
    back = Schema.from_dict(s.to_dict())
    assert back == s and back.grade_meaning("disc", "v5") == "schmorl_node"
    assert back.kind("disc").descriptions[4] == "Schmorl's node"


def test_old_schema_dicts_without_meanings_still_load():
    """Checkpoints written before grades had meanings store ``grades: {label: description}``."""
    old = {
        "name": "lumbar_t12_s1",
        "kinds": {
            "vertebra": {"multi_label": False, "grades": {"v1": "normal", "v2": "degenerative"}},
            "disc": {"multi_label": True, "grades": {"v1": "normal", "v2": "degenerative change"}},
        },
        "landmarks": [{"name": "L1", "kind": "vertebra"}, {"name": "L1-L2", "kind": "disc"}],
    }
    s = Schema.from_dict(old, source="old.ckpt schema")
    assert s.kind("disc").grades == ("v1", "v2") and s.kind("disc").descriptions == ("normal", "degenerative change")
    assert s.kind("disc").meanings == (None, None) and s.grade_meaning("vertebra", "v2") is None
    assert Schema.from_dict(s.to_dict()) == s and s.to_dict()["kinds"] == old["kinds"]  # written back as it was


def test_description_defaults_to_the_meaning(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "kinds:\n  disc:\n    grades:\n      a: {meaning: normal}\n      b: {meaning: asymmetric_bulge}\n"
        "landmarks:\n  - {name: L4-L5, kind: disc}\n"
    )
    k = load_schema(p).kind("disc")
    assert k.meanings == ("normal", "asymmetric_bulge") and k.descriptions == ("normal", "asymmetric bulge")


@pytest.mark.parametrize(
    ("grade", "message"),
    [
        ({"meaning": "bulging"}, r"kinds\.disc\.grades\.v2\.meaning: unknown meaning 'bulging'; known meanings: .*"),
        ({"description": "bulge"}, r"kinds\.disc\.grades\.v2: no 'meaning'"),
        ({"meaning": "bulge", "colour": "red"}, r"kinds\.disc\.grades\.v2: unknown key\(s\) \['colour'\]"),
    ],
    ids=["unknown-meaning", "no-meaning", "unknown-key"],
)
def test_bad_grade_entries_name_the_file_and_field(tmp_path, grade, message):
    p = tmp_path / "mine.yaml"
    data = {
        "kinds": {"disc": {"grades": {"v1": {"meaning": "normal"}, "v2": grade}}},
        "landmarks": [{"name": "L4-L5", "kind": "disc"}],
    }
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(SchemaError, match=message) as info:
        load_schema(p)
    assert str(info.value).startswith(f"{p}: ")


def test_unknown_meaning_is_rejected_also_in_code():
    with pytest.raises(SchemaError, match="unknown grade meaning"):
        KindSpec("disc", ("v1",), ("normal",), True, ("sick",))


def test_unknown_schema_name_lists_the_packaged_ones():
    with pytest.raises(SchemaError, match="packaged schemas: .*default.*tianchi"):
        load_schema("tianchii")


def test_packaged_schema_is_found_by_file_name_or_schema_name_and_never_by_path(tmp_path):
    """Prediction files name their schema (``"schema": "lumbar_t12_s1"``); ``evaluate`` resolves it this way."""
    default = load_schema()
    assert packaged_schema("default") == default and packaged_schema(default.name) == default
    assert packaged_schema("tianchi") == load_schema("tianchi")
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump({**default.to_dict(), "name": "own"}))
    for name in ("own", str(own), str(tmp_path / "own"), "../schema/default", "nope", ""):
        assert packaged_schema(name) is None, name


@pytest.mark.parametrize("name", packaged_schemas())
def test_the_schema_name_survives_to_dict_and_from_dict(name):
    s = load_schema(name)
    assert Schema.from_dict(s.to_dict()).name == s.name
    assert packaged_schema(s.name) == s  # the name written into predictions finds the schema again


def test_a_schema_without_a_name_is_named_after_its_file(tmp_path):
    data = load_schema("tianchi").to_dict()
    del data["name"]
    p = tmp_path / "spine_set.yaml"
    p.write_text(yaml.safe_dump(data))
    assert load_schema(p).name == "spine_set"
