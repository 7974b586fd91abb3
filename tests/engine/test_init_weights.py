"""Warm start from a spine_kp checkpoint: same schema, other schemas (rows mapped by name), errors, CLI, end to end."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from spine_kp.checkpoint import CheckpointError
from spine_kp.cli.main import main
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.init_weights import init_from_checkpoint
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.state_mapping import map_state
from spine_kp.engine.train import replace_data_paths, train
from spine_kp.models.decoders import DECODERS
from spine_kp.models.net import ModelConfig, build_landmark_net
from spine_kp.schema import Schema, load_schema

# Stacked hourglass without a backbone: the smallest net that has every schema-shaped tensor (its intermediate
# heatmap heads too).
HOURGLASS = {
    "model.backbone": "none",
    "model.decoder": "hourglass",
    "model.output_stride": "4",
    "model.decoder_channels": "8",
    "model.decoder_kwargs": "{num_stacks: 2, depth: 2}",
    "model.head_kwargs": "{hidden: 16, embed_dim: 4}",
}
TINY_RUN = {
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "data.augment.enabled": "false",
    "trainer.progress_bar": "false",
    "trainer.log_every_n_steps": "1",
    "trainer.max_epochs": "1",
    "trainer.limit_train_batches": "1",
    "trainer.limit_val_batches": "1",
}

# A subset of the default landmarks in another order plus one new landmark; kinds in the other order; the
# vertebra grades reordered with one new label.
OTHER_SCHEMA = {
    "name": "other",
    "kinds": {
        "disc": {"multi_label": True, "grades": {f"v{i}": "" for i in range(1, 8)}},
        "vertebra": {"grades": {"v2": "degenerative", "v1": "normal", "v3": "new"}},
    },
    "landmarks": [
        {"name": "L4-L5", "kind": "disc"},
        {"name": "L1", "kind": "vertebra"},
        {"name": "X9", "kind": "vertebra"},
        {"name": "L2-L3", "kind": "disc"},
        {"name": "L3", "kind": "vertebra"},
    ],
}


pytestmark = pytest.mark.usefixtures("one_thread")


def _module(schema: dict, seed: int, **overrides: str) -> LandmarkModule:
    torch.manual_seed(seed)
    cfg = load_experiment("demo_cpu", {**HOURGLASS, **overrides})
    return LandmarkModule(experiment_to_dict(cfg), schema)


def _randomised(module: LandmarkModule) -> LandmarkModule:
    """Every weight random, so an equal value after init cannot be a shared initialisation constant."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


def _save(module: LandmarkModule, path: Path) -> Path:
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def _state(module: LandmarkModule) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.model.state_dict().items()}


def test_same_schema_loads_every_tensor(tmp_path: Path) -> None:
    schema = load_schema().to_dict()
    src = _randomised(_module(schema, seed=0))
    dst = _module(schema, seed=1)
    report = init_from_checkpoint(dst, _save(src, tmp_path / "src.ckpt"))
    expected, got = src.model.state_dict(), dst.model.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in got)
    assert report.complete and len(report.loaded) == report.total == len(got)
    assert not (report.mapped or report.skipped or report.missing or report.unexpected)
    n = report.total
    expected = f"{tmp_path / 'src.ckpt'}: loaded {n}/{n} model tensors ({n} whole, 0 by landmark/grade name)"
    assert report.summary() == expected


def test_other_schema_copies_only_shared_rows(tmp_path: Path) -> None:
    source = load_schema()
    target = Schema.from_dict(OTHER_SCHEMA)
    src = _randomised(_module(source.to_dict(), seed=0))
    dst = _module(OTHER_SCHEMA, seed=1)
    fresh = _state(dst)
    report = init_from_checkpoint(dst, _save(src, tmp_path / "src.ckpt"))
    s, d = src.model.state_dict(), dst.model.state_dict()

    # Landmark axis: rows of shared names come from the source's row of that name; X9 keeps its fresh row.
    landmark_axes = {
        "heatmap_head.conv.weight": 0,
        "heatmap_head.conv.bias": 0,
        "grade_head.embedding.weight": 0,
        "decoder.net.intermediate_heads.0.weight": 0,
        "decoder.net.merge_predictions.0.weight": 1,
    }
    for key, axis in landmark_axes.items():
        for i, name in enumerate(target.landmarks):
            row = d[key].select(axis, i)
            if name == "X9":
                assert torch.equal(row, fresh[key].select(axis, i)), key
            else:
                assert torch.equal(row, s[key].select(axis, source.index(name))), (key, name)

    # Grade classifiers: matched by kind name (the kinds swapped places), then by grade label.
    disc_src, vert_src = (f"grade_head.classifiers.{i}" for i in (1, 0))
    disc_dst, vert_dst = (f"grade_head.classifiers.{i}" for i in (0, 1))
    for param in ("weight", "bias"):
        assert torch.equal(d[f"{disc_dst}.{param}"], s[f"{disc_src}.{param}"])
        v_dst, v_src, v_fresh = d[f"{vert_dst}.{param}"], s[f"{vert_src}.{param}"], fresh[f"{vert_dst}.{param}"]
        assert torch.equal(v_dst[0], v_src[1]) and torch.equal(v_dst[1], v_src[0])  # v2, v1
        assert torch.equal(v_dst[2], v_fresh[2])  # v3 is new

    # Tensors without a schema axis are copied whole.
    assert torch.equal(d["grade_head.mlp.0.weight"], s["grade_head.mlp.0.weight"])
    assert torch.equal(d["decoder.net.stem.0.weight"], s["decoder.net.stem.0.weight"])

    assert report.new_landmarks == ["X9"]
    assert set(report.dropped_landmarks) == set(source.landmarks) - set(target.landmarks)
    assert report.new_grades == ["vertebra/v3"] and report.dropped_grades == []
    mapped = {m.split(" ")[0] for m in report.mapped}
    assert set(landmark_axes) | {f"{vert_dst}.weight", f"{vert_dst}.bias"} <= mapped
    assert "heatmap_head.conv.weight (4/5 rows)" in report.mapped
    assert not (report.skipped or report.missing or report.unexpected) and not report.complete
    text = report.summary()
    assert "new landmarks, fresh init (1): X9" in text and "new grades, fresh init (1): vertebra/v3" in text
    assert "checkpoint landmarks dropped (8): T12, T12-L1, L1-L2, L2, L3-L4, L4, L5, L5-S1" in text


class _StubBackbone(nn.Module):
    """Two strided convs (stride 4 and 8): enough features for every decoder, nothing to download."""

    feature_channels = [8, 12, 16, 24]
    feature_reductions = [4, 8, 16, 32]

    def __init__(self) -> None:
        super().__init__()
        chans = [1, *self.feature_channels]
        self.blocks = nn.ModuleList(
            nn.Conv2d(a, b, 3, 4 if i == 0 else 2, 1) for i, (a, b) in enumerate(zip(chans, chans[1:]))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


@pytest.mark.parametrize("decoder", DECODERS.names())
def test_every_schema_shaped_tensor_is_mapped(decoder: str) -> None:
    """A decoder or head whose tensors grow with the schema must be known to the warm start, or it is skipped."""
    cfg = ModelConfig(
        backbone="stub",
        decoder=decoder,
        decoder_channels=8,
        decoder_kwargs={"depth": 2} if decoder == "hourglass" else {},
        head_kwargs={"hidden": 16, "embed_dim": 4},
    )
    source, target = load_schema(), Schema.from_dict(OTHER_SCHEMA)
    a = build_landmark_net(_StubBackbone(), cfg, source)
    b = build_landmark_net(_StubBackbone(), cfg, target)
    new_state, report = map_state(a.state_dict(), source, b.state_dict(), target)
    assert not (report.skipped or report.missing or report.unexpected), report.summary()
    assert len(new_state) == report.total == len(b.state_dict())


def test_other_backbone_loads_nothing_of_it(tmp_path: Path) -> None:
    schema = load_schema().to_dict()
    unet = {"model.decoder": "unet", "model.decoder_kwargs": "{}", "model.decoder_channels": "8"}
    src = _randomised(_module(schema, seed=0, **unet, **{"model.backbone": "resnet18"}))
    dst = _module(schema, seed=1, **unet, **{"model.backbone": "mobilenetv3_small_100"})
    fresh = _state(dst)
    report = init_from_checkpoint(dst, _save(src, tmp_path / "src.ckpt"))
    got = dst.model.state_dict()
    assert all(torch.equal(got[k], fresh[k]) for k in got if k.startswith("backbone."))
    assert not any(k.startswith("backbone.") for k in report.loaded + report.missing + report.unexpected)
    assert torch.equal(got["heatmap_head.conv.weight"], src.model.state_dict()["heatmap_head.conv.weight"])
    assert report.groups and report.groups[0].startswith("backbone differs (checkpoint 'resnet18', model")
    n_src, n_dst = (sum(k.startswith("backbone.") for k in m.model.state_dict()) for m in (src, dst))
    assert f"none of its tensors loaded ({n_src} in the checkpoint, {n_dst} in the model)" in report.summary()

    # Nothing at all fits: an error, not a silent fresh start.
    other = _module(schema, seed=2, **{"model.decoder_channels": "12", "model.head_kwargs": "{hidden: 8}"})
    with pytest.raises(CheckpointError, match="no weight fits this model"):
        init_from_checkpoint(other, tmp_path / "src.ckpt")


def test_files_that_are_not_spine_kp_checkpoints(tmp_path: Path) -> None:
    module = _module(load_schema().to_dict(), seed=0)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    backbone_only = tmp_path / "backbone.pth"
    torch.save(module.model.state_dict(), backbone_only)
    with pytest.raises(CheckpointError, match=r"missing\.ckpt does not exist"):
        init_from_checkpoint(module, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match=r"notes\.ckpt: not a spine_kp checkpoint \(not a readable torch file"):
        init_from_checkpoint(module, text)
    with pytest.raises(CheckpointError, match=r"backbone\.pth: not a spine_kp checkpoint.*model\.pretrained"):
        init_from_checkpoint(module, backbone_only)


def test_cli_bad_init_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.ckpt"
    bad.write_text("not a checkpoint\n")
    argv = ["train", "--data", str(tmp_path), "--annotations", str(tmp_path / "gt.json"), "--out", str(tmp_path)]
    assert main([*argv, "--init", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(bad) in err[0]


def test_train_then_init_from_its_checkpoint(
    synth_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = replace_data_paths(
        load_experiment("demo_cpu", {**HOURGLASS, **TINY_RUN}), synth_root / "studies", synth_root / "annotations.json"
    )
    first = train(cfg, tmp_path / "first")
    assert first.last_checkpoint is not None and first.init_report is None
    trained = torch.load(first.last_checkpoint, map_location="cpu", weights_only=False)["state_dict"]

    # A second run starts from those weights: after init (before any step) the model equals the checkpoint.
    seen: dict[str, torch.Tensor] = {}

    class _Snapshot(pl.Callback):
        def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
            seen.update({k: v.clone() for k, v in module.state_dict().items() if k.startswith("model.")})

    second = train(cfg, tmp_path / "second", fast_dev_run=True, init=first.last_checkpoint, callbacks=[_Snapshot()])
    assert second.init_report is not None and second.init_report.complete
    assert seen and all(torch.equal(seen[k], trained[k]) for k in seen)

    # Through the CLI: the summary goes to stdout.
    argv = ["train", "--config", "demo_cpu", "--data", str(synth_root / "studies")]
    argv += ["--annotations", str(synth_root / "annotations.json"), "--out", str(tmp_path / "cli")]
    argv += ["--init", str(first.last_checkpoint), "--fast-dev-run"]
    argv += [f"--{k}={v}" for k, v in {**HOURGLASS, **TINY_RUN}.items()]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"init: {first.last_checkpoint}: loaded" in out and "whole, 0 by landmark/grade name" in out

    # With --resume, last.ckpt wins and the init file is never read.
    with caplog.at_level(logging.WARNING, logger="spine_kp.engine.train"):
        resumed = train(cfg, tmp_path / "first", resume=True, init=tmp_path / "no_such.ckpt")
    assert resumed.init_report is None
    assert any("no_such.ckpt ignored: resuming from" in r.getMessage() for r in caplog.records)


def test_init_does_not_touch_the_source_state() -> None:
    """map_state must not write into the tensors it reads (the target's state dict is only cloned)."""
    source, target = load_schema(), Schema.from_dict(OTHER_SCHEMA)
    a = _module(source.to_dict(), seed=0).model.state_dict()
    b = _module(OTHER_SCHEMA, seed=1).model.state_dict()
    before_a, before_b = copy.deepcopy(a), copy.deepcopy(b)
    map_state(a, source, b, target)
    assert all(torch.equal(a[k], before_a[k]) for k in a) and all(torch.equal(b[k], before_b[k]) for k in b)
