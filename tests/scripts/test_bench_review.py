"""scripts/bench_review.py: the data it measures on (the timings themselves need a server and a browser; the page and
the server are tested in tests/test_review_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

from script_loader import load_script

from spine_kp.io.scan import scan

bench = load_script("bench_review")


def _points(records: list[dict]) -> list[list[dict]]:
    return [[p for e in r["data"] for b in e["annotation"] for p in b["data"]["point"]] for r in records]


def test_predictions_keep_the_points_and_put_known_misses(synth_root: Path) -> None:
    truth = json.loads((synth_root / "annotations.json").read_text())
    pred = bench.predictions(synth_root / "annotations.json", seed=1)
    for gt_points, pred_points in zip(_points(truth), _points(pred), strict=True):
        assert [p["tag"]["identification"] for p in gt_points] == [p["tag"]["identification"] for p in pred_points]
        for j, (g, p) in enumerate(zip(gt_points, pred_points)):
            dx = p["coord"][0] - g["coord"][0]
            assert 18 <= dx <= 22 if j % 7 == 3 else abs(dx) <= 2, (j, dx)
            assert 0.2 <= p["score"] <= 1.0


def test_clone_studies_are_distinct_three_slice_studies(synth_root: Path, tmp_path: Path) -> None:
    records = bench.clone_studies(synth_root, tmp_path / "many", 6, seed=1)
    studies = scan(tmp_path / "many").studies
    assert sorted(studies) == sorted(r["studyUid"] for r in records) and len(studies) == 6
    for rec in records:
        (series,) = studies[rec["studyUid"]].series
        entry = rec["data"][0]
        assert series.series_uid == entry["seriesUid"] and series.num_slices == 3
        z = {p["zIndex"] for p in _points([rec])[0]}
        assert len(z) == 1 and series.instances[z.pop()].sop_instance_uid == entry["instanceUid"]
