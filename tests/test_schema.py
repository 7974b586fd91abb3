from __future__ import annotations

import pytest
import yaml

from spine_kp.schema import Schema, SchemaError, load_schema


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
