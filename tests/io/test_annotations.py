from __future__ import annotations

import json

import pytest

from spine_kp.io.annotation_parse import AnnotationError, parse_records
from spine_kp.io.annotations import read_annotations, write_annotations
from spine_kp.schema import load_schema

SCHEMA = load_schema()


def _record(points, **extra):
    rec = {
        "studyUid": "1.2.3",
        "version": "v0.1",
        "data": [
            {
                "seriesUid": "1.2.3.4",
                "instanceUid": "1.2.3.4.7",
                "annotation": [{"annotator": 70, "data": {"point": points}}],
            }
        ],
    }
    rec.update(extra)
    return rec


POINTS = [
    {"coord": [120, 80.5], "zIndex": 6, "tag": {"identification": "L1", "vertebra": "v2"}},
    {"coord": [130.25, 95], "zIndex": 6, "tag": {"identification": "L1-L2", "disc": "v5,v2", "vertebra": ""}},
    {"coord": [131, 110], "zIndex": 6, "tag": {"identification": "L2", "vertebra": "", "disc": ""}},
    {
        "coord": [140, 150],
        "zIndex": 6,
        "tag": {"identification": "L2-L3", "disc": "v1"},
        "score": 0.5,
        "extraField": "ignored",
    },
]


def test_parse_multilabel_empty_both_keys_and_scores():
    (rec,) = parse_records([_record(POINTS, comment="extra fields ignored")], SCHEMA)
    assert rec.study_uid == "1.2.3" and rec.primary.instance_uid == "1.2.3.4.7"
    l1, disc, l2, disc2 = rec.points
    assert l1.kind == "vertebra" and l1.grades == ("v2",) and l1.coord == (120, 80.5) and l1.z_index == 6
    assert disc.kind == "disc" and disc.grades == ("v5", "v2") and disc.other_tags == (("vertebra", ""),)
    assert l2.grades == () and l2.other_tags == (("disc", ""),)
    assert disc2.score == 0.5 and l1.score is None


def test_unknown_identification_and_grade_warn_and_skip(caplog):
    pts = POINTS[:1] + [
        {"coord": [1, 2], "tag": {"identification": "T11-T12", "disc": "v1"}},
        {"coord": [3, 4], "tag": {"identification": "L3", "vertebra": "v9"}},
    ]
    (rec,) = parse_records([_record(pts)], SCHEMA)
    assert [p.identification for p in rec.points] == ["L1", "L3"]
    assert rec.points[1].grades == ()
    assert any("T11-T12" in w for w in rec.warnings) and any("'v9'" in w for w in rec.warnings)
    assert "T11-T12" in caplog.text


def test_round_trip_is_lossless(tmp_path):
    second_block = {"annotator": 71, "data": {"point": POINTS[:1]}}
    rec = _record(POINTS, pixelSpacing=[0.6, 0.7])
    rec["data"][0]["annotation"].append(second_block)
    rec["data"].append({"seriesUid": "9", "instanceUid": "9.1", "annotation": []})
    src = tmp_path / "gt.json"
    src.write_text(json.dumps([rec]))
    records = read_annotations(src, SCHEMA)
    out = tmp_path / "again.json"
    write_annotations(out, records)
    again = read_annotations(out, SCHEMA)
    assert again == records
    raw = json.loads(out.read_text())
    pts = raw[0]["data"][0]["annotation"][0]["data"]["point"]
    assert pts[1]["tag"] == {"identification": "L1-L2", "disc": "v5,v2", "vertebra": ""}
    assert pts[0]["coord"] == [120, 80.5] and pts[0]["zIndex"] == 6 and "score" not in pts[0]
    assert pts[3]["score"] == 0.5
    assert raw[0]["data"][0]["pixelSpacing"] == [0.6, 0.7]
    assert [b["annotator"] for b in raw[0]["data"][0]["annotation"]] == [70, 71]
    assert raw[0]["data"][1]["instanceUid"] == "9.1" and raw[0]["version"] == "v0.1"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda r: r["data"][0]["annotation"][0]["data"]["point"][1].pop("coord"),
            r"record 0 \(study 1.2.3\): data\[0\].annotation\[0\] point 1 has no 'coord'",
        ),
        (lambda r: r.pop("studyUid"), r"record 0: missing 'studyUid'"),
        (lambda r: r["data"][0].pop("instanceUid"), r"data\[0\] has no 'instanceUid'"),
        (
            lambda r: r["data"][0]["annotation"][0]["data"]["point"][0]["tag"].pop("identification"),
            r"point 0: tag has no 'identification'",
        ),
        (lambda r: r["data"][0]["annotation"][0]["data"]["point"][0].update(coord=[1]), r"'coord' must be \[x, y\]"),
        (lambda r: r["data"][0]["annotation"][0]["data"]["point"][0].update(score=1.5), r"'score' must be a number"),
        (lambda r: r["data"][0]["annotation"][0]["data"]["point"][0].update(zIndex="5"), r"'zIndex' must be an int"),
        (lambda r: r.update(pixelSpacing=[0.5]), r"'pixelSpacing' must be"),
        (lambda r: r.update(data={}), r"'data' must be a list"),
    ],
)
def test_validation_errors_name_record_study_and_field(mutate, message):
    rec = json.loads(json.dumps(_record(POINTS)))
    mutate(rec)
    with pytest.raises(AnnotationError, match=message):
        parse_records([rec], SCHEMA, source="gt.json")


def test_file_level_errors(tmp_path):
    p = tmp_path / "x.json"
    p.write_text("{not json")
    with pytest.raises(AnnotationError, match="x.json: not valid JSON"):
        read_annotations(p, SCHEMA)
    p.write_text("{}")
    with pytest.raises(AnnotationError, match="top level must be a list"):
        read_annotations(p, SCHEMA)
    with pytest.raises(AnnotationError, match="file not found"):
        read_annotations(tmp_path / "none.json", SCHEMA)
