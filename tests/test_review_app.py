"""The review server's routes, through Starlette's test client: the token, the JSON of the contract, the PNG, edits."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from review_data import SCORES, SHIFT, WEAK, make_predictions, study_uids, tree_digest
from starlette.testclient import TestClient

from spine_kp.io.annotations import read_annotations
from spine_kp.review.app import cookie_name, create_app
from spine_kp.review.session import open_session
from spine_kp.schema import load_schema

TOKEN = "t0ken"
AUTH = {"X-Review-Token": TOKEN}


def _client(synth_root: Path, pred: Path, out: Path, gt: bool = True) -> TestClient:
    session = open_session(synth_root / "studies", pred, out, synth_root / "annotations.json" if gt else None)
    return TestClient(create_app(session, TOKEN), headers=AUTH)


@pytest.fixture
def client(synth_root: Path, tmp_path: Path) -> Iterator[TestClient]:
    c = _client(synth_root, make_predictions(synth_root, tmp_path / "pred.json"), tmp_path / "REVIEWED.json")
    yield c
    c.app.state.session.close()


def test_every_route_needs_the_token(client: TestClient) -> None:
    bare = TestClient(client.app)
    uid = client.get("/api/studies").json()["studies"][0]["uid"]
    for path in ("/api/schema", "/api/studies", f"/api/study/{uid}", f"/api/study/{uid}/image", "/static/app.js"):
        for kwargs in ({}, {"headers": {"X-Review-Token": "wrong"}}, {"params": {"token": "wrong"}}):
            response = bare.get(path, **kwargs)
            assert response.status_code == 403 and "token" in response.json()["error"], (path, kwargs)
    assert bare.put(f"/api/study/{uid}", json={}).status_code == 403
    page = bare.get("/")
    assert page.status_code == 403 and page.headers["content-type"].startswith("text/plain")
    assert bare.get("/api/schema", params={"token": TOKEN}).status_code == 200
    opened = bare.get("/", params={"token": TOKEN})  # sets the cookie the page's own requests carry
    assert opened.status_code == 200 and opened.headers["content-type"].startswith("text/html")
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(TOKEN)}={TOKEN};") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert bare.get("/api/studies").status_code == 200  # the cookie alone now
    assert bare.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/secret.py").status_code == 404


def test_schema_lists_the_landmarks_head_to_feet_and_the_meanings(client: TestClient) -> None:
    data = client.get("/api/schema").json()
    schema = load_schema()
    assert data["name"] == schema.name and data["radius_mm"] == 8.0
    assert [(lm["id"], lm["kind"]) for lm in data["landmarks"]] == list(zip(schema.landmarks, schema.landmark_kinds))
    assert data["kinds"]["disc"]["grades"] == list(schema.kind("disc").grades)
    assert data["kinds"]["disc"]["meanings"]["v3"] == "diffuse bulge"
    assert data["kinds"]["vertebra"]["meanings"] == {"v1": "normal", "v2": "degeneration"}


def test_the_list_follows_the_scores_and_filters_by_state_and_level(client: TestClient, synth_root: Path) -> None:
    listed = client.get("/api/studies").json()
    uids = study_uids(synth_root)
    by_score = sorted(range(len(SCORES)), key=lambda k: SCORES[k])
    assert [s["uid"] for s in listed["studies"]] == [uids[k] for k in by_score] and listed["total"] == len(uids)
    first = listed["studies"][0]
    assert first["uncertainty"] == pytest.approx(1 - min(SCORES)) and first["min_score"] == min(SCORES)
    assert first["levels"] == [WEAK] and first["flags"] == [] and first["n_landmarks"] == 12
    assert first["flip_shift_mm"] is None and first["state"] == "to_review"
    assert client.get("/api/studies", params={"level": WEAK}).json()["total"] == len(uids)
    assert client.get("/api/studies", params={"level": "L1"}).json() == {"total": 0, "studies": []}
    study = client.get(f"/api/study/{first['uid']}").json()
    client.put(f"/api/study/{first['uid']}", json={**study, "state": "skipped"})
    skipped = client.get("/api/studies", params={"state": "skipped"}).json()
    assert [s["uid"] for s in skipped["studies"]] == [first["uid"]]
    assert client.get("/api/studies", params={"state": "to_review"}).json()["total"] == len(uids) - 1
    assert client.get("/api/studies", params={"state": "done"}).status_code == 400


def test_a_study_carries_its_slice_landmarks_ground_truth_and_neighbours(client: TestClient, synth_root: Path) -> None:
    order = [s["uid"] for s in client.get("/api/studies").json()["studies"]]
    data = client.get(f"/api/study/{order[1]}").json()
    st = client.app.state.session.studies[order[1]]
    series = st.study.series
    assert (data["index"], data["prev"], data["next"]) == (1, order[0], order[2])
    assert (data["width"], data["height"], data["num_slices"]) == (series.cols, series.rows, series.num_slices)
    assert data["spacing"] == list(series.spacing) and data["version"] == 0 and data["state"] == "to_review"
    assert data["radius_px"] == pytest.approx([8.0 / series.spacing[1], 8.0 / series.spacing[0]])
    assert data["instance_uid"] == series.instances[data["z_index"]].sop_instance_uid
    center, width = data["window"]
    assert width > 0
    truth = {g["id"]: g for g in data["gt"]}
    assert len(data["landmarks"]) == 12 and set(truth) == {m["id"] for m in data["landmarks"]}
    for m in data["landmarks"]:  # predictions are the ground truth moved by SHIFT
        g = truth[m["id"]]
        assert (m["x"] - g["x"], m["y"] - g["y"]) == pytest.approx(SHIFT) and m["grades"] == g["grades"]
        assert m["z"] == g["z"] == data["z_index"] and m["edited"] is False
        assert m["score"] == (SCORES[study_uids(synth_root).index(order[1])] if m["id"] == WEAK else 0.9)
    assert client.get(f"/api/study/{order[-1]}").json()["next"] is None
    missing = client.get("/api/study/1.2.3")
    assert missing.status_code == 404 and "1.2.3" in missing.json()["error"]


def test_the_image_is_the_full_slice_as_grey_png_with_the_window_asked_for(client: TestClient) -> None:
    uid = client.get("/api/studies").json()["studies"][0]["uid"]
    study = client.get(f"/api/study/{uid}").json()
    response = client.get(f"/api/study/{uid}/image")
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.size == (study["width"], study["height"]) and image.mode == "L"
    other = Image.open(io.BytesIO(client.get(f"/api/study/{uid}/image", params={"z": 0, "wc": 0, "ww": 1}).content))
    assert other.size == image.size and other.tobytes() != image.tobytes()
    assert set(other.tobytes()) <= {0, 255}  # a window 1 wide: black or white
    for params, field in (
        ({"z": study["num_slices"]}, "z"),
        ({"z": "a"}, "z"),
        ({"ww": 0}, "ww"),
        ({"wc": "nan"}, "wc"),
    ):
        bad = client.get(f"/api/study/{uid}/image", params=params)
        assert bad.status_code == 400 and bad.json()["error"].startswith(f"{field}:"), params


def test_put_saves_refuses_a_stale_version_and_bad_bodies(client: TestClient, tmp_path: Path) -> None:
    uid = client.get("/api/studies").json()["studies"][0]["uid"]
    study = client.get(f"/api/study/{uid}").json()
    marks = study["landmarks"]
    marks[0] = {**marks[0], "x": marks[0]["x"] + 5, "edited": True}
    body = {"version": 0, "landmarks": marks, "state": "reviewed"}
    assert client.put(f"/api/study/{uid}", json=body).json() == {"version": 1}
    stale = client.put(f"/api/study/{uid}", json=body)  # a second tab still at version 0
    assert stale.status_code == 409
    assert stale.json()["error"] == f"study {uid} was changed elsewhere (now version 1, yours 0): reload it"
    assert client.get(f"/api/study/{uid}").json()["landmarks"][0] == marks[0]
    vertebra = next(i for i, m in enumerate(marks) if m["kind"] == "vertebra")
    cases = [
        ({"landmarks": [*marks, {**marks[0], "id": "S2"}]}, "landmarks[12].id: 'S2' is not a landmark"),
        ({"landmarks": [{**marks[vertebra], "grades": ["v4"]}]}, "landmarks[0].grades: 'v4' is not a grade of"),
        ({"landmarks": [{**marks[0], "x": study["width"] + 3}]}, "landmarks[0].x:"),
        ({"landmarks": [{**marks[0], "z": study["num_slices"]}]}, "landmarks[0].z:"),
        ({"state": "done"}, "state: must be one of to_review, reviewed, skipped"),
        ({"version": "1"}, "version:"),
    ]
    for change, message in cases:
        bad = client.put(f"/api/study/{uid}", json={**body, "version": 1, **change})
        assert bad.status_code == 400 and bad.json()["error"].startswith(message), change
    garbled = client.put(f"/api/study/{uid}", content=b"{not json")
    assert garbled.status_code == 400 and garbled.json() == {"error": "body: not valid JSON"}
    assert client.put("/api/study/9.9", json=body).status_code == 404
    assert client.get(f"/api/study/{uid}").json()["version"] == 1  # nothing of the refused bodies landed
    reviewed = read_annotations(tmp_path / "REVIEWED.json", load_schema())
    assert [r.study_uid for r in reviewed] == [uid]
    assert reviewed[0].points[0].coord == (marks[0]["x"], marks[0]["y"])


def test_a_new_server_on_the_same_out_resumes_and_inputs_stay_untouched(synth_root: Path, tmp_path: Path) -> None:
    pred = make_predictions(synth_root, tmp_path / "pred.json")
    inputs = [synth_root / "studies", synth_root / "annotations.json", pred]
    before = tree_digest(*inputs)
    out = tmp_path / "REVIEWED.json"
    first = _client(synth_root, pred, out)
    order = [s["uid"] for s in first.get("/api/studies").json()["studies"]]
    for uid, state in zip(order, ("reviewed", "skipped", "to_review")):
        study = first.get(f"/api/study/{uid}").json()
        study["landmarks"][2]["y"] += 1.25
        first.put(f"/api/study/{uid}", json={**study, "state": state})
    first.put("/api/cursor", json={"uid": order[2], "filter": {"level": WEAK}})
    seen = {uid: first.get(f"/api/study/{uid}").json() for uid in order}
    first.app.state.session.close()  # as if killed: the journal is all that is left
    second = _client(synth_root, pred, out)
    assert {uid: second.get(f"/api/study/{uid}").json() for uid in order} == seen
    assert second.get("/api/cursor").json() == {"uid": order[2], "filter": {"level": WEAK}}
    assert second.put("/api/cursor", json={"uid": "1.2.3"}).status_code == 400
    second.app.state.session.close()
    assert tree_digest(*inputs) == before
    assert not list(synth_root.rglob("*.journal.jsonl")) and not list(synth_root.rglob("REVIEWED*"))


def test_flip_shift_and_landmark_score_are_used_where_present(synth_root: Path, tmp_path: Path) -> None:
    extras = {2: {"flipShiftMm": 12.0}, 0: {"landmarkScore": 0.05}}  # study 2: sure (0.8) but unstable under flip
    pred = make_predictions(synth_root, tmp_path / "pred.json", extras=extras, drop={4: "L5"})
    client = _client(synth_root, pred, tmp_path / "REVIEWED.json", gt=False)
    listed = {s["uid"]: s for s in client.get("/api/studies").json()["studies"]}
    uids = study_uids(synth_root)
    assert listed[uids[2]]["flip_shift_mm"] == 12.0 and listed[uids[2]]["uncertainty"] == pytest.approx(1.0)
    assert listed[uids[0]]["min_score"] == 0.05 and listed[uids[0]]["uncertainty"] == pytest.approx(0.95)
    assert listed[uids[4]]["flags"] == ["absent: L5"] and listed[uids[4]]["uncertainty"] == pytest.approx(1.5)
    assert [s["uid"] for s in client.get("/api/studies").json()["studies"]][:3] == [uids[4], uids[2], uids[0]]
    by_l5 = client.get("/api/studies", params={"level": "L5"}).json()["studies"]  # absent there, lowest-scored in 0
    assert [s["uid"] for s in by_l5] == [uids[4], uids[0]]
    study = client.get(f"/api/study/{uids[0]}").json()
    assert {m["score"] for m in study["landmarks"]} == {0.05} and study["gt"] is None
    client.app.state.session.close()
