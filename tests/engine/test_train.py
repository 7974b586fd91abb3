"""Training under Lightning: smoke runs per architecture, resume, self-contained checkpoints."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from spine_kp.engine.config import load_experiment
from spine_kp.engine.module import LandmarkModule
from spine_kp.engine.train import replace_data_paths, train
from spine_kp.inference.torch_predictor import Predictor

TINY = {
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "data.augment.enabled": "true",
    "model.decoder_channels": "16",
    "trainer.progress_bar": "false",
    "trainer.log_every_n_steps": "1",
}


def _cfg(synth_root, **overrides):
    cfg = load_experiment("demo_cpu", {**TINY, **overrides})
    return replace_data_paths(cfg, synth_root / "studies", synth_root / "annotations.json")


@pytest.mark.parametrize(
    "model",
    [
        {"model.backbone": "resnet18", "model.decoder": "unet"},
        {
            "model.backbone": "none",
            "model.decoder": "hourglass",
            "model.output_stride": "4",
            "model.decoder_kwargs": "{num_stacks: 2, depth: 2}",
        },
        {"model.backbone": "mobilenetv3_small_100", "model.decoder": "fpn", "model.output_stride": "4"},
        {"model.backbone": "pvt_v2_b0", "model.decoder": "segformer", "model.output_stride": "4"},
    ],
    ids=["resnet18-unet", "hourglass", "mobilenetv3-fpn", "pvt-segformer"],
)
def test_fast_dev_run(synth_root, tmp_path, model):
    result = train(_cfg(synth_root, **model), tmp_path / "run", fast_dev_run=True)
    assert result.epochs >= 0
    assert (tmp_path / "run" / "config.yaml").exists()


def test_fit_resume_and_self_contained_checkpoint(synth_root, tmp_path):
    cfg = _cfg(synth_root, **{"trainer.max_epochs": "1", "codec.blur_sigma": "0.7"})
    run = tmp_path / "run"
    first = train(cfg, run)
    assert first.last_checkpoint is not None and first.best_checkpoint is not None
    ckpt = torch.load(first.last_checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0
    assert {"config", "schema", "label_stats", "codec"} <= set(ckpt["hyper_parameters"])
    assert ckpt["hyper_parameters"]["codec"]["blur_sigma"] == 0.7  # the codec it was trained with, stored
    assert ckpt["optimizer_states"] and ckpt["lr_schedulers"]
    step_before = ckpt["global_step"]

    # --resume continues from last.ckpt: epoch counter and optimizer step go on.
    more = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, max_epochs=2))
    second = train(more, run, resume=True)
    again = torch.load(second.last_checkpoint, map_location="cpu", weights_only=False)
    assert again["epoch"] > ckpt["epoch"] and again["global_step"] == 2 * step_before

    # The checkpoint alone rebuilds the model: identical outputs from Lightning's loader and from the predictor.
    module = LandmarkModule.load_from_checkpoint(second.last_checkpoint, map_location="cpu").eval()
    predictor = Predictor.from_checkpoint(second.last_checkpoint, device="cpu")
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        a, b = module(x)["heatmaps"], predictor.model(x)["heatmaps"]
    assert torch.equal(a, b)
    assert predictor.input_size == (64, 64)
    assert predictor.codec.to_dict() == module.codec.to_dict() and predictor.codec.blur_sigma == 0.7


def test_resume_without_checkpoint_is_an_error(synth_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        train(_cfg(synth_root), tmp_path / "empty", resume=True)


def test_last_checkpoint_is_the_latest_epoch_when_the_best_is_older(synth_root, tmp_path):
    """``--resume`` must continue from the latest epoch, not from the best one (Lightning's save_last does not)."""
    # "step" only grows, so with mode "min" the best checkpoint stays at epoch 0
    cfg = _cfg(synth_root, **{"trainer.max_epochs": "2", "trainer.monitor": "step", "trainer.monitor_mode": "min",
                              "trainer.limit_train_batches": "1", "trainer.limit_val_batches": "1"})  # fmt: skip
    result = train(cfg, tmp_path / "run")
    best = torch.load(result.best_checkpoint, map_location="cpu", weights_only=False)
    last = torch.load(result.last_checkpoint, map_location="cpu", weights_only=False)
    assert best["epoch"] == 0
    assert last["epoch"] == 1 and last["global_step"] == 2
