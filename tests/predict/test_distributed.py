"""Distributed prediction: shard merging, and a real 2-process DDP run on CPU through the CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np

from spine_kp.inference.slice_predictor import SlicePrediction
from spine_kp.predict.distributed import load_shard, merge_shards
from spine_kp.predict.runner import StudyFailure
from spine_kp.types import ImageAnnotation, Slice, StudyRecord


def _pred(uid: str) -> SlicePrediction:
    s = Slice(np.zeros((2, 2), np.float32), (1.0, 1.0), uid, "se", "in", 0, 1)
    rec = StudyRecord(uid, (ImageAnnotation("se", "in", ()),))
    return SlicePrediction(s, rec, np.zeros((0, 2)), np.zeros(0), {})


def test_merge_drops_padding_duplicates_and_sorts():
    # DistributedSampler pads the last shard by repeating studies ("b" twice).
    shards = [[_pred("c"), _pred("a"), StudyFailure("x", "/x", "no sagittal")], [_pred("b"), _pred("b")]]
    run = merge_shards(shards)
    assert [p.slice.study_uid for p in run.predictions] == ["a", "b", "c"]
    assert [f.study for f in run.failures] == ["x"]


class _Payload:
    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def test_shards_load_results_only_and_refuse_code(tmp_path):
    """A shard round-trips spine_kp's results; one holding a payload (or a spine_kp function) is refused unrun."""
    good = tmp_path / "shard_0.pkl"
    items = [_pred("a"), StudyFailure("x", "/x", "no sagittal")]
    good.write_bytes(pickle.dumps(items))
    back = load_shard(good)
    assert back[0].slice.study_uid == "a" and back[1] == items[1]
    np.testing.assert_array_equal(back[0].slice.pixels, items[0].slice.pixels)
    marker = tmp_path / "MARKER"
    for name, payload in [("exec", [_Payload(marker)]), ("function", [merge_shards])]:
        bad = tmp_path / f"{name}.pkl"
        bad.write_bytes(pickle.dumps(payload))
        try:
            load_shard(bad)
        except pickle.UnpicklingError as exc:
            assert "a prediction shard may not load" in str(exc)
        else:
            raise AssertionError(f"{name}: a shard that needs code was loaded")
    assert not marker.exists()


def test_two_process_ddp_matches_single_process(synth_root, tiny_checkpoint, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    base = [
        sys.executable,
        "-m",
        "spine_kp",
        "predict",
        str(synth_root / "studies"),
        "--checkpoint",
        str(tiny_checkpoint),
        "--device",
        "cpu",
        "--quiet",
        "--workers",
        "0",
    ]
    single, multi = tmp_path / "single.json", tmp_path / "multi.json"
    subprocess.run([*base, "-o", str(single)], check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.run(
        [*base, "-o", str(multi), "--devices", "2", "--strategy", "ddp"], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    a, b = json.loads(single.read_text()), json.loads(multi.read_text())
    assert [r["studyUid"] for r in b] == sorted(r["studyUid"] for r in a)
    # Same model, same inputs: the same predictions whichever rank made them (up to float noise of batch sizes).
    for ra, rb in zip(sorted(a, key=lambda r: r["studyUid"]), b):
        pa, pb = (r["data"][0]["annotation"][0]["data"]["point"] for r in (ra, rb))
        assert [p["tag"] for p in pa] == [p["tag"] for p in pb]
        assert np.allclose([p["coord"] for p in pa], [p["coord"] for p in pb], atol=0.05)
        assert np.allclose([p["score"] for p in pa], [p["score"] for p in pb], atol=1e-3)
    assert not list(tmp_path.glob(".*shards*/*"))  # shards cleaned up after the merge
