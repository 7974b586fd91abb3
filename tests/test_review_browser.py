"""``spine-kp review`` in a real browser: Playwright drives Debian's chromium against the real server (issue 21).

The predictions are the phantom annotations moved by a pixel or so, with known scores (no model), so the
least-certain order is known. One browser for the module; the server of the edit and two-tab tests is shared, the
kill test starts its own. A missing chromium fails the tests (``.ci/run`` installs it); it never skips them.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: the lowest landmark score of each phantom study (in annotation order); the page must list them lowest first
MIN_SCORES = (0.62, 0.18, 0.85, 0.41, 0.30)
LOW_LEVEL = "L3"  # the landmark that carries a study's lowest score


@dataclass
class Inputs:
    root: Path
    predictions: Path
    annotations: Path
    uids: list[str]  # least certain first


@dataclass
class Server:
    proc: subprocess.Popen
    url: str
    out: Path

    @property
    def base(self) -> str:
        return self.url.split("/?", 1)[0]

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]


def _tree_digest(paths: list[Path]) -> dict[str, str]:
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def inputs(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    """Predictions made from the phantom annotations: coords moved by up to 1.5 px, scores known."""
    records = json.loads((synth_root / "annotations.json").read_text())
    for i, rec in enumerate(records):
        for entry in rec["data"]:
            for block in entry["annotation"]:
                for j, point in enumerate(block["data"]["point"]):
                    x, y = point["coord"]
                    point["coord"] = [x + ((i + j) % 4 - 1.5) * 0.8, y + ((i * j) % 3 - 1) * 0.9]
                    point["score"] = MIN_SCORES[i] if point["tag"]["identification"] == LOW_LEVEL else 0.95
    pred = tmp_path_factory.mktemp("review_inputs") / "predictions.json"
    pred.write_text(json.dumps(records))
    order = sorted(range(len(records)), key=lambda i: MIN_SCORES[i])
    return Inputs(
        synth_root / "studies", pred, synth_root / "annotations.json", [records[i]["studyUid"] for i in order]
    )


@pytest.fixture(scope="module")
def digest(inputs: Inputs) -> dict[str, str]:
    """Digests of ROOT and the input files before any server ran."""
    return _tree_digest([inputs.root, inputs.predictions, inputs.annotations])


def start_server(inputs: Inputs, out: Path) -> Server:
    """Start ``spine-kp review`` on a free port and wait for the URL line it prints."""
    args = [sys.executable, "-m", "spine_kp", "review", str(inputs.root), "--predictions", str(inputs.predictions)]
    args += ["--out", str(out), "--annotations", str(inputs.annotations), "--port", "0"]
    log = out.parent / f"server-{time.monotonic_ns()}.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        line = proc.stdout.readline() if ready else ""
        if line.startswith("review: http"):
            return Server(proc, line.split(" ", 1)[1].strip(), out)
        if proc.poll() is not None and not ready:
            break
    proc.kill()
    pytest.fail(f"spine-kp review printed no URL line; its stderr: {log.read_text()[-2000:]}")


def stop(server: Server, sig: int = signal.SIGTERM) -> None:
    if server.proc.poll() is None:
        os.kill(server.proc.pid, sig)
    server.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium; .ci/run does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(inputs: Inputs, digest: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(inputs, tmp_path_factory.mktemp("review_out") / "REVIEWED.json")
    yield s
    stop(s)


def open_page(browser: Browser, url: str, uid: str | None = None) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(url)
    wait_study(page, uid)
    return page


def wait_study(page: Page, uid: str | None = None) -> dict:
    page.wait_for_function("uid => window.reviewApp && reviewApp.loaded && (!uid || reviewApp.loaded === uid)", arg=uid)
    return page.evaluate("reviewApp.study()")


def choose(page: Page, uid: str) -> dict:
    page.click(f'#study-list .row[data-uid="{uid}"]')
    return wait_study(page, uid)


def landmark(page: Page, ident: str) -> dict:
    return next(lm for lm in page.evaluate("reviewApp.study()")["landmarks"] if lm["id"] == ident)


def drag(page: Page, ident: str, dx: float, dy: float) -> dict:
    """Drag landmark ``ident`` by (dx, dy) image pixels with the mouse; returns it as it was before."""
    lm = landmark(page, ident)
    a = page.evaluate("([x, y]) => reviewApp.imageToClient(x, y)", [lm["x"], lm["y"]])
    b = page.evaluate("([x, y]) => reviewApp.imageToClient(x, y)", [lm["x"] + dx, lm["y"] + dy])
    page.mouse.move(a["x"], a["y"])
    page.mouse.down()
    page.mouse.move(b["x"], b["y"], steps=4)
    page.mouse.up()
    page.evaluate("reviewApp.idle()")
    return lm


def assert_moved(xy: list[float], before: dict, dx: float, dy: float) -> None:
    """``xy`` is ``before`` moved by (dx, dy) image pixels, within half a pixel."""
    assert xy[0] == pytest.approx(before["x"] + dx, abs=0.5) and xy[1] == pytest.approx(before["y"] + dy, abs=0.5)


def server_study(server: Server, uid: str) -> dict:
    r = httpx.get(f"{server.base}/api/study/{uid}", headers={"X-Review-Token": server.token})
    assert r.status_code == 200, r.text
    return r.json()


def reviewed_points(out: Path, uid: str) -> dict[str, dict]:
    records = [r for r in json.loads(out.read_text()) if r["studyUid"] == uid]
    assert len(records) == 1, f"{uid} is not once in {out}"
    points = [p for e in records[0]["data"] for b in e["annotation"] for p in b["data"]["point"]]
    return {p["tag"]["identification"]: p for p in points}


def test_order_token_edit_accept_reload(browser: Browser, server: Server, inputs: Inputs, digest: dict) -> None:
    page = open_page(browser, server.url)
    assert page.evaluate("reviewApp.list()") == inputs.uids, "the list must put the lowest scores first"
    rows = page.locator("#study-list .row").evaluate_all("rows => rows.map(r => r.dataset.uid)")
    assert rows == inputs.uids
    assert page.evaluate("reviewApp.study().uid") == inputs.uids[0], "the page opens the least certain study"

    for path in ("/", "/api/studies", f"/api/study/{inputs.uids[0]}", "/static/app.js"):
        assert httpx.get(server.base + path).status_code == 403, f"{path} without the token"
        assert httpx.get(server.base + path, headers={"X-Review-Token": "wrong"}).status_code == 403
    assert httpx.get(server.base + "/api/studies", headers={"X-Review-Token": server.token}).status_code == 200

    uid = inputs.uids[1]
    choose(page, uid)
    before = drag(page, "L4-L5", 12, -7)
    page.click('#grades input[data-grade="v5"]')  # L4-L5 stays selected after the drag
    assert not page.locator("#help").is_visible()
    page.keyboard.press("?")
    assert page.locator("#help").is_visible()
    page.keyboard.press("Escape")
    page.keyboard.press("a")
    wait_study(page, inputs.uids[2])  # accept goes on to the next study of the list
    page.evaluate("reviewApp.idle()")
    page.reload()
    wait_study(page, inputs.uids[2])  # the server kept the cursor
    assert page.locator(f'#study-list .row[data-uid="{uid}"]').get_attribute("class").split()[:2] == ["row", "reviewed"]

    point = reviewed_points(server.out, uid)["L4-L5"]
    assert_moved(point["coord"], before, 12, -7)
    assert "v5" in point["tag"]["disc"].split(",")
    assert set(before["grades"]) <= set(point["tag"]["disc"].split(","))
    assert [r["studyUid"] for r in json.loads(server.out.read_text())] == [uid], "only reviewed studies are written"
    page.close()
    assert _tree_digest([inputs.root, inputs.predictions, inputs.annotations]) == digest


def test_two_tabs_stale_write_is_refused_then_merged(browser: Browser, server: Server, inputs: Inputs) -> None:
    uid = inputs.uids[3]
    tab1, tab2 = open_page(browser, server.url), open_page(browser, server.url)
    choose(tab1, uid)
    choose(tab2, uid)
    l1 = drag(tab1, "L1", 5, 3)
    assert tab1.evaluate("reviewApp.saves") == 1
    assert not tab2.locator("#banner").is_visible()
    l3 = drag(tab2, "L3", -4, 6)  # tab 2 still holds version 0: the server refuses, the page reloads and merges
    assert tab2.evaluate("reviewApp.conflicts") == 1
    assert tab2.locator("#banner").is_visible()
    assert "changed elsewhere" in tab2.locator("#banner-text").inner_text()

    marks = {lm["id"]: lm for lm in server_study(server, uid)["landmarks"]}
    assert_moved([marks["L1"]["x"], marks["L1"]["y"]], l1, 5, 3)  # tab 1's edit survived
    assert_moved([marks["L3"]["x"], marks["L3"]["y"]], l3, -4, 6)  # and tab 2's was re-applied, not lost
    tab1.close()
    tab2.close()


def test_delete_undo_add_slice_view_and_filters(browser: Browser, server: Server, inputs: Inputs) -> None:
    uid = inputs.uids[4]
    page = open_page(browser, server.url)
    study = choose(page, uid)
    l5 = landmark(page, "L5")
    at = page.evaluate("([x, y]) => reviewApp.imageToClient(x, y)", [l5["x"], l5["y"]])
    page.mouse.click(at["x"], at["y"])
    page.keyboard.press("Delete")
    page.evaluate("reviewApp.idle()")
    assert "L5" not in {m["id"] for m in server_study(server, uid)["landmarks"]}
    page.keyboard.press("Control+z")
    page.evaluate("reviewApp.idle()")
    back = {m["id"]: m for m in server_study(server, uid)["landmarks"]}["L5"]
    assert (back["x"], back["y"], back["z"]) == (l5["x"], l5["y"], l5["z"])

    page.mouse.click(at["x"], at["y"])
    page.keyboard.press("Delete")
    page.keyboard.press("]")  # add it on the next slice
    page.select_option("#add-id", "L5")
    page.click("#b-add")
    at = page.evaluate("reviewApp.imageToClient(40, 50)")
    page.mouse.click(at["x"], at["y"])
    page.evaluate("reviewApp.idle()")
    added = {m["id"]: m for m in server_study(server, uid)["landmarks"]}["L5"]
    assert added["x"] == pytest.approx(40, abs=0.5) and added["y"] == pytest.approx(50, abs=0.5)
    assert added["z"] == study["z_index"] + 1 and added["edited"] and added["grades"] == []
    assert "(predicted)" not in page.inner_text("#z-label")
    page.keyboard.press("[")
    assert "(predicted)" in page.inner_text("#z-label")

    corner, unit = page.evaluate("reviewApp.imageToClient(0, 0)"), page.evaluate("reviewApp.imageToClient(1, 0)")
    page.mouse.move(corner["x"] + 3, corner["y"] + 3)
    page.mouse.wheel(0, -200)  # zoom in around the cursor
    zoomed = page.evaluate("[reviewApp.imageToClient(0, 0), reviewApp.imageToClient(1, 0)]")
    assert zoomed[1]["x"] - zoomed[0]["x"] > 1.2 * (unit["x"] - corner["x"])
    page.mouse.down()  # on the image, away from the points: pan
    page.mouse.move(corner["x"] + 33, corner["y"] + 23, steps=3)
    page.mouse.up()
    panned = page.evaluate("reviewApp.imageToClient(0, 0)")
    assert (panned["x"] - zoomed[0]["x"], panned["y"] - zoomed[0]["y"]) == (pytest.approx(30), pytest.approx(20))
    href = page.get_attribute("#slice", "href")
    page.mouse.down(button="right")  # window / level
    page.mouse.move(corner["x"] + 83, corner["y"] + 63, steps=3)
    page.mouse.up(button="right")
    page.wait_for_function("href => document.getElementById('slice').getAttribute('href') !== href", arg=href)

    page.keyboard.press("s")
    page.evaluate("reviewApp.idle()")
    assert server_study(server, uid)["state"] == "skipped"
    page.select_option("#f-state", "skipped")
    page.wait_for_function("uid => JSON.stringify(reviewApp.list()) === JSON.stringify([uid])", arg=uid)
    page.select_option("#f-state", "")
    page.select_option("#f-level", LOW_LEVEL)  # every study has its lowest score there
    page.wait_for_function("n => reviewApp.list().length === n", arg=len(inputs.uids))
    page.select_option("#f-level", "T12")
    page.wait_for_function("reviewApp.list().length === 0")

    while page.locator("#lm-table tr").count():  # a study without landmarks cannot be accepted: the page stays
        page.click("#lm-table tr")
        page.keyboard.press("Delete")
    page.keyboard.press("a")
    page.wait_for_function("document.getElementById('banner-text').textContent.includes('at least one landmark')")
    page.evaluate("reviewApp.idle()")
    assert page.evaluate("[reviewApp.loaded, reviewApp.study().state]") == [uid, "skipped"]
    assert server_study(server, uid)["state"] == "skipped"
    page.close()


def test_kill_and_restart_loses_nothing(browser: Browser, inputs: Inputs, digest: dict, tmp_path: Path) -> None:
    out = tmp_path / "REVIEWED.json"
    first = start_server(inputs, out)
    try:
        page = open_page(browser, first.url, inputs.uids[0])
        accepted = drag(page, "L5", -3, 4)
        page.keyboard.press("a")
        wait_study(page, inputs.uids[1])
        middle = drag(page, "L2", 6, -5)  # an edit on a study not yet accepted, then the server dies
        page.evaluate("reviewApp.idle()")
    finally:
        stop(first, signal.SIGKILL)

    second = start_server(inputs, out)
    try:
        page.goto(second.url)
        study = wait_study(page)
        assert study["uid"] == inputs.uids[1], "the page resumes on the study the user was on"
        lm = next(lm for lm in study["landmarks"] if lm["id"] == "L2")
        assert_moved([lm["x"], lm["y"]], middle, 6, -5)
        assert lm["edited"] and study["state"] == "to_review"
        point = reviewed_points(out, inputs.uids[0])["L5"]
        assert_moved(point["coord"], accepted, -3, 4)
        page.close()
    finally:
        stop(second)
    assert _tree_digest([inputs.root, inputs.predictions, inputs.annotations]) == digest
