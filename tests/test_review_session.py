"""The review's state without a server: landmark checks, least-certain order, the journal, REVIEWED.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from review_data import SCORES, WEAK, make_predictions, study_uids

from spine_kp.cli.main import main as spine_kp_main
from spine_kp.data.dataset import resolve_records
from spine_kp.errors import OutputExistsError
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import scan
from spine_kp.review.journal import JournalError, file_digest, journal_path, read_journal
from spine_kp.review.marks import BadBody, Geometry, Mark, parse_marks
from spine_kp.review.priority import rank, study_priority
from spine_kp.review.session import StaleVersion, open_session
from spine_kp.schema import load_schema

SCHEMA = load_schema()
GEOMETRY = Geometry(width=100, height=80, num_slices=9)


def _mark(ident: str, y: float, score: float | None = 0.9, grades: tuple[str, ...] = ()) -> Mark:
    return Mark(ident, SCHEMA.kind_of(ident), 50.0, y, 4, grades, score)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "L9"}, r"landmarks\[0\]\.id: 'L9' is not a landmark of schema"),
        ({"grades": ["v5"]}, r"landmarks\[0\]\.grades: 'v5' is not a grade of L1 \(vertebra: v1, v2\)"),
        ({"grades": ["v1", "v2"]}, r"landmarks\[0\]\.grades: a vertebra carries one grade"),
        ({"x": 99.6}, r"landmarks\[0\]\.x: 99.6 is outside the image \(0 to 99 pixels\)"),
        ({"y": -0.7}, r"landmarks\[0\]\.y: -0.7 is outside the image"),
        ({"y": float("nan")}, r"landmarks\[0\]\.y: nan is outside the image"),
        ({"z": 9}, r"landmarks\[0\]\.z: 9 is not a slice of the series \(0 to 8\)"),
        ({"z": 1.0}, r"landmarks\[0\]\.z: 1.0 is not a slice"),
        ({"kind": "disc"}, r"landmarks\[0\]\.kind: L1 is a vertebra, not 'disc'"),
        ({"score": 2}, r"landmarks\[0\]\.score: must be a number in \[0, 1\]"),
    ],
)
def test_a_landmark_that_breaks_the_contract_is_refused_naming_its_field(change, message) -> None:
    good = {"id": "L1", "kind": "vertebra", "x": 10.0, "y": 20.0, "z": 3, "grades": ["v2"], "score": 0.5}
    assert parse_marks([good], SCHEMA, GEOMETRY) == (Mark("L1", "vertebra", 10.0, 20.0, 3, ("v2",), 0.5),)
    with pytest.raises(BadBody, match=message):
        parse_marks([{**good, **change}], SCHEMA, GEOMETRY)


def test_marks_come_back_in_schema_order_and_an_id_twice_is_refused() -> None:
    raw = [{"id": lm, "x": 1, "y": 2, "z": 0, "grades": []} for lm in ("L5-S1", "T12", "L3")]
    assert [m.id for m in parse_marks(raw, SCHEMA, GEOMETRY)] == ["T12", "L3", "L5-S1"]
    disc = {"id": "L4-L5", "x": 1, "y": 2, "z": 0, "grades": ["v5", "v2"]}  # multi-label, file order kept
    assert parse_marks([disc], SCHEMA, GEOMETRY)[0].grades == ("v5", "v2")
    with pytest.raises(BadBody, match=r"landmarks\[3\]\.id: L3 is placed twice"):
        parse_marks([*raw, raw[2]], SCHEMA, GEOMETRY)


def test_uncertainty_follows_the_lowest_score_the_flip_shift_and_the_flags() -> None:
    chain = [_mark(lm, 10.0 * i) for i, lm in enumerate(SCHEMA.landmarks)]
    expected = set(SCHEMA.landmarks)
    sure = study_priority(chain, expected, None, SCHEMA, 8.0)
    assert sure.uncertainty == pytest.approx(0.1) and sure.flags == () and sure.flip_shift_mm is None
    assert sure.levels == SCHEMA.landmarks  # all share the lowest score
    weak = study_priority([*chain[:4], _mark("L2", 40.0, 0.25), *chain[5:]], expected, None, SCHEMA, 8.0)
    assert weak.uncertainty == pytest.approx(0.75) and weak.levels == ("L2",) and weak.min_score == 0.25
    shifted = study_priority(chain, expected, 6.0, SCHEMA, 8.0)  # 6 mm of 8 mm: 0.75 beats 1 - 0.9
    assert shifted.uncertainty == pytest.approx(0.75) and shifted.flip_shift_mm == 6.0
    assert study_priority(chain, expected, 40.0, SCHEMA, 8.0).uncertainty == pytest.approx(1.0)  # capped at 1
    without_l5 = [m for m in chain if m.id != "L5"]
    absent = study_priority(without_l5, expected, None, SCHEMA, 8.0)
    assert absent.flags == ("absent: L5",) and absent.uncertainty == pytest.approx(1.1) and "L5" in absent.levels
    swapped = [m if m.id != "L3" else _mark("L3", 35.0) for m in chain]  # L3 drawn above L2-L3 (y 50)
    order = study_priority(swapped, expected, None, SCHEMA, 8.0)
    assert order.flags == ("order: L3 above L2-L3",) and order.uncertainty == pytest.approx(1.1)
    nothing = study_priority([], {"L1"}, None, SCHEMA, 8.0)
    assert nothing.min_score is None and nothing.uncertainty == 2.0 and nothing.flags == ("absent: L1",)
    ranked = rank({"b": sure, "a": shifted, "c": weak, "z": absent})
    assert ranked == ["z", "a", "c", "b"]  # ties (a, c at 0.75) by uid


def test_session_orders_studies_by_their_predicted_scores(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    session = open_session(synth_root / "studies", pred, tmp_path / "out" / "REVIEWED.json")
    uids = study_uids(synth_root)
    assert session.order == [uids[k] for k in sorted(range(len(SCORES)), key=lambda k: SCORES[k])]
    first = session.studies[session.order[0]]
    assert first.priority.min_score == min(SCORES) and first.priority.levels == (WEAK,)
    assert session.warnings == [] and session.cursor == {"uid": None, "filter": {}}
    session.close()


def _accept(session, uid: str, dx: float = 0.0, state: str = "reviewed") -> int:
    st = session.studies[uid]
    marks = [{**m.to_json(), "x": m.x + dx} for m in st.marks]
    return session.update(uid, {"version": st.version, "landmarks": marks, "state": state})


def test_journal_replays_every_change_and_the_cursor(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    out = tmp_path / "REVIEWED.json"
    session = open_session(synth_root / "studies", pred, out)
    a, b = session.order[:2]
    assert _accept(session, a, dx=2.0) == 1 and _accept(session, a, dx=1.0, state="skipped") == 2
    _accept(session, b, dx=-3.0)
    session.set_cursor({"uid": b, "filter": {"state": "to_review", "level": None}})
    before = {uid: (st.marks, st.state, st.version) for uid, st in session.studies.items()}
    with pytest.raises(StaleVersion, match=rf"study {a} was changed elsewhere \(now version 2, yours 1\): reload it"):
        session.update(a, {"version": 1, "landmarks": [], "state": "reviewed"})
    session.close()
    again = open_session(synth_root / "studies", pred, out)
    assert {uid: (st.marks, st.state, st.version) for uid, st in again.studies.items()} == before
    assert again.cursor == {"uid": b, "filter": {"state": "to_review", "level": None}}
    again.close()


def test_a_torn_last_line_is_ignored_and_cut_off(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    out = tmp_path / "REVIEWED.json"
    session = open_session(synth_root / "studies", pred, out)
    uid = session.order[0]
    _accept(session, uid, dx=2.0)
    session.close()
    journal = journal_path(out)
    with open(journal, "ab") as fh:
        fh.write(b'{"study": "' + uid.encode() + b'", "version": 2, "state": "skip')  # killed mid-write
    again = open_session(synth_root / "studies", pred, out)
    assert again.studies[uid].version == 1 and again.studies[uid].state == "reviewed"
    assert again.warnings == [f"{journal}: line 3 was cut off (the server stopped while writing it): ignored"]
    _accept(again, uid, state="skipped")  # appended after the cut: the journal stays readable
    again.close()
    replay = read_journal(journal, pred, file_digest(pred))
    assert replay.warnings == [] and [e["version"] for e in replay.entries] == [1, 2]


def test_a_journal_of_other_predictions_or_a_damaged_one_is_refused(synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "REVIEWED.json"
    first = make_predictions(synth_root, tmp_path / "first.json")
    open_session(synth_root / "studies", first, out).close()
    other = make_predictions(synth_root, tmp_path / "other.json", scores=(0.1, 0.2, 0.3, 0.4, 0.5))
    with pytest.raises(JournalError, match=rf"made from another predictions file \({first}\), not from {other}"):
        open_session(synth_root / "studies", other, out)
    journal = journal_path(out)
    journal.write_bytes(journal.read_bytes() + b"not json\n" + b'{"cursor": {"uid": null}}\n')
    with pytest.raises(JournalError, match=r"line 2 is not a journal entry; the file is damaged"):
        open_session(synth_root / "studies", first, out)


def test_an_existing_out_without_its_journal_is_not_replaced(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    out = tmp_path / "REVIEWED.json"
    out.write_text("[]")
    with pytest.raises(OutputExistsError, match="exists but its journal .* does not"):
        open_session(synth_root / "studies", pred, out)
    assert out.read_text() == "[]"


def test_reviewed_json_holds_the_reviewed_studies_in_the_competition_format(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    out = tmp_path / "REVIEWED.json"
    session = open_session(synth_root / "studies", pred, out)
    a, b, c = session.order[:3]
    st = session.studies[a]
    marks = [m.to_json() for m in st.marks]
    marks[0].update(x=marks[0]["x"] + 4.0, z=st.study.z_index + 1, grades=["v2"])  # moved to the next slice
    marks[-1]["grades"] = ["v5", "v2"]
    session.update(a, {"version": 0, "landmarks": marks, "state": "reviewed"})
    _accept(session, b, state="skipped")
    _accept(session, c)
    records = read_annotations(out, SCHEMA)
    assert [r.study_uid for r in records] == [uid for uid in study_uids(synth_root) if uid in (a, c)]
    rec = next(r for r in records if r.study_uid == a)
    series = st.study.series
    main, moved = rec.images  # the main slice first: training reads the first image of a record
    assert main.instance_uid == series.instances[st.study.z_index].sop_instance_uid
    assert moved.instance_uid == series.instances[st.study.z_index + 1].sop_instance_uid
    assert main.pixel_spacing == series.spacing and main.annotator == "spine-kp review"
    assert [(p.identification, p.coord, p.z_index, p.grades) for p in moved.points] == [
        (marks[0]["id"], (marks[0]["x"], marks[0]["y"]), st.study.z_index + 1, ("v2",))
    ]
    assert main.points[-1].grades == ("v5", "v2") and all(p.score is None for p in rec.points)
    assert all(r["schema"] == SCHEMA.name for r in json.loads(out.read_text()))
    _accept(session, c, state="to_review")  # taken back: gone from the file
    assert [r.study_uid for r in read_annotations(out, SCHEMA)] == [a]
    with pytest.raises(BadBody, match="a reviewed study needs at least one landmark; mark it skipped instead"):
        session.update(b, {"version": 1, "landmarks": [], "state": "reviewed"})
    session.close()
    # training finds every record's image under ROOT, and evaluate scores the predictions against it
    kept, problems = resolve_records(read_annotations(out, SCHEMA), scan(synth_root / "studies").studies)
    assert [r.study_uid for r in kept] == [a] and problems == []
    assert spine_kp_main(["evaluate", "--annotations", str(out), "--predictions", str(pred), "--json"]) == 0
