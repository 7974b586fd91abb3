"""The junction check in ONNX: exported with the network, cut into its own session, and the same as PyTorch's."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spine_kp import api
from spine_kp.junction.config import JunctionConfig

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

#: a small crop CNN, so the export stays quick (no training: its weights are random, with a fixed seed)
JUNCTION = JunctionConfig(enabled=True, size_px=32, window_mm=96.0, channels=(8, 8), dropout=0.0, epochs=0)
#: coordinates of the two backends may differ by float32 rounding; records keep 0.01 px anyway
COORD_TOL = 1e-2


def add_stage(path: Path, seed: int = 1) -> None:
    """Store a randomly initialised crop grading stage in the checkpoint at ``path`` (as in test_onnx_metadata: the
    tiny run has too few studies to train one), so the graph carries both optional parts."""
    import torch

    from spine_kp.checkpoint import load_checkpoint, write_entry
    from spine_kp.config import to_dict
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.grading.model import create_crop_grader

    schema = load_checkpoint(path).schema
    config = GradeStageConfig(enabled=True, size_px=16, channels=(8,), depth=1, embed_dim=4, hidden=8, neighbours=1)
    torch.manual_seed(seed)
    grader = create_crop_grader(config, schema)
    payload = {"version": 1, "config": to_dict(config), "state_dict": grader.state_dict()}
    write_entry(path, "grade_stage", payload | {"temperatures": {"vertebra": 1.3, "disc": 0.9}, "metrics": {}})


def add_junction(path: Path, seed: int = 7) -> None:
    """Store a randomly initialised junction check in the checkpoint at ``path`` and its card with it (writing an entry
    drops the stored card; :func:`store_card` rebuilds it from the entries)."""
    import torch

    from spine_kp.checkpoint import JUNCTION_KEY, write_entry
    from spine_kp.config import to_dict
    from spine_kp.inference.checkpoint_card import store_card
    from spine_kp.junction.model import JunctionNet

    g = torch.Generator().manual_seed(seed)
    model = JunctionNet(JUNCTION.channels, JUNCTION.dropout)
    with torch.no_grad():  # GroupNorm starts at 1 / 0: perturb every weight so the logits are far from trivial
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    payload = {"version": 1, "config": to_dict(JUNCTION), "state_dict": model.state_dict(), "metrics": {}}
    write_entry(path, JUNCTION_KEY, payload)
    store_card(path)


@pytest.fixture(scope="module")
def junction_checkpoint(train_tiny: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained checkpoint (one epoch), plus a random crop grading stage and a random junction check."""
    result = train_tiny(tmp_path_factory.mktemp("junction_run"))
    assert result.last_checkpoint is not None
    path = tmp_path_factory.mktemp("junction_ckpt") / "junction.ckpt"
    shutil.copyfile(result.last_checkpoint, path)
    add_stage(path)
    add_junction(path)
    return path


@pytest.fixture(scope="module")
def exported(junction_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The export's :class:`~spine_kp.export.onnx.ExportResult` (network, crop grading stage and junction check)."""
    from spine_kp.export.onnx import export_onnx

    return export_onnx(junction_checkpoint, tmp_path_factory.mktemp("onnx") / "junction.onnx")


@pytest.fixture(scope="module")
def studies(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two of the phantom studies (copies: the scan follows no links), enough to compare the backends quickly."""
    root = tmp_path_factory.mktemp("two_studies")
    for study in sorted(p for p in (synth_root / "studies").iterdir() if p.is_dir())[:2]:
        shutil.copytree(study, root / study.name)
    return root


def test_the_export_has_the_junction_input_output_and_card(exported: Any, junction_checkpoint: Path) -> None:
    from spine_kp.config import to_dict
    from spine_kp.inference.onnx_predictor import (
        CROPS,
        JUNCTION_CROPS,
        JUNCTION_LOGITS,
        METADATA_KEY,
        graph_shapes,
        load_card,
    )

    model = onnx.load(str(exported.path))
    inputs = [i.name for i in model.graph.input]
    outputs = [o.name for o in model.graph.output]
    assert inputs == ["images", "points", CROPS, JUNCTION_CROPS]  # the stage's crops first, then the check's
    assert outputs[-1] == JUNCTION_LOGITS and outputs.count(JUNCTION_LOGITS) == 1
    shapes = graph_shapes(model)
    assert shapes[JUNCTION_CROPS] == (None, 1, 32, 32) and shapes[JUNCTION_LOGITS] == (None, 5)  # dynamic batch
    assert exported.max_abs_diff[JUNCTION_LOGITS] <= 1e-4  # verified against PyTorch like the other outputs
    meta = json.loads({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
    assert meta["junction"] == {"config": to_dict(JUNCTION)} and meta["grade_stage"] is not None
    card = load_card(exported.path)  # the card is accepted against the graph's shapes
    assert card.junction is not None and card.junction.config == JUNCTION


def test_torch_and_onnx_runtime_give_the_same_logits(exported: Any, junction_checkpoint: Path) -> None:
    from spine_kp.inference.junction_torch import JunctionCheck
    from spine_kp.inference.onnx_predictor import OnnxJunctionCheck

    torch_check = api.load_predictor(junction_checkpoint, device="cpu").junction
    onnx_check = api.load_predictor(exported.path, device="cpu").junction
    assert isinstance(torch_check, JunctionCheck) and isinstance(onnx_check, OnnxJunctionCheck)
    assert onnx_check.config == torch_check.config and onnx_check.layout == torch_check.layout
    rng = np.random.default_rng(0)
    for n in (1, 7):  # another batch size than the export's own check
        crops = rng.standard_normal((n, 1, 32, 32)).astype(np.float32)
        expected, got = torch_check.logits(crops), onnx_check.logits(crops)
        assert got.shape == expected.shape == (n, 5)
        assert np.abs(expected).max() > 1e-3  # not a trivial zero output
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_predictions_through_onnx_equal_the_checkpoints(
    exported: Any, junction_checkpoint: Path, studies: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from spine_kp.inference.junction_check import JunctionCheckBase
    from spine_kp.inference.junction_torch import JunctionCheck
    from spine_kp.inference.onnx_predictor import OnnxJunctionCheck

    checked: dict[str, int] = {}  # crops each backend's CNN classified: the check must really run
    for cls in (JunctionCheck, OnnxJunctionCheck):
        original = cls.logits

        def counted(self: Any, batch: np.ndarray, _original: Any = original, _name: str = cls.__name__) -> Any:
            checked[_name] = checked.get(_name, 0) + len(batch)
            return _original(self, batch)

        monkeypatch.setattr(cls, "logits", counted)
    shifts: dict[str, list[int]] = {}  # per backend, each slice's label move (0: kept)
    check = JunctionCheckBase.check

    def recorded(self: JunctionCheckBase, *args: Any) -> Any:
        out = check(self, *args)
        shifts.setdefault(type(self).__name__, []).extend(out[2])
        return out

    monkeypatch.setattr(JunctionCheckBase, "check", recorded)
    # The one-epoch network's level-order decoding places too few discs for the check (it needs three), so the
    # predictions are also compared with each landmark at its own heatmap maximum: all placed, the check runs.
    for level_order in (True, False):
        runs = [
            api.predict_folder(studies, api.load_predictor(model, device="cpu", level_order=level_order))
            for model in (junction_checkpoint, exported.path)
        ]
        _assert_same_points(*(run.records for run in runs))
    assert checked["JunctionCheck"] == checked["OnnxJunctionCheck"] > 0
    assert shifts["JunctionCheck"] == shifts["OnnxJunctionCheck"]  # the same decisions, moves included


def _assert_same_points(by_torch: list[Any], by_onnx: list[Any]) -> None:
    assert len(by_torch) == len(by_onnx) == 2
    for a, b in zip(by_torch, by_onnx):
        assert a.study_uid == b.study_uid
        assert len(a.points) == len(b.points) and a.points
        torch_points = {p.identification: p for p in a.points}
        onnx_points = {p.identification: p for p in b.points}
        assert set(onnx_points) == set(torch_points)  # the same labels: the same junction decision
        for name, p in torch_points.items():
            np.testing.assert_allclose(onnx_points[name].coord, p.coord, atol=COORD_TOL, rtol=0)


def test_the_junction_check_can_be_left_out(exported: Any) -> None:
    predictor = api.load_predictor(exported.path, device="cpu", junction=None)
    assert predictor.junction is None and predictor.grade_stage is not None
    assert api.load_predictor(exported.path, device="cpu", grade_stage=None).junction is not None


def test_a_check_without_the_stage_is_exported_alone(junction_checkpoint: Path, tmp_path: Path) -> None:
    # The junction's input then follows points directly (the forward's optional inputs are positional).
    from spine_kp.export.onnx import export_onnx
    from spine_kp.inference.onnx_predictor import JUNCTION_CROPS, JUNCTION_LOGITS, load_card

    result = export_onnx(junction_checkpoint, tmp_path / "no_stage.onnx", without_grade_stage=True)
    model = onnx.load(str(result.path))
    assert [i.name for i in model.graph.input] == ["images", "points", JUNCTION_CROPS]
    assert JUNCTION_LOGITS in result.max_abs_diff
    assert not any(name.startswith("stage_logits.") for name in result.max_abs_diff)
    card = load_card(result.path)
    assert card.grade_stage is None and card.junction is not None
    predictor = api.load_predictor(result.path, device="cpu")
    assert predictor.grade_stage is None and predictor.junction is not None
