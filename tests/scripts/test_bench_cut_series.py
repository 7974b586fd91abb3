"""scripts/bench_cut_series.py: fold test studies cut above an annotated body, predicted and scored with warnings."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from script_loader import load_script, tiny_cv

from spine_kp.io.annotations import read_annotations
from spine_kp.schema import load_schema


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def test_cut_image_keeps_the_top_rows_only(synth_root: Path, tmp_path: Path) -> None:
    bench = load_script("bench_cut_series")
    src = next((synth_root / "studies").rglob("*.dcm"))
    f = tmp_path / "im.dcm"
    shutil.copy(src, f)
    before = pydicom.dcmread(src).pixel_array
    assert bench.cut_image(f, 50) is True
    after = pydicom.dcmread(f)
    assert after.Rows == 50 and after.Columns == before.shape[1]
    np.testing.assert_array_equal(after.pixel_array, before[:50])
    assert bench.cut_image(f, 60) is False  # not taller than the cut: left as it is
    assert pydicom.dcmread(f).Rows == 50


def test_the_bench_cuts_copies_predicts_and_counts_warnings(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], one_thread: None
) -> None:
    cv = tiny_cv(synth_root, tmp_path / "cv")
    before = _digest(synth_root / "studies")
    bench = load_script("bench_cut_series")
    out, work = tmp_path / "cut.json", tmp_path / "work"
    assert bench.main(["--cv", str(cv), "--at", "none", "L5", "--work", str(work), "--out", str(out)]) == 0
    assert _digest(synth_root / "studies") == before  # the inputs are never modified
    rows = json.loads(out.read_text())["rows"]
    assert list(rows) == ["uncut, as trained", "cut at L5, as trained"]  # the tiny folds have no junction check
    uncut, cut = rows["uncut, as trained"], rows["cut at L5, as trained"]
    schema = load_schema()
    gt = read_annotations(synth_root / "annotations.json", schema)
    assert uncut["studies"] == cut["studies"] == len(gt)  # every phantom annotates L5
    assert cut["landmarks"] < uncut["landmarks"]  # L5 and what lies below it left the ground truth
    for m in (uncut, cut):
        assert 0 <= m["warned_and_shifted"] <= min(m["warned"], m["level_shifts"]) <= m["studies"]
        assert len(m["shifted_unwarned"]) == m["level_shifts"] - m["warned_and_shifted"]
    # the copies: cut at each study's annotated L5 row, the uncut ones as they were
    l5_rows = sorted(int(round(p.coord[1])) for r in gt for p in r.primary.points if p.identification == "L5")

    def annotated_rows(folder: Path) -> list[int]:  # the rows of each study's annotated series (its largest images)
        series = {r.primary.series_uid for r in gt}
        rows: dict[str, int] = {}
        for f in (p for p in folder.rglob("*") if p.is_file()):  # phantom file names need not end in .dcm
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True)
            except pydicom.errors.InvalidDicomError:
                continue
            if ds.get("SeriesInstanceUID") in series:  # a smaller scout in the series keeps its own rows
                rows[ds.SeriesInstanceUID] = max(rows.get(ds.SeriesInstanceUID, 0), int(ds.Rows))
        assert len(rows) == len(gt)
        return sorted(rows.values())

    assert annotated_rows(work / "L5") == l5_rows
    assert set(annotated_rows(work / "none")) == {128}
    assert "cut at L5, as trained" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no fold"):
        bench.main(["--cv", str(tmp_path / "empty")])
