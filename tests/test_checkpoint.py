"""The one checkpoint reader and the one codec rebuild: what training writes, prediction and warm starts read back."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from spine_kp.checkpoint import CheckpointError, build_codec, load_checkpoint
from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.engine.config import experiment_to_dict, load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.errors import UserError
from spine_kp.inference.torch_predictor import Predictor
from spine_kp.schema import load_schema
from spine_kp.types import Slice

TINY = {"data.input_size": "[64, 64]", "model.decoder_channels": "16"}


def _module(**overrides: str) -> LandmarkModule:
    cfg = load_experiment("demo_cpu", {**TINY, **overrides})
    torch.manual_seed(0)
    return LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())


def _save(module: LandmarkModule, path: Path, codec: dict | None | str = "stored", **extra: object) -> Path:
    """``module`` as training saves it; ``codec=None`` drops the stored codec (a checkpoint from before it was)."""
    hparams = dict(module.hparams)
    if codec is None:
        hparams.pop("codec")
    elif codec != "stored":
        hparams["codec"] = codec
    ckpt = {"hyper_parameters": hparams, "state_dict": module.state_dict(), "pytorch-lightning_version": pl.__version__}
    torch.save({**ckpt, **extra}, path)
    return path


def test_reads_what_training_writes(tmp_path: Path) -> None:
    module = _module(**{"codec.blur_sigma": "0.7"})
    entry = {"temperatures": {"vertebra": 1.5, "disc": 0.8}}
    ckpt = load_checkpoint(_save(module, tmp_path / "run.ckpt", calibration=entry))
    assert ckpt.path == tmp_path / "run.ckpt"
    assert ckpt.config == dict(module.hparams["config"]) and ckpt.model_config == module.hparams["config"]["model"]
    assert ckpt.schema.to_dict() == module.schema.to_dict() and ckpt.label_stats is None
    assert ckpt.codec == module.codec.to_dict() and ckpt.codec["blur_sigma"] == 0.7
    assert ckpt.temperatures == entry["temperatures"]
    assert set(ckpt.model_state) == set(module.model.state_dict())  # "model." stripped, recipe buffers left out


def test_files_that_are_not_spine_kp_checkpoints(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    bare = tmp_path / "bare.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bare)
    bad_schema = _save(_module(), tmp_path / "bad_schema.ckpt")
    raw = torch.load(bad_schema, weights_only=False)
    raw["hyper_parameters"]["schema"] = {"kinds": {}}
    torch.save(raw, bad_schema)
    cases = [
        (tmp_path / "missing.ckpt", r"checkpoint .*missing\.ckpt does not exist"),
        (text, r"notes\.ckpt: not a spine_kp checkpoint \(not a readable torch file"),
        (bare, r"bare\.pth: not a spine_kp checkpoint \(needs state_dict and hyper_parameters.*; see here$"),
        (bad_schema, r"bad_schema\.ckpt: damaged spine_kp checkpoint"),
    ]
    for path, message in cases:
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(path, hint="; see here")
        assert isinstance(info.value, UserError) and "\n" not in str(info.value)


def test_codec_from_the_checkpoint_else_from_the_config() -> None:
    config = experiment_to_dict(load_experiment("demo_cpu", {**TINY, "codec.sigma": "1.5"}))
    from_config = build_codec(config)
    assert from_config.to_dict() == {
        "input_size": [64, 64],
        "stride": config["model"]["output_stride"],
        "sigma": 1.5,
        "refine": "dark",
        "blur_sigma": 1.5,  # no codec.blur_sigma: DARK blurs with sigma
    }
    config["codec"]["blur_sigma"] = 0.7
    assert build_codec(config).blur_sigma == 0.7
    stored = HeatmapCodec((64, 64), stride=1, sigma=3.0, refine="soft_argmax", blur_sigma=2.5).to_dict()
    assert build_codec(config, stored).to_dict() == stored  # what the model was trained with wins


def _slice() -> Slice:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:128, :128]
    pixels = (200 * np.exp(-((xx - 64) ** 2) / 300) + 20 * rng.random((128, 128))).astype(np.float32)
    return Slice(pixels, (1.0, 1.0), "1.2.3", "1.2.3.4", "1.2.3.4.5", z_index=3, num_slices=7)


def test_a_model_trained_with_a_blur_sigma_predicts_with_it(tmp_path: Path) -> None:
    module = _module(**{"codec.blur_sigma": "0.7"})
    path = _save(module, tmp_path / "blur.ckpt")
    predictor = Predictor.from_checkpoint(path, device="cpu")
    assert predictor.codec.to_dict() == module.codec.to_dict() and predictor.codec.blur_sigma == 0.7
    # ... and it is what decodes: the default blur (= sigma) puts the points elsewhere
    ours = predictor.predict([_slice()])[0].coords
    other = HeatmapCodec.from_dict({**module.codec.to_dict(), "blur_sigma": None})
    predictor = predictor.with_card(dataclasses.replace(predictor.card, codec=other))
    assert not np.allclose(ours, predictor.predict([_slice()])[0].coords)


def test_training_and_prediction_rebuild_the_stored_codec(tmp_path: Path) -> None:
    module = _module()
    stored = {**module.codec.to_dict(), "blur_sigma": 0.5}  # differs from what the config alone would build
    path = _save(module, tmp_path / "stored.ckpt", codec=stored)
    assert Predictor.from_checkpoint(path, device="cpu").codec.to_dict() == stored
    assert LandmarkModule.load_from_checkpoint(path, map_location="cpu").codec.to_dict() == stored
    # a checkpoint from before the codec was stored: built from its config, as it was trained
    old = _save(_module(**{"codec.sigma": "1.5"}), tmp_path / "old.ckpt", codec=None)
    assert Predictor.from_checkpoint(old, device="cpu").codec.to_dict()["blur_sigma"] == 1.5
    assert LandmarkModule.load_from_checkpoint(old, map_location="cpu").codec.sigma == 1.5
