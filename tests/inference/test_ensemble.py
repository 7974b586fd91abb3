"""A fold ensemble saved as one checkpoint predicts the mean of its members (``spine-kp ensemble``,
:mod:`spine_kp.fold_ensemble`, :mod:`spine_kp.inference.ensemble`).

Members are untrained tiny models made in code (different seeds, temperatures and crop graders), so nothing trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spine_kp.checkpoint import CheckpointError, load_checkpoint
from spine_kp.cli.main import main
from spine_kp.codec.level_order import LevelOrderConfig
from spine_kp.config import from_dict, parse_override_args, to_dict
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.fold_ensemble import SpineEnsemble, load_ensemble, load_model_file, write_ensemble
from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.model import create_crop_grader
from spine_kp.inference.ensemble import EnsembleNetwork, EnsemblePredictor
from spine_kp.inference.network_outputs import grade_probabilities, network_probabilities
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.models.net import ModelConfig, create_model
from spine_kp.predict.runner import PredictOptions, predict_folder
from spine_kp.schema import load_schema

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny convolutions: more threads only thrash on 2 shared cores

# A tiny hourglass on 64 x 64 inputs (as the hand-made checkpoints of tests/cli/test_user_errors.py).
TINY = [
    "--model.backbone", "none", "--model.decoder", "hourglass", "--model.output_stride", "4",
    "--model.decoder_channels", "8", "--model.decoder_kwargs", "{num_stacks: 2, depth: 2}",
    "--model.head_kwargs", "{hidden: 16, embed_dim: 4}", "--data.input_size", "[64, 64]",
]  # fmt: skip
STAGE = GradeStageConfig(enabled=True, size_px=16, channels=(4, 8), depth=1, hidden=8, embed_dim=4, neighbours=1)


def make_member(
    path: Path, seed: int, schema: str | None = None, temperatures: dict | None = None, stage: bool = True, **data
) -> Path:
    """A valid checkpoint of an untrained tiny model (weights from ``seed``), with grade temperatures and, with
    ``stage``, an untrained crop grading stage; ``data`` overrides the stored ``data`` config section."""
    torch.manual_seed(seed)
    config = experiment_to_dict(load_experiment("demo_cpu", parse_override_args(TINY)))
    config["data"].update(data)
    sch = load_schema(schema)
    model = create_model(from_dict(ModelConfig, config["model"]), sch)
    ckpt = {
        "hyper_parameters": {"config": config, "schema": sch.to_dict()},
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "calibration": {"temperatures": temperatures or {}},
        "optimizer_states": [{"state": {0: torch.zeros(3)}}],  # what an ensemble leaves out
    }
    if stage:
        grader = create_crop_grader(STAGE, sch)
        ckpt["grade_stage"] = {"config": to_dict(STAGE), "state_dict": grader.state_dict(), "temperatures": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("members")
    a = make_member(tmp / "fold0" / "checkpoints" / "best.ckpt", 0, temperatures={"disc": 2.0, "vertebra": 0.5})
    b = make_member(tmp / "fold1.ckpt", 1, temperatures={"disc": 0.7})
    return a, b


def _ensemble(tmp: Path, *paths: Path) -> Path:
    return write_ensemble([load_checkpoint(p) for p in paths], tmp / "ensemble.ckpt")


def _predictions(predictor: Predictor, root: Path, flip_tta: bool = False) -> list:
    options = PredictOptions(progress=False, workers=1, flip_tta=flip_tta)
    return predict_folder(root, predictor, options).predictions


def test_an_ensemble_of_a_checkpoint_with_itself_predicts_what_it_predicts(members, synth_root, tmp_path) -> None:
    ens_path = _ensemble(tmp_path, members[0], members[0])
    single = Predictor.from_checkpoint(members[0], device="cpu")
    ensemble = Predictor.from_checkpoint(ens_path, device="cpu")
    assert isinstance(ensemble, EnsemblePredictor) and len(ensemble.members) == 2
    assert ensemble.grade_stage is not None  # the members' crop stages run (and are averaged)
    root = synth_root / "studies"
    for flip in (False, True):
        ours, theirs = _predictions(ensemble, root, flip), _predictions(single, root, flip)
        assert len(ours) == len(theirs) == 5
        for a, b in zip(ours, theirs):
            assert a.record == b.record
            np.testing.assert_array_equal(a.coords, b.coords)
            np.testing.assert_array_equal(a.peaks, b.peaks)
            for kind in b.grade_probs:
                np.testing.assert_array_equal(a.grade_probs[kind], b.grade_probs[kind])


def test_the_ensemble_network_averages_heatmaps_and_each_members_own_probabilities(members, tmp_path) -> None:
    """Two different members: mean heatmaps, and the mean of the probabilities each member gives with its own
    temperatures (not the probabilities of the mean logits)."""
    ensemble = Predictor.from_checkpoint(_ensemble(tmp_path, *members), device="cpu")
    singles = [Predictor.from_checkpoint(p, device="cpu") for p in members]
    network = ensemble.network
    assert isinstance(network, EnsembleNetwork)
    images = np.random.default_rng(0).normal(size=(2, 1, 64, 64)).astype(np.float32)
    heatmaps, features = network.run(images)
    runs = [s.network.run(images) for s in singles]
    assert not np.allclose(runs[0][0], runs[1][0])  # the members differ
    np.testing.assert_allclose(heatmaps, (runs[0][0] + runs[1][0]) / 2, rtol=1e-6, atol=1e-7)
    points = np.random.default_rng(1).uniform(4, 60, size=(2, ensemble.schema.num_landmarks, 2)).astype(np.float32)
    probs = network_probabilities(network, features, points, ensemble.schema, ensemble.trained, {})
    each = [
        grade_probabilities(s.network.grade(f, points), s.schema, s.trained, s.temperatures)
        for s, (_, f) in zip(singles, runs)
    ]
    from_mean_logits = grade_probabilities(network.grade(features, points), ensemble.schema, ensemble.trained)
    for kind in probs:
        np.testing.assert_allclose(probs[kind], (each[0][kind] + each[1][kind]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(probs["disc"], from_mean_logits["disc"], atol=1e-4)


def test_the_crop_stages_are_averaged(members, synth_root, tmp_path) -> None:
    ensemble = Predictor.from_checkpoint(_ensemble(tmp_path, *members), device="cpu")
    singles = [Predictor.from_checkpoint(p, device="cpu") for p in members]
    preds = _predictions(ensemble, synth_root / "studies")[:2]
    slices = [p.slice for p in preds]
    coords = [p.coords for p in preds]
    peaks = np.stack([p.peaks for p in preds])
    head = [{k: np.full_like(v, 0.25) for k, v in p.grade_probs.items()} for p in preds]
    ours = ensemble.regrade(slices, coords, peaks, head)
    each = [s.regrade(slices, coords, peaks, head) for s in singles]
    assert not np.allclose(each[0][0]["disc"], each[1][0]["disc"])
    for i in range(len(slices)):
        for kind in ours[i]:
            np.testing.assert_allclose(ours[i][kind], (each[0][i][kind] + each[1][i][kind]) / 2, rtol=1e-5, atol=1e-6)


def test_cli_ensemble_then_predict(members, synth_root, tmp_path, capsys) -> None:
    """A run folder stands for its best.ckpt; the ensemble holds the networks, not the optimizer states."""
    run_dir = members[0].parent.parent
    out = tmp_path / "folds.ckpt"
    assert main(["ensemble", str(run_dir), str(members[1]), "-o", str(out)]) == 0
    assert f"ensemble: {out} (2 members" in capsys.readouterr().out
    read = load_ensemble(out)
    assert isinstance(read, SpineEnsemble) and read.sources == (str(members[0]), str(members[1]))
    stored = torch.load(out, weights_only=True)["spine_kp_ensemble"]["members"][0]
    assert "optimizer_states" not in stored and all(k.startswith("model.") for k in stored["state_dict"])
    assert read.members[0].temperatures == {"disc": 2.0, "vertebra": 0.5}
    three = tmp_path / "three.ckpt"  # an ensemble given as a member adds its members
    assert main(["ensemble", str(out), str(members[0]), "-o", str(three)]) == 0
    assert len(load_ensemble(three).members) == 3
    pred = tmp_path / "pred.json"
    code = main(["predict", str(synth_root / "studies"), "--checkpoint", str(out), "-o", str(pred), "--quiet"])
    assert code == 0 and pred.is_file()
    assert "predicted 5 studies, 0 failed" in capsys.readouterr().out


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [("schema", {"schema": "tianchi"}), ("data.input_size", {"input_size": [96, 96]}),
     ("data.target_spacing", {"target_spacing": 1.2}), ("data.neighbours", {"neighbours": 1})],
)  # fmt: skip
def test_members_that_disagree_are_one_error(members, tmp_path, capsys, field, kwargs) -> None:
    other = make_member(tmp_path / "other.ckpt", 2, stage=False, **kwargs)
    out = tmp_path / "e.ckpt"
    assert main(["ensemble", str(members[0]), str(other), "-o", str(out)]) == 2
    (line,) = _error_lines(capsys)
    assert line.startswith("error: ensemble members ") and f"differ in {field} (" in line
    assert str(members[0]) in line and str(other) in line
    assert not out.exists()


def test_one_member_is_one_error(members, tmp_path, capsys) -> None:
    assert main(["ensemble", str(members[0]), "-o", str(tmp_path / "e.ckpt")]) == 2
    (line,) = _error_lines(capsys)
    assert "needs at least 2 member checkpoints, got 1" in line


def test_a_file_that_disagrees_is_refused_when_read(members, tmp_path) -> None:
    """A hand-made file gets the same checks as one ``spine-kp ensemble`` writes."""
    out = _ensemble(tmp_path, *members)
    data = torch.load(out, weights_only=True)
    data["spine_kp_ensemble"]["members"][1]["hyper_parameters"]["config"]["data"]["input_size"] = [32, 32]
    torch.save(data, out)
    with pytest.raises(CheckpointError, match=r"ensemble\.ckpt#member1 and .*ensemble\.ckpt#member2 differ in data"):
        load_model_file(out)
    data["spine_kp_ensemble"]["members"] = data["spine_kp_ensemble"]["members"][:1]
    torch.save(data, out)
    with pytest.raises(CheckpointError, match="needs at least 2 member"):
        Predictor.from_checkpoint(out, device="cpu")


class Payload:
    """Unpickling this writes ``marker``: what a hostile ensemble file would do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def test_an_ensemble_with_a_pickled_payload_is_refused(members, synth_root, tmp_path, capsys) -> None:
    out = _ensemble(tmp_path, *members)
    marker = tmp_path / "ran.txt"
    data = torch.load(out, weights_only=True)
    data["spine_kp_ensemble"]["members"][1]["grade_stage"]["extra"] = Payload(marker)
    torch.save(data, out)
    pred = tmp_path / "pred.json"
    assert main(["predict", str(synth_root / "studies"), "--checkpoint", str(out), "-o", str(pred), "--quiet"]) == 2
    (line,) = _error_lines(capsys)
    assert f"{out}: refused: it needs code to load" in line
    with pytest.raises(CheckpointError, match="refused: it needs code to load"):
        load_ensemble(out)
    assert main(["ensemble", str(out), str(members[0]), "-o", str(tmp_path / "again.ckpt")]) == 2
    assert "refused: it needs code to load" in _error_lines(capsys)[0]
    assert not marker.exists() and not pred.exists()


def test_export_refuses_an_ensemble(members, tmp_path, capsys) -> None:
    out = _ensemble(tmp_path, *members)
    onnx = tmp_path / "m.onnx"
    assert main(["export", str(out), "--onnx", str(onnx)]) == 2
    (line,) = _error_lines(capsys)
    assert "a fold ensemble of 2 members" in line and "export one member" in line
    assert not onnx.exists()


def test_an_ensemble_member_is_not_a_checkpoint_elsewhere(members, tmp_path) -> None:
    """``load_checkpoint`` (train --init, ...) still reads one checkpoint only, and ``load_ensemble`` one ensemble."""
    out = _ensemble(tmp_path, *members)
    with pytest.raises(CheckpointError, match="not a spine_kp checkpoint"):
        load_checkpoint(out)
    with pytest.raises(CheckpointError, match="one checkpoint, not a fold ensemble"):
        load_ensemble(members[1])


def test_overrides_reach_every_member(members, tmp_path) -> None:
    """``temperatures`` and ``grade_stage`` replace every member's; ``decode`` the ensemble's one decoding."""
    out = _ensemble(tmp_path, *members)
    raw = Predictor.from_checkpoint(
        out, device="cpu", temperatures={}, grade_stage=None, decode=LevelOrderConfig(False)
    )
    assert isinstance(raw, EnsemblePredictor)
    assert [m.temperatures for m in raw.members] == [{}, {}]
    assert raw.grade_stage is None and not raw.decode.enabled
    stored = Predictor.from_checkpoint(out, device="cpu")
    assert [m.temperatures for m in stored.members] == [{"disc": 2.0, "vertebra": 0.5}, {"disc": 0.7}]
    with pytest.raises(TypeError, match="unknown overrides for a fold ensemble"):
        Predictor.from_checkpoint(out, device="cpu", bogus=1)
