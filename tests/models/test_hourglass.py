"""Stacked hourglass: per-stack intermediate heatmaps, configurable stacks, strides and odd sizes."""

from __future__ import annotations

import pytest
import torch

from spine_kp.models.hourglass import Hourglass, Residual, StackedHourglass
from spine_kp.models.net import ModelConfig, create_model
from spine_kp.models.norm import has_batchnorm
from spine_kp.schema import load_schema


@pytest.mark.parametrize("num_stacks", [1, 2, 3])
def test_intermediate_heatmaps_per_stack(num_stacks: int) -> None:
    net = StackedHourglass(in_chans=1, num_stacks=num_stacks, depth=3, width=16, num_outputs=5)
    features, inter = net(torch.randn(2, 1, 64, 64))
    assert features.shape == (2, 16, 16, 16)
    assert len(inter) == num_stacks - 1
    assert all(t.shape == (2, 5, 16, 16) for t in inter)
    assert not has_batchnorm(net)


def test_without_intermediate_heads_no_heatmaps() -> None:
    net = StackedHourglass(in_chans=3, num_stacks=2, depth=2, width=8, num_outputs=0)
    features, inter = net(torch.randn(1, 3, 32, 32))
    assert features.shape == (1, 8, 8, 8) and inter == []


@pytest.mark.parametrize(("in_reduction", "output_stride"), [(1, 1), (1, 2), (1, 4), (4, 4), (2, 4)])
def test_strides(in_reduction: int, output_stride: int) -> None:
    net = StackedHourglass(
        in_chans=4, num_stacks=1, depth=2, width=8, in_reduction=in_reduction, output_stride=output_stride
    )
    x = torch.randn(1, 4, 64 // in_reduction, 64 // in_reduction)
    features, _ = net(x)
    assert features.shape[-2:] == (64 // output_stride, 64 // output_stride)


def test_invalid_stride_rejected() -> None:
    with pytest.raises(ValueError, match="power-of-2"):
        StackedHourglass(in_reduction=2, output_stride=3)
    with pytest.raises(ValueError, match="num_stacks"):
        StackedHourglass(num_stacks=0)


def test_hourglass_handles_odd_sizes_and_keeps_shape() -> None:
    hg = Hourglass(depth=3, channels=8)
    x = torch.randn(1, 8, 13, 22)
    assert hg(x).shape == x.shape


def test_residual_projects_when_widths_differ() -> None:
    res = Residual(6, 12)
    assert res(torch.randn(1, 6, 5, 5)).shape == (1, 12, 5, 5)
    assert isinstance(Residual(8, 8).skip, torch.nn.Identity)


def test_intermediate_predictions_feed_the_next_stack() -> None:
    """Intermediate supervision must influence later stacks (the remap path is wired in)."""
    torch.manual_seed(0)
    net = StackedHourglass(in_chans=1, num_stacks=2, depth=2, width=8, num_outputs=3).eval()
    x = torch.randn(1, 1, 32, 32)
    before, _ = net(x)
    with torch.no_grad():
        net.merge_predictions[0].weight.add_(1.0)
    after, _ = net(x)
    assert not torch.allclose(before, after)


@pytest.mark.parametrize("backbone", ["none", "hourglass"])
def test_landmark_net_hourglass_without_backbone(backbone: str) -> None:
    schema = load_schema()
    cfg = ModelConfig(
        backbone=backbone, decoder="hourglass", decoder_channels=16, decoder_kwargs={"num_stacks": 3, "depth": 2}
    )
    net = create_model(cfg, schema)
    assert net.backbone is None
    out = net(torch.randn(2, 1, 64, 64))
    assert out["heatmaps"].shape == (2, schema.num_landmarks, 16, 16)
    assert len(out["aux_heatmaps"]) == 2
    assert all(a.shape == out["heatmaps"].shape for a in out["aux_heatmaps"])
    loss = out["heatmaps"].mean() + sum(a.mean() for a in out["aux_heatmaps"])
    loss.backward()
    assert net.decoder.net.intermediate_heads[0].weight.grad is not None
