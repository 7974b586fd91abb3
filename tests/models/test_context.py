"""``model.context``: the global-attention block on the deepest map (identity at init, any size, warm start, ONNX)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from spine_kp.config import from_dict, to_dict
from spine_kp.engine.state_mapping import map_state
from spine_kp.models.context import CONTEXTS, GlobalAttention, create_context, sine_positions
from spine_kp.models.net import ModelConfig, create_model
from spine_kp.schema import load_schema

SCHEMA = load_schema("tianchi")
BASE = ModelConfig(backbone="resnet18", decoder="unet", decoder_channels=16, output_stride=4)
WITH_CONTEXT = dataclasses.replace(BASE, context="attention", context_kwargs={"dim": 32, "heads": 4})


def _nonzero_out(block: GlobalAttention, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        block.proj_out.weight.copy_(torch.randn(block.proj_out.weight.shape, generator=g) * 0.1)


def test_a_new_block_is_the_identity_so_a_warm_start_predicts_as_before() -> None:
    torch.manual_seed(0)
    plain = create_model(BASE, SCHEMA).eval()
    torch.manual_seed(1)
    ctx = create_model(WITH_CONTEXT, SCHEMA).eval()
    tensors, report = map_state(plain.state_dict(), SCHEMA, ctx.state_dict(), SCHEMA)
    result = ctx.load_state_dict(tensors, strict=False)
    assert result.missing_keys and all(k.startswith("context.") for k in result.missing_keys)
    x = torch.randn(2, 1, 64, 96)
    with torch.no_grad():
        a, b = plain(x)["heatmaps"], ctx(x)["heatmaps"]
    assert torch.equal(a, b)


def test_the_block_mixes_information_across_the_whole_map() -> None:
    block = GlobalAttention(8, dim=16, heads=2).eval()
    _nonzero_out(block)
    x = torch.zeros(1, 8, 4, 5)
    y0 = block(x)
    x[0, :, 3, 4] = 1.0  # change one far corner cell
    y1 = block(x)
    assert (y1[0, :, 0, 0] - y0[0, :, 0, 0]).abs().max() > 1e-4  # the opposite corner sees it


def test_any_input_size_and_the_position_code() -> None:
    ctx = create_model(WITH_CONTEXT, SCHEMA).eval()
    _nonzero_out(ctx.context)
    for size in ((64, 64), (96, 160)):
        with torch.no_grad():
            out = ctx(torch.randn(1, 1, *size))["heatmaps"]
        assert out.shape[-2:] == (size[0] // 4, size[1] // 4)
    code = sine_positions(3, 5, 8)
    assert code.shape == (15, 8)
    assert len({tuple(np.round(r, 5)) for r in code.numpy()}) == 15  # every cell has its own code
    with pytest.raises(ValueError, match="multiple of 4"):
        sine_positions(2, 2, 6)


def test_config_checks_and_round_trip() -> None:
    assert set(CONTEXTS.names()) >= {"none", "attention"}
    with pytest.raises(KeyError, match="context"):
        create_context("lstm", 8)
    with pytest.raises(ValueError, match="context_kwargs"):
        create_context("none", 8, dim=16)
    with pytest.raises(ValueError, match="needs a backbone"):
        ModelConfig(backbone="none", decoder="hourglass", context="attention")
    with pytest.raises(ValueError, match="divisible by heads"):
        GlobalAttention(8, dim=20, heads=3)
    again = from_dict(ModelConfig, to_dict(WITH_CONTEXT))
    assert again == WITH_CONTEXT
    assert from_dict(ModelConfig, {k: v for k, v in to_dict(BASE).items() if not k.startswith("context")}) == BASE


def test_the_block_exports_to_onnx_and_reproduces_pytorch(make_context_checkpoint) -> None:
    pytest.importorskip("onnxruntime")
    from spine_kp.export.onnx import export_onnx

    ckpt, folder = make_context_checkpoint
    result = export_onnx(ckpt, folder / "model.onnx")
    assert max(result.max_abs_diff.values()) <= 1e-4


@pytest.fixture
def make_context_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    """A 64 x 64 checkpoint with a context block whose output projection is not zero (so the export runs it)."""
    from spine_kp.engine.config import experiment_to_dict, load_experiment
    from spine_kp.engine.module import LandmarkModule

    options = {
        "data.input_size": "[64, 64]",
        "model.decoder_channels": "16",
        "model.output_stride": "4",
        "model.backbone": "resnet18",
        "model.context": "attention",
        "model.context_kwargs": "{dim: 32, heads: 4}",
    }
    cfg = load_experiment("demo_cpu", options)
    torch.manual_seed(0)
    module = LandmarkModule(experiment_to_dict(cfg), load_schema(cfg.schema).to_dict())
    _nonzero_out(module.model.context)
    path = tmp_path / "ctx.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path, tmp_path
