"""Decoding settings learned on the validation split: counted as the 8 mm localization share, stored in the
checkpoint, used by predict (an explicit override still wins)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from spine_kp.checkpoint import DECODE_FIT_KEY, load_checkpoint, write_entry
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.engine.decode_fit import count_within
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.types import Slice

pytestmark = pytest.mark.usefixtures("one_thread")


def _slice(spacing: tuple[float, float]) -> Slice:
    return Slice(pixels=np.zeros((8, 8), np.float32), spacing=spacing, study_uid="s", series_uid="se",
                 instance_uid="i", z_index=0, num_slices=1)  # fmt: skip


def test_count_within_uses_the_spacing_and_counts_absent_as_misses() -> None:
    names = ["A", "B", "C"]
    coords = np.array([[[10.0, 10.0], [20.0, 10.0], [30.0, 30.0]]])
    peaks = np.array([[0.9, 0.8, 0.0]])  # C declared absent
    truth = [{"A": (10.0, 17.0), "B": (20.0, 19.0), "C": (30.0, 30.0)}]
    # rows 1 mm: A is 7 mm off (hit), B 9 mm (miss), C absent (miss)
    assert count_within(coords, peaks, [_slice((1.0, 1.0))], truth, names) == (1, 3)
    # rows 0.5 mm: B is 4.5 mm off (hit); an identification without ground truth is not counted
    assert count_within(coords, peaks, [_slice((0.5, 1.0))], [{"A": (10.0, 17.0), "B": (20.0, 19.0)}], names) == (2, 2)


def test_training_fits_the_decoding_and_predict_uses_it(train_tiny, tmp_path: Path) -> None:
    result = train_tiny(tmp_path / "run", {"decode.absent_score": "0.1", "decode.step_tolerance": "0.4"})
    entry = result.decode_fit
    assert entry is not None and entry["n_studies"] >= 1 and entry["n_landmarks"] > 0
    assert entry["within"] >= entry["config_within"]  # the config's own values are on the grid
    assert entry["grid"]["0.1/0.1/0.4"] == entry["config_within"]  # an unset caudal score is the cranial one
    assert entry["grid_keys"] == ["absent_score", "absent_score_caudal", "step_tolerance"]
    stored = load_checkpoint(result.best_checkpoint).decode_fit
    assert stored == entry
    predictor = Predictor.from_checkpoint(result.best_checkpoint, device="cpu")
    decode = predictor.decode
    assert (decode.absent_score, decode.absent_score_caudal, decode.step_tolerance) == (
        entry["absent_score"], entry["absent_score_caudal"], entry["step_tolerance"])  # fmt: skip


def test_a_stored_fit_changes_the_decoding_and_an_override_wins(train_tiny, tmp_path: Path) -> None:
    result = train_tiny(tmp_path / "run", {"decode.fit": "false"})
    assert result.decode_fit is None and load_checkpoint(result.best_checkpoint).decode_fit is None
    ckpt = tmp_path / "fitted.ckpt"
    shutil.copy(result.best_checkpoint, ckpt)
    write_entry(ckpt, DECODE_FIT_KEY, {"absent_score": 0.0, "step_tolerance": 0.6})
    assert Predictor.from_checkpoint(ckpt, device="cpu").decode.absent_score == 0.0
    assert Predictor.from_checkpoint(ckpt, device="cpu").decode.step_tolerance == 0.6
    own = LevelOrderConfig(absent_score=0.2)
    assert Predictor.from_checkpoint(ckpt, device="cpu", decode=own).decode.absent_score == 0.2


def _blob_heatmaps(rng: np.random.Generator, b: int, k: int, size: int = 24) -> np.ndarray:
    """(b, k, size, size) heatmaps: two Gaussian peaks of random height per channel, down the image, plus noise."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    hm = rng.uniform(0, 0.05, (b, k, size, size)).astype(np.float32)
    for i in range(b):
        for j in range(k):
            for _ in range(2):
                cy, cx = (j + 0.5) * size / k + rng.normal(0, 1.5), size / 2 + rng.normal(0, 2)
                hm[i, j] += rng.uniform(0.05, 1.0) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 4.0)
    return hm


@pytest.mark.parametrize(
    ("keep", "enabled"),
    [([True] * 6, True), ([False, True, True, True, True, False], True), ([False] * 5 + [True], True),
     ([True] * 6, False)],
)  # fmt: skip
def test_the_fit_decodes_every_setting_as_predict_does(keep: list[bool], enabled: bool) -> None:
    """Candidates found once, the chain decoded per setting: the same points and peaks as a full decode."""
    from spine_kp.codec.heatmap import HeatmapCodec
    from spine_kp.engine.decode_fit import GRID, _decoder
    from spine_kp.inference.network_outputs import decode_trained

    hm = _blob_heatmaps(np.random.default_rng(5), 4, 6)
    codec, mask = HeatmapCodec((96, 96), stride=4, refine="dark"), np.array(keep)
    base = LevelOrderConfig(enabled=enabled)
    decode, seen = _decoder(hm, codec, base, mask), set()
    for absent in GRID["absent_score"]:
        for tol in GRID["step_tolerance"]:
            cfg = dataclasses.replace(base, absent_score=absent, absent_score_caudal=absent / 2, step_tolerance=tol)
            got, want = decode(cfg), decode_trained(hm, codec, cfg, mask)
            assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]), (absent, tol)
            seen.add(got[1].tobytes())
    assert len(seen) > 1 or not (enabled and mask.sum() >= 2)  # the settings do change the chain here


def test_the_fit_finds_the_candidates_once(train_tiny, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spine_kp.data.datamodule import SpineDataModule
    from spine_kp.engine import decode_fit
    from spine_kp.engine.config import load_experiment

    result = train_tiny(tmp_path / "run", {"decode.fit": "false"})
    calls = []
    real = decode_fit.heatmap_candidates
    monkeypatch.setattr(decode_fit, "heatmap_candidates", lambda *a: calls.append(1) or real(*a))
    dm = SpineDataModule(load_experiment(result.run_dir / "config.yaml").data)
    dm.setup("fit")
    entry = decode_fit.fit_decode(result.best_checkpoint, [*dm.train_records, *dm.val_records], dm.studies)
    assert entry is not None and len(entry["grid"]) >= 108 and calls == [1]
