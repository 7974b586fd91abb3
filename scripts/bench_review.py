"""Speed of ``spine-kp review`` (issue 21): opening a study, and a list of 1,000 studies.

(a) **Opening a study**: ``GET /api/study/UID`` then ``GET /api/study/UID/image`` (the PNG at full resolution), per
    study of a phantom data set at a realistic matrix (``--size``, default 512), median and p95 over the studies;
    target <= 200 ms. The first open of a study decodes its slice (cold); the second is served from the server's
    cache (warm). Measured from this script over HTTP keep-alive, and in the browser (``reviewApp.open``: fetch,
    PNG decode and drawing).
(b) **1,000 studies**: 1,000 tiny synthetic studies, each its own folder with new Study/Series/SOP UIDs: copies of
    three slices (the annotated one and its neighbours) of the T2 series of a few 64-row phantoms, with predictions
    made from the phantoms' annotations (coords moved, random scores). Measured: ``GET /api/studies`` (all, and
    filtered), and in the browser the time to fetch and render the whole list and to render it alone (DOM + layout);
    target <= 100 ms (a click that answers within 100 ms feels immediate).

Both start the real server (``python -m spine_kp review ... --port 0``) and drive Debian's chromium with Playwright.
Usage::

    python scripts/bench_review.py                 # 12 studies at 512 rows, 1,000 in the list
    python scripts/bench_review.py --size 384 --studies 20 --list 2000
"""

from __future__ import annotations

import argparse
import json
import random
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pydicom
from pydicom.uid import generate_uid

OPEN_TARGET_MS = 200.0
LIST_TARGET_MS = 100.0
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def predictions(annotations: Path, seed: int) -> list[dict]:
    """The annotations made into predictions (no model): coords moved by up to 2 px, one point in seven by 20 px (a
    miss), one in five graded v1 (normal in both kinds of the default schema), a random score per point."""
    rng = random.Random(seed)
    records = json.loads(annotations.read_text())
    for rec in records:
        for entry in rec["data"]:
            for block in entry["annotation"]:
                for j, point in enumerate(block["data"]["point"]):
                    x, y = (c + rng.uniform(-2, 2) for c in point["coord"])
                    point["coord"] = [x + (20 if j % 7 == 3 else 0), y]
                    kind = "disc" if "-" in point["tag"]["identification"] else "vertebra"
                    if j % 5 == 1:
                        point["tag"][kind] = "v1"
                    point["score"] = round(rng.uniform(0.2, 1.0), 3)
    return records


def clone_studies(phantom: Path, out: Path, n: int, seed: int) -> list[dict]:
    """``n`` three-slice studies under ``out/``, copies of the phantoms' annotated slices; returns their predictions."""
    from spine_kp.io.scan import scan

    studies = scan(phantom / "studies").studies
    sources = []
    for rec in predictions(phantom / "annotations.json", seed):
        entry = rec["data"][0]
        series = next(s for s in studies[rec["studyUid"]].series if s.series_uid == entry["seriesUid"])
        z = next(i for i, inst in enumerate(series.instances) if inst.sop_instance_uid == entry["instanceUid"])
        lo = min(max(z - 1, 0), series.num_slices - 3)
        files = [pydicom.dcmread(inst.path) for inst in series.instances[lo : lo + 3]]
        sources.append((rec, files, z - lo))
    records, rng = [], random.Random(seed)
    for k in range(n):
        rec, files, z = sources[k % len(sources)]
        study_uid, series_uid, folder = generate_uid(), generate_uid(), out / f"study{k:05d}"
        folder.mkdir(parents=True)
        sops = []
        for i, ds in enumerate(files):
            sop = generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.save_as(folder / f"IM{i}.dcm", enforce_file_format=True)
            sops.append(sop)
        clone = json.loads(json.dumps(rec))
        clone["studyUid"] = study_uid
        entry = clone["data"][0]
        entry["seriesUid"], entry["instanceUid"] = series_uid, sops[z]
        for block in entry["annotation"]:
            for point in block["data"]["point"]:
                point["zIndex"] = z
                point["score"] = round(rng.uniform(0.2, 1.0), 3)
        records.append(clone)
    return records


class Server:
    """``spine-kp review`` in a child process; ``url`` is the line it prints."""

    def __init__(self, root: Path, pred: Path, out: Path, gt: Path | None = None) -> None:
        args = [sys.executable, "-m", "spine_kp", "review", str(root), "--predictions", str(pred), "--out", str(out)]
        args += ["--port", "0"] + (["--annotations", str(gt)] if gt else [])
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while True:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1.0)
            line = self.proc.stdout.readline() if ready else ""
            if line.startswith("review: http"):
                break
            if self.proc.poll() is not None:
                raise SystemExit(f"spine-kp review exited with status {self.proc.returncode} before printing its URL")
        self.start_s = time.perf_counter() - t0
        self.url = line.split(" ", 1)[1].strip()
        self.base, self.token = self.url.split("/?token=")
        self.http = httpx.Client(base_url=self.base, headers={"X-Review-Token": self.token}, timeout=60)

    def get(self, path: str, **params: object) -> httpx.Response:
        r = self.http.get(path, params=params)
        r.raise_for_status()
        return r

    def close(self) -> None:
        self.http.close()
        self.proc.terminate()
        self.proc.wait(timeout=20)


def p95(values: list[float]) -> float:
    return sorted(values)[round(0.95 * (len(values) - 1))]


def ms_stats(values: list[float]) -> str:
    return f"median {statistics.median(values):7.1f} ms, p95 {p95(values):7.1f} ms"


def ratio(value: float, target: float) -> str:
    return f"{value / target:.2f} x target ({target:.0f} ms)"


def open_one(server: Server, uid: str) -> float:
    t0 = time.perf_counter()
    server.get(f"/api/study/{uid}")
    server.get(f"/api/study/{uid}/image")
    return (time.perf_counter() - t0) * 1000


def screenshot(page, uid: str, path: Path) -> None:
    """The page on ``uid`` with its worst prediction selected, as a 256-colour PNG (small enough for the README)."""
    from PIL import Image

    page.evaluate("uid => reviewApp.open(uid)", uid)
    study = page.evaluate("reviewApp.study()")
    gt = {g["id"]: g for g in study["gt"]}
    worst = max(study["landmarks"], key=lambda m: abs(m["x"] - gt[m["id"]]["x"]) + abs(m["y"] - gt[m["id"]]["y"]))
    at = page.evaluate("([x, y]) => reviewApp.imageToClient(x, y)", [worst["x"], worst["y"]])
    page.mouse.click(at["x"], at["y"])
    page.mouse.move(at["x"] + 200, at["y"] + 300)  # no hover highlight in the picture
    raw = path.with_suffix(".raw.png")
    page.screenshot(path=raw)
    Image.open(raw).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(path, optimize=True)
    raw.unlink()
    print(f"    screenshot: {path} ({path.stat().st_size // 1024} KB), {worst['id']} selected")


def bench_open(tmp: Path, n: int, size: int, page_of, shot: Path | None) -> None:
    from spine_kp.synth import make_dataset

    phantom = tmp / "open"
    t0 = time.perf_counter()
    make_dataset(phantom, n_studies=n, seed=5, size=size, axial=False, tricky=False)
    print(f"(a) {n} phantom studies at {size} rows (made in {time.perf_counter() - t0:.1f} s)")
    pred = tmp / "open_pred.json"
    pred.write_text(json.dumps(predictions(phantom / "annotations.json", 1)))
    server = Server(phantom / "studies", pred, tmp / "open_out" / "REVIEWED.json", phantom / "annotations.json")
    try:
        uids = [s["uid"] for s in server.get("/api/studies").json()["studies"]]
        cold = [open_one(server, uid) for uid in uids]
        warm = [open_one(server, uid) for uid in uids]
        page = page_of(server.url)
        if shot:
            screenshot(page, uids[0], shot)
        js = "async uid => { await reviewApp.open(uid); return reviewApp.openMs; }"
        in_page = [page.evaluate(js, uid) for uid in uids]
        page.close()
    finally:
        server.close()
    print(f"    server start: {server.start_s:.2f} s")
    for name, values in (("HTTP, first open (decode)", cold), ("HTTP, opened again", warm), ("in the page", in_page)):
        print(f"    {name:27s} {ms_stats(values)}; p95 {ratio(p95(values), OPEN_TARGET_MS)}")


def bench_list(tmp: Path, n: int, page_of) -> None:
    from spine_kp.synth import make_dataset

    t0 = time.perf_counter()
    make_dataset(tmp / "small", n_studies=4, seed=6, size=64, axial=False, tricky=False)
    records = clone_studies(tmp / "small", tmp / "many", n, seed=2)
    pred = tmp / "many_pred.json"
    pred.write_text(json.dumps(records))
    print(f"(b) {n} tiny studies (3-slice copies of 4 phantoms, new UIDs; made in {time.perf_counter() - t0:.1f} s)")
    server = Server(tmp / "many", pred, tmp / "many_out" / "REVIEWED.json")
    try:
        total = server.get("/api/studies").json()["total"]
        api_all, api_filtered = [], []
        for _ in range(15):
            t0 = time.perf_counter()
            server.get("/api/studies")
            api_all.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            server.get("/api/studies", state="to_review", level="L4-L5")
            api_filtered.append((time.perf_counter() - t0) * 1000)
        page = page_of(server.url)
        first = page.evaluate("reviewApp.listRenderMs")
        reload = page.evaluate(
            "async () => { const r = []; for (let i = 0; i < 10; i++) {"
            " const t = performance.now(); await reviewApp.reloadList(); r.push(performance.now() - t); } return r; }"
        )
        render = page.evaluate(
            "() => { const r = []; for (let i = 0; i < 10; i++) { reviewApp.renderList();"
            " r.push(reviewApp.listRenderMs); } return r; }"
        )
        rows = page.locator("#study-list .row").count()
        page.close()
    finally:
        server.close()
    print(f"    server start (scan of {n} studies): {server.start_s:.2f} s; listed {total}, rows in the page {rows}")
    print(f"    GET /api/studies (all)          {ms_stats(api_all)}")
    print(f"    GET /api/studies (filtered)     {ms_stats(api_filtered)}")
    print(f"    page: first render              {first:7.1f} ms; {ratio(first, LIST_TARGET_MS)}")
    for name, values in (("fetch + render", reload), ("render only", render)):
        print(f"    page: {name:25s} {ms_stats(values)}; median {ratio(statistics.median(values), LIST_TARGET_MS)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--studies", type=int, default=12, help="phantom studies for (a)")
    parser.add_argument("--size", type=int, default=512, help="rows of the phantom images for (a)")
    parser.add_argument("--list", type=int, default=1000, help="studies in the list for (b)")
    parser.add_argument("--screenshot", type=Path, help="also save a screenshot of the page (README: docs/review.png)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])

        def page_of(url: str):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.wait_for_function("window.reviewApp && reviewApp.loaded")
            return page

        bench_open(Path(tmp), args.studies, args.size, page_of, args.screenshot)
        bench_list(Path(tmp), args.list, page_of)
        browser.close()


if __name__ == "__main__":
    main()
