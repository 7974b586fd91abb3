"""The junction check end to end: training stores it, predict applies it, and a confident check moves the labels."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_configs import TINY_TRAIN

from spine_kp.api import load_predictor, predict_folder
from spine_kp.cli.main import main
from spine_kp.data.preprocess import Geometry
from spine_kp.engine.junction_train import train_junction
from spine_kp.inference.card import CardError, ModelCard
from spine_kp.inference.junction_check import JunctionCheckBase, in_image
from spine_kp.io.annotations import read_annotations
from spine_kp.junction.config import JunctionConfig
from spine_kp.junction.geometry import candidate_classes
from spine_kp.schema import load_schema
from spine_kp.types import Slice

SCHEMA = load_schema("default")  # T12, T12-L1, L1, ..., L5, L5-S1: discs at the odd indices
TINY = {
    "junction.enabled": "true",
    "junction.min_train_studies": "0",
    "junction.epochs": "1",
    "junction.size_px": "32",
    "junction.channels": "[8, 8]",
}


@pytest.fixture(scope="module")
def trained(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """``spine-kp train`` of the tiny model with the check: the run folder and what the command printed."""
    run = tmp_path_factory.mktemp("junction_run")
    argv = ["train", "--config", "demo_cpu", "--data", str(synth_root / "studies"), "--annotations"]
    argv += [str(synth_root / "annotations.json"), "--out", str(run)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*argv, *[f"--{k}={v}" for k, v in {**TINY_TRAIN, **TINY}.items()]]) == 0
    return run, out.getvalue()


@pytest.fixture(scope="module")
def junction_run(trained: tuple[Path, str]) -> Path:
    return trained[0]


def test_train_prints_what_the_check_was_trained_on(trained: tuple[Path, str]) -> None:
    line = [s for s in trained[1].splitlines() if s.startswith("junction check trained on")]
    assert len(line) == 1 and "slices in" in line[0]


def test_training_stores_the_check_and_predict_loads_it(junction_run: Path, synth_root: Path) -> None:
    ckpt = torch.load(junction_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=False)
    entry = ckpt["junction"]
    assert entry["config"]["size_px"] == 32 and entry["metrics"]["train_slices"] >= 1
    assert ckpt["model_card"]["junction"] == {"config": entry["config"]}
    predictor = load_predictor(junction_run, device="cpu")
    assert predictor.junction is not None and predictor.junction.config.channels == (8, 8)
    assert load_predictor(junction_run, device="cpu", junction=None).junction is None
    run = predict_folder(synth_root / "studies", predictor)
    assert len(run.predictions) == 5 and not run.failures
    assert all(len(p.record.points) > 0 for p in run.predictions)


def test_the_card_keeps_the_check_and_refuses_a_damaged_one(junction_run: Path) -> None:
    card = load_predictor(junction_run, device="cpu").card
    again = ModelCard.from_dict(card.to_dict())
    assert again.junction == card.junction
    bad = card.to_dict()
    bad["junction"]["config"]["size_px"] = 0
    with pytest.raises(CardError, match="junction.config"):
        ModelCard.from_dict(bad, source="x.ckpt")


def test_training_is_skipped_with_a_reason_when_no_slice_annotates_the_junction(
    synth_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from spine_kp.io.dicom import scan

    records = read_annotations(synth_root / "annotations.json", SCHEMA)
    cut = [
        dataclasses.replace(
            r,
            images=tuple(
                dataclasses.replace(im, points=tuple(p for p in im.points if p.identification != "L5-S1"))
                for im in r.images
            ),
        )
        for r in records
    ]
    studies = scan(synth_root / "studies").studies
    cfg = JunctionConfig(enabled=True, epochs=1, size_px=32, channels=(8,), min_train_studies=1)
    with caplog.at_level(logging.INFO, logger="spine_kp.engine.junction_train"):
        assert train_junction(cfg, SCHEMA, cut, [], studies) is None
    assert "only 0 training slices annotate L5-S1" in caplog.text


class _Says(JunctionCheckBase):
    """A check whose CNN answers as if the junction were candidate ``junction`` (confidently)."""

    def __init__(self, junction: int, margin: float = 0.0) -> None:
        super().__init__(JunctionConfig(enabled=True, size_px=16, margin=margin), SCHEMA)
        self.junction = junction

    def logits(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch) // 5
        out = np.zeros((len(batch), 5), dtype=np.float32)
        out[np.arange(len(batch)), np.tile(candidate_classes(self.junction), n)] = 8.0
        return out


def _chain() -> tuple[list[Slice], list[Geometry], np.ndarray, np.ndarray, np.ndarray]:
    """One 200 x 200 slice at 1 mm, input frame = original; 12 landmarks 12 px apart down x = 100 from y = 20."""
    slc = Slice(np.zeros((200, 200), np.float32), (1.0, 1.0), "1.2.3", "1.2.3.4", "1.2.3.4.5", 0, 1)
    geom = Geometry(1.0, 1.0, 0.0, 0.0, (200, 200), (1.0, 1.0), (200, 200))
    coords = np.stack([np.full(12, 100.0), 20.0 + 12.0 * np.arange(12)], axis=1)[None].astype(np.float32)
    peaks = np.full((1, 12), 0.9, np.float32)
    heatmaps = np.zeros((1, 12, 100, 100), np.float32)  # stride 2
    return [slc], [geom], coords, peaks, heatmaps


def test_a_check_that_finds_the_junction_one_disc_lower_moves_every_label_up_a_level() -> None:
    slices, geoms, coords, peaks, heatmaps = _chain()
    # L5 and L5-S1 one level (24 px) below their decoded points: where their own heatmaps peak
    for j in (10, 11):
        y = coords[0, j, 1] + 24.0
        heatmaps[0, j, int(round((y + 0.5) / 2 - 0.5)), int(round((100 + 0.5) / 2 - 0.5))] = 0.6
    trained = np.ones(12, bool)
    new, new_peaks, shifts = _Says(junction=3).check(slices, geoms, coords, peaks, heatmaps, 2, trained)
    assert shifts == [-2]
    np.testing.assert_allclose(new[0, :10], coords[0, 2:])  # T12 now sits where L1 was decoded, ...
    assert np.allclose(new[0, 10:, 1], coords[0, 10:, 1] + 24.0, atol=1.0)  # L5, L5-S1 from their heatmaps
    np.testing.assert_allclose(new_peaks[0, 10:], 0.6)
    # the same answer below the margin, or a check that agrees with the chain, changes nothing
    for check in (_Says(junction=2), _Says(junction=3, margin=1e6)):
        same, same_peaks, shifts = check.check(slices, geoms, coords, peaks, heatmaps, 2, trained)
        assert shifts == [0]
        np.testing.assert_array_equal(same, coords)
        np.testing.assert_array_equal(same_peaks, peaks)


def test_a_check_that_finds_the_junction_one_disc_higher_moves_every_label_down_a_level() -> None:
    slices, geoms, coords, peaks, heatmaps = _chain()
    new, new_peaks, shifts = _Says(junction=1).check(slices, geoms, coords, peaks, heatmaps, 2, np.ones(12, bool))
    assert shifts == [2]
    np.testing.assert_allclose(new[0, 2:], coords[0, :10])  # L5-S1 is where L4-L5 was decoded
    assert (new_peaks[0, :2] == 0).all()  # T12 and T12-L1 above: their heatmaps are empty, so not placed


def test_in_image_counts_the_slice_edges_as_inside() -> None:
    pts = np.array([[0.0, 0.0], [199.0, 99.0], [-0.1, 5.0], [5.0, 99.5], [200.0, 50.0], [100.0, 50.0]])
    np.testing.assert_array_equal(in_image(pts, (100, 200)), [True, True, False, False, False, True])


def test_a_chain_cut_by_the_slice_keeps_its_labels() -> None:
    slices, geoms, coords, peaks, heatmaps = _chain()
    trained = np.ones(12, bool)
    # the chain ends at L3-L4 (index 7): L4..L5-S1 not placed, so the chain has no hypothesis of its own
    peaks[0, 8:] = 0.0
    coords[0, 8:] = 0.0
    # with the slice going on below (candidate 3 at y 128), a check that calls its lowest disc L5-S1 moves it
    _, _, shifts = _Says(junction=2).check(slices, geoms, coords, peaks, heatmaps, 2, trained)
    assert shifts == [4]
    # the same chain 76 px lower: L3-L4 at y 180, candidate 3 at y 204, off the 200-row slice: the series is cut
    # below the chain, which keeps its labels whatever the check says
    coords[0, :8, 1] += 76.0
    for junction in (1, 2, 3):
        new, new_peaks, shifts = _Says(junction=junction).check(slices, geoms, coords, peaks, heatmaps, 2, trained)
        assert shifts == [0]
        np.testing.assert_array_equal(new, coords)
        np.testing.assert_array_equal(new_peaks, peaks)


def test_a_chain_less_than_a_disc_step_above_the_slice_edge_keeps_its_labels() -> None:
    slices, geoms, coords, peaks, heatmaps = _chain()
    trained = np.ones(12, bool)
    # the whole chain 30 px lower: L5-S1 at y 182, candidate 3 at y 206, off the 200-row slice (a field of view that
    # ends at the sacrum). The check moved every label up a level in the test above; here it moves nothing
    coords[0, :, 1] += 30.0
    for junction in (1, 3):
        new, new_peaks, shifts = _Says(junction=junction).check(slices, geoms, coords, peaks, heatmaps, 2, trained)
        assert shifts == [0]
        np.testing.assert_array_equal(new, coords)
        np.testing.assert_array_equal(new_peaks, peaks)
    # 8 px higher, candidate 3 lies at y 198, on the slice, and the check acts again
    coords[0, :, 1] -= 8.0
    _, _, shifts = _Says(junction=3).check(slices, geoms, coords, peaks, heatmaps, 2, trained)
    assert shifts == [-2]


def test_a_damaged_junction_entry_is_one_error_naming_the_file(junction_run: Path, tmp_path: Path) -> None:
    import shutil

    from spine_kp.checkpoint import CheckpointError, write_entry
    from spine_kp.inference.checkpoint_card import store_card

    path = tmp_path / "damaged.ckpt"
    shutil.copy(junction_run / "checkpoints" / "best.ckpt", path)
    entry = torch.load(path, map_location="cpu", weights_only=False)["junction"]
    write_entry(path, "junction", {**entry, "state_dict": {"features.0.weight": torch.zeros(3)}})
    store_card(path)
    with pytest.raises(CheckpointError, match=r"damaged\.ckpt: damaged junction entry"):
        load_predictor(path, device="cpu")
    write_entry(path, "junction", {**entry, "config": {**entry["config"], "margin": -1}})
    with pytest.raises(CardError, match="junction.config"):
        store_card(path)
