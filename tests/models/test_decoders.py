"""Every registered decoder over several feature pyramids and output strides: shapes, gradients, GroupNorm only."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spine_kp.models.decoders import DECODERS, create_decoder
from spine_kp.models.decoders.common import UpsampleTail, validate_levels
from spine_kp.models.norm import convert_bn_to_gn, group_norm, has_batchnorm, num_groups

# (channels, reductions): a 5-level CNN pyramid, a 4-level transformer / ViT-adapter pyramid, a 3-level one.
PYRAMIDS = {
    "cnn5": ([8, 12, 16, 24, 32], [2, 4, 8, 16, 32]),
    "vit4": ([16, 16, 24, 32], [4, 8, 16, 32]),
    "deep3": ([12, 20, 28], [8, 16, 32]),
}
SIZE = 64


def _features(pyramid: str, batch: int = 2) -> list[torch.Tensor]:
    channels, reductions = PYRAMIDS[pyramid]
    return [torch.randn(batch, c, SIZE // r, SIZE // r) for c, r in zip(channels, reductions)]


def _build(name: str, pyramid: str, output_stride: int) -> nn.Module:
    channels, reductions = PYRAMIDS[pyramid]
    kwargs = {"num_landmarks": 3, "depth": 2} if DECODERS.get(name).meta.get("intermediate_supervision") else {}
    return create_decoder(name, channels, reductions, 16, output_stride, **kwargs)


def test_registry_has_the_required_decoders() -> None:
    assert {"unet", "hourglass", "fpn", "deeplab", "segformer", "bisenet"} <= set(DECODERS.names())
    for entry in DECODERS.entries():
        assert entry.meta.get("source") == "own" and entry.meta.get("family")


@pytest.mark.parametrize("name", DECODERS.names())
@pytest.mark.parametrize("pyramid", list(PYRAMIDS))
@pytest.mark.parametrize("output_stride", [1, 2, 4])
def test_decoder_output_shape_gradients_and_norms(name: str, pyramid: str, output_stride: int) -> None:
    torch.manual_seed(0)
    decoder = _build(name, pyramid, output_stride)
    feats = _features(pyramid)
    out = decoder(feats)
    aux: list[torch.Tensor] = []
    if isinstance(out, tuple):
        out, aux = out
    side = SIZE // output_stride
    assert out.shape == (2, decoder.out_channels, side, side)
    assert decoder.out_channels == 16
    assert torch.isfinite(out).all()
    assert all(a.shape == (2, 3, side, side) for a in aux)
    loss = out.square().mean() + sum(a.square().mean() for a in aux)
    loss.backward()
    missing = [n for n, p in decoder.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient (unused layers?): {missing[:5]}"
    assert not has_batchnorm(decoder)
    assert any(isinstance(m, nn.GroupNorm) for m in decoder.modules())


@pytest.mark.parametrize("name", DECODERS.names())
def test_decoder_works_at_batch_size_one_in_train_mode(name: str) -> None:
    decoder = _build(name, "cnn5", 4).train()
    out = decoder(_features("cnn5", batch=1))
    out = out[0] if isinstance(out, tuple) else out
    assert out.shape == (1, 16, SIZE // 4, SIZE // 4) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", [n for n in DECODERS.names() if not DECODERS.get(n).meta.get("standalone")])
def test_deeper_levels_influence_the_output(name: str) -> None:
    """Context from the deepest level must reach the output (catches decoders that drop levels)."""
    decoder = _build(name, "vit4", 4).eval()
    feats = _features("vit4", batch=1)
    with torch.no_grad():
        base = decoder(feats)
        feats[-1] = feats[-1] + 3.0 * torch.randn_like(feats[-1])
        changed = decoder(feats)
    assert not torch.allclose(base, changed)


def test_unet_transpose_upsampling() -> None:
    channels, reductions = PYRAMIDS["cnn5"]
    decoder = create_decoder("unet", channels, reductions, 16, 4, upsample="transpose")
    assert any(isinstance(m, nn.ConvTranspose2d) for m in decoder.modules())
    assert decoder(_features("cnn5")).shape == (2, 16, 16, 16)


def test_deeplab_rates_scale_with_the_deepest_stride() -> None:
    decoder = create_decoder("deeplab", [8, 16], [16, 32], 16, 4)
    assert decoder.rates == [3, 6, 9]  # paper rates (6, 12, 18) are for stride-16 features
    sep = create_decoder("deeplab", [8, 16], [16, 32], 16, 4, separable=True)
    assert any(m.groups > 1 for m in sep.modules() if isinstance(m, nn.Conv2d))


def test_unknown_decoder_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="unet"):
        create_decoder("nope", [8], [32], 16, 4)


def test_level_validation_messages() -> None:
    with pytest.raises(ValueError, match="increase"):
        validate_levels([8, 8], [8, 4], 4)
    with pytest.raises(ValueError, match="powers of 2"):
        validate_levels([8, 8], [6, 12], 4)
    with pytest.raises(ValueError, match="one channel count"):
        validate_levels([8], [4, 8], 4)


def test_upsample_tail() -> None:
    tail = UpsampleTail(8, 4, from_reduction=4, to_reduction=1)
    assert tail(torch.randn(1, 8, 5, 6)).shape == (1, 4, 20, 24)


def test_group_norm_helpers() -> None:
    assert num_groups(64) == 32 and num_groups(24) == 12 and num_groups(3) == 1 and num_groups(1000) == 25
    assert 48 % group_norm(48).num_groups == 0
    net = nn.Sequential(nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16), nn.Sequential(nn.SyncBatchNorm(8)))
    with torch.no_grad():
        net[1].weight.fill_(2.0)
        net[1].bias.fill_(-1.0)
    convert_bn_to_gn(net)
    assert not has_batchnorm(net)
    assert isinstance(net[1], nn.GroupNorm) and net[1].num_channels == 16
    assert torch.all(net[1].weight == 2.0) and torch.all(net[1].bias == -1.0)
    assert isinstance(net[2][0], nn.GroupNorm) and net[2][0].num_channels == 8


def test_convert_keeps_timm_fused_activation() -> None:
    from timm.layers import BatchNormAct2d

    bn = BatchNormAct2d(8, act_layer=nn.ReLU)
    gn = convert_bn_to_gn(nn.Sequential(bn))[0]
    assert not has_batchnorm(gn)
    assert (gn(torch.randn(2, 8, 4, 4)) >= 0).all()  # the ReLU survived the swap
