"""Tiny untrained checkpoints built from a config in code (no training, no downloads), one per backbone family."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny models: one intra-op thread (more only thrash on a shared 2-core machine)."""


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``make_checkpoint(backbone, decoder)`` -> a 64 x 64 checkpoint with random weights, as training writes it."""
    import torch

    from spine_kp.engine.config import experiment_to_dict, load_experiment
    from spine_kp.engine.module import LandmarkModule
    from spine_kp.schema import load_schema

    folder = tmp_path_factory.mktemp("checkpoints")

    def make(backbone: str, decoder: str = "unet", **overrides: str) -> Path:
        path = folder / f"{backbone}_{decoder}.ckpt"
        if not path.exists():
            options = {"data.input_size": "[64, 64]", "model.decoder_channels": "16", "model.output_stride": "4"}
            options.update({"model.backbone": backbone, "model.decoder": decoder, **overrides})
            cfg = load_experiment("demo_cpu", options)
            torch.manual_seed(0)
            module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
            torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
        return path

    return make
