"""Fuzzing the annotation reader: whatever is done to a valid file, the result is the records or an AnnotationError
that names the file and, inside a record, the record index and the field; never another exception."""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path
from typing import Any

import pytest
from fuzz_phantoms import SCHEMA, fuzz_settings
from hypothesis import event, example, given
from hypothesis import strategies as st

from spine_kp.io.annotation_parse import AnnotationError, parse_records
from spine_kp.io.annotations import read_annotations
from spine_kp.io.data_checks import check_against_data
from spine_kp.io.dicom import InstanceInfo, SeriesInfo, StudyIndex


def _point(ident: str, x: float, y: float, grade: str = "v1", z: int = 7, score: float | None = None) -> dict:
    kind = SCHEMA.kind_of(ident)
    out: dict[str, Any] = {"coord": [x, y], "zIndex": z, "tag": {"identification": ident, kind: grade}}
    if score is not None:
        out["score"] = score
    return out


def _record(uid: str, blocks: list[tuple[Any, list[dict]]], **extra: Any) -> dict:
    entry = {"seriesUid": f"{uid}.1", "instanceUid": f"{uid}.1.7", "pixelSpacing": [0.6, 0.6],
             "annotation": [{"annotator": a, "data": {"point": pts}} for a, pts in blocks]}  # fmt: skip
    return {"studyUid": uid, "version": "v0.1", "data": [entry], **extra}


# three valid records: one annotator; two annotators placing the same landmarks (allowed); a prediction with one
# point per grade alternative (scored points may repeat an identification)
BASE = [
    _record("1.1", [(70, [_point("L1", 30, 20, "v2"), _point("L1-L2", 31, 25, "v2,v5"), _point("L2", 32, 30, ""),
                          _point("L2-L3", 33, 35), _point("L3", 34, 40), _point("L5-S1", 35, 60, "v3")])]),
    _record("1.2", [(70, [_point("L4", 40, 50), _point("L4-L5", 41, 55)]),
                    (71, [_point("L4", 40.5, 50.5, "v2"), _point("L4-L5", 41, 55.5, "v1")])], pixelSpacing=[0.7, 0.7]),
    _record("1.3", [(None, [_point("T12", 20, 10, "v1", score=0.9), _point("T12", 20, 10, "v2", score=0.1),
                            _point("T12-L1", 21, 15, "v4", score=0.5)])]),
]  # fmt: skip

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([10**400, -(10**400), -1, 0, 2**63])
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
    | st.sampled_from(["L1", "L3", "T12-L1", "v1", "v2,v5", "", "T11-T12"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


@st.composite
def structural_mutations(draw: st.DrawFn) -> tuple[list, list, str]:
    """(mutated copy of BASE, path to the changed place, operation): one value replaced, deleted, added or copied."""
    obj = copy.deepcopy(BASE)
    path: list = []
    node: Any = obj
    while isinstance(node, (dict, list)) and node and draw(st.integers(0, 9)) < 8:  # mostly descend: reach points
        key = draw(st.sampled_from(sorted(node))) if isinstance(node, dict) else draw(st.integers(0, len(node) - 1))
        path.append(key)
        node = node[key]
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    op = draw(st.sampled_from(["replace", "delete", "add", "copy"])) if path else "replace"
    if not path:  # the whole file
        return draw(JSON_VALUES), path, "replace"
    key = path[-1]
    if op == "replace":
        parent[key] = draw(JSON_VALUES)
    elif op == "delete":
        del parent[key]
    elif op == "add" and isinstance(node, (dict, list)):
        if isinstance(node, dict):
            new_key = draw(st.text(max_size=6) | st.sampled_from(["coord", "score", "zIndex", "tag", "disc"]))
            node[new_key] = draw(JSON_VALUES)
            path.append(new_key)
        else:
            at = draw(st.integers(0, len(node)))
            node.insert(at, draw(JSON_VALUES))
            path.append(at)
    elif op == "copy" and isinstance(parent, list):  # e.g. a point placed twice
        parent.insert(key + 1, copy.deepcopy(parent[key]))
    else:  # nothing to add to, or no list to copy in: replace instead
        op = "replace"
        parent[key] = draw(JSON_VALUES)
    return obj, path, op


def _locations(path: list) -> list[str]:
    """What an error caused at ``path`` must name: the record, then the entry, block and point it lies in."""
    names = [f"record {path[0]}"] if path and isinstance(path[0], int) else []
    if len(path) >= 3 and path[1] == "data" and isinstance(path[2], int):
        names.append(f"data[{path[2]}]")
    if len(path) >= 5 and path[3] == "annotation" and isinstance(path[4], int):
        names.append(f"annotation[{path[4]}]")
    if len(path) >= 8 and path[5:7] == ["data", "point"] and isinstance(path[7], int):
        names.append(f"point {path[7]}")
    return names


@fuzz_settings(170)
@given(mutation=structural_mutations())
def test_a_mutated_annotation_file_is_read_or_names_record_and_field(tmp_path: Path, mutation) -> None:
    obj, path, op = mutation
    src = tmp_path / "gt.json"
    src.write_text(json.dumps(obj))  # NaN and Infinity are written as the literals Python's reader accepts
    try:
        records = read_annotations(src, SCHEMA)
    except AnnotationError as exc:
        message = str(exc)
        event(f"AnnotationError ({op})")
        assert message.startswith(f"{src}: ") and "\n" not in message
        for name in _locations(path):
            assert name in message, (name, message)
        field = path[-1] if path and isinstance(path[-1], str) else None
        if field is not None and len(path) >= 2:  # the field itself, unless what it made is a second placement
            assert field in message or "placed a second time" in message, (field, message)
        return
    event(f"read ({op})")
    assert isinstance(records, list)
    if path and isinstance(path[0], int) and len(path) > 1:  # a change inside one record leaves the others alone
        base = parse_records(BASE, SCHEMA)
        assert [r for i, r in enumerate(records) if i != path[0]] == [r for i, r in enumerate(base) if i != path[0]]


@st.composite
def byte_mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(json.dumps(BASE).encode())
    kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
    if kind == "truncate":
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "flip":
        for at, mask in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 255)), min_size=1)):
            data[at] ^= mask
        return bytes(data)
    at = draw(st.integers(0, len(data)))
    return bytes(data[:at]) + draw(st.binary(min_size=1, max_size=16)) + bytes(data[at:])


@fuzz_settings(80)
@given(content=byte_mutations())
@example(content=b"")
@example(content=b"\xef\xbb\xbf[]")  # a byte order mark
@example(content=b"\xff\xfe[\x00]\x00")  # UTF-16
@example(content=b"[" * 100_000)  # nested deeper than the parser recurses
@example(content=b"[" + b"1" * 5000 + b"]")  # an integer of more digits than Python converts
@example(content=b'[{"studyUid": "1", "data": [{"seriesUid": "1", "instanceUid": "1", "annotation": '
         b'[{"data": {"point": [{"coord": [1e999, NaN], "tag": {"identification": "L1"}}]}}]}]}]')  # fmt: skip
def test_damaged_bytes_give_records_or_an_error_naming_the_file(tmp_path: Path, content: bytes) -> None:
    src = tmp_path / "gt.json"
    src.write_bytes(content)
    try:
        read_annotations(src, SCHEMA)
    except AnnotationError as exc:
        assert str(exc).startswith(f"{src}: ") and "\n" not in str(exc)


def test_a_folder_given_as_annotation_file_is_an_annotation_error(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match=f"^{tmp_path}: is a folder, not a file"):
        read_annotations(tmp_path, SCHEMA)


# ---- values no annotation can hold -------------------------------------------------------------------------------

BAD_VALUES = {
    "coord": st.sampled_from([[math.nan, 1], [1, math.inf], [-math.inf, 0], [10**400, 1], [1, "2"], [1], [True, 2]]),
    "zIndex": st.one_of(st.integers(max_value=-1), st.sampled_from([1.5, math.nan, "3", True])),
    "score": st.one_of(st.sampled_from([math.nan, math.inf, -0.1, 1.01, 10**400, "0.5"])),
    "pixelSpacing": st.sampled_from([[math.nan, 1], [0, 1], [-1, 1], [1, math.inf], [1], "0.6"]),
}


@fuzz_settings(60)
@given(field=st.sampled_from(sorted(BAD_VALUES)), data=st.data(), record=st.integers(0, 2))
def test_values_no_annotation_can_hold_are_errors_naming_the_field(field: str, data, record: int) -> None:
    obj = copy.deepcopy(BASE)
    value = data.draw(BAD_VALUES[field])
    target = obj[record]["data"][0] if field == "pixelSpacing" else obj[record]["data"][0]["annotation"][0]["data"]
    if field != "pixelSpacing":
        target = target["point"][data.draw(st.integers(0, 1))]
    target[field] = value
    with pytest.raises(AnnotationError) as info:
        parse_records(json.loads(json.dumps(obj)), SCHEMA, source="gt.json")
    assert str(info.value).startswith(f"gt.json: record {record} ") and f"'{field}'" in str(info.value)


@fuzz_settings(40)
@given(
    record=st.sampled_from([0, 1]),
    first=st.integers(0, 5),
    second=st.integers(0, 6),
    scored=st.booleans(),
    shift=st.floats(-50, 50),
)
def test_one_annotator_placing_an_identification_twice_is_an_error(
    record: int, first: int, second: int, scored: bool, shift: float
) -> None:
    """A second point of the same identification by the same annotator, anywhere in the block and anywhere in the
    image (also on the first one); a scored (predicted) one is allowed."""
    obj = copy.deepcopy(BASE)
    points = obj[record]["data"][0]["annotation"][0]["data"]["point"]
    first, second = first % len(points), second % (len(points) + 1)
    twin = copy.deepcopy(points[first])
    twin["coord"] = [twin["coord"][0] + shift, twin["coord"][1]]
    if scored:
        for p in (points[first], twin):
            p["score"] = 0.5
    points.insert(second, twin)
    if scored:
        parse_records(obj, SCHEMA)
        return
    with pytest.raises(AnnotationError, match=rf"^gt.json: record {record} .*placed a second time") as info:
        parse_records(obj, SCHEMA, source="gt.json")
    ident = twin["tag"]["identification"]
    assert f"{ident} placed a second time by annotator 70" in str(info.value)
    assert str(info.value).count("annotation[0] point ") == 2  # both places named


# ---- values only the DICOM data can refute: counted warnings -----------------------------------------------------


def _study(uid: str, rows: int, cols: int, n: int) -> StudyIndex:
    instances = tuple(InstanceInfo(f"/x/{uid}/{i}", f"{uid}.1.{i}", i + 1, float(i)) for i in range(n))
    series = SeriesInfo(
        uid, f"{uid}.1", "T2", "sagittal", "T2", instances, (), (0.6, 0.6), rows, cols, 100.0, 3000.0, ""
    )
    return StudyIndex(uid, (series,), f"/x/{uid}")


COORD = st.one_of(st.floats(-0.5, 63.5), st.floats(-1e6, 1e6), st.sampled_from([-0.5, -0.51, 63.5, 63.51, 1e300]))


@fuzz_settings(40)
@given(
    points=st.lists(st.tuples(st.sampled_from(SCHEMA.landmarks), COORD, COORD, st.integers(0, 40)), max_size=12,
                    unique_by=lambda t: t[0]),
)  # fmt: skip
def test_points_outside_the_image_and_z_beyond_the_series_are_counted(points, caplog) -> None:
    """64 x 48 images (rows x cols) in series of 15: each point outside, each zIndex >= 15 is counted once."""
    obj = [_record("2.1", [(70, [_point(i, x, y, z=z) for i, x, y, z in points])])]
    obj[0]["data"][0]["instanceUid"] = "2.1.1.7"
    records = parse_records(obj, SCHEMA)
    outside = sum(not (-0.5 <= x <= 47.5 and -0.5 <= y <= 63.5) for _, x, y, _ in points)
    beyond = sum(z >= 15 for *_, z in points)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="spine_kp.io.data_checks"):
        problems = check_against_data(records, {"2.1": _study("2.1", 64, 48, 15)})
    assert len(problems) == outside + beyond
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert (f"{outside} annotated point(s) lie outside their image" in warned) == (outside > 0)
    assert (f"{beyond} zIndex value(s) lie beyond their series" in warned) == (beyond > 0)
    assert len(caplog.records) == (1 if problems else 0)
