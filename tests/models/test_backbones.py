"""Backbone contract, checked for every registered name (the test grows with the registry)."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from spine_kp.models.backbones import align_to_input, create_backbone, list_backbones
from spine_kp.models.backbones.base import check_levels
from spine_kp.models.backbones.hourglass_encoder import HourglassEncoder
from spine_kp.models.backbones.ibn import IBN
from spine_kp.models.backbones.transformer_pyramid import SimpleFeaturePyramid
from spine_kp.models.norm import has_batchnorm
from spine_kp.models.registry import BACKBONES

# The architecture families of the paper notes (shared/notes/README.md) plus the two own encoders.
REQUIRED_FAMILIES = {
    "AlexNet", "VGG", "ResNet", "ResNet-D", "ResNet-RS", "ResNeXt", "ResNeSt", "WRN", "Inception v1",
    "Inception v3", "Inception v4", "SE-Net", "ShuffleNet", "Xception", "MobileNet v1", "MobileNet v2",
    "MobileNet v3", "EfficientNet", "IBN-Net", "VoVNet", "CSPNet", "DenseNet", "SqueezeNet", "ViT", "DeiT",
    "Swin", "PVT", "SegFormer MiT", "Twins", "ConViT", "BEiT", "ResMLP", "U-Net", "Stacked Hourglass",
}  # fmt: skip


def _build_small(name: str, in_chans: int = 1) -> tuple[torch.nn.Module, int]:
    """The registered backbone and the smallest square test side it supports (>= 64)."""
    meta = BACKBONES.get(name).meta
    side = max(64, meta.get("min_input", 32))
    kwargs = {"img_size": side} if meta.get("fixed_input") else {}
    return create_backbone(name, in_chans=in_chans, **kwargs), side


def _expected_shapes(model: torch.nn.Module, h: int, w: int) -> list[tuple[int, int, int, int]]:
    return [(1, c, h // r, w // r) for c, r in zip(model.feature_channels, model.feature_reductions, strict=True)]


def test_every_family_has_a_backbone() -> None:
    families = {e.meta["family"] for e in BACKBONES.entries()}
    assert REQUIRED_FAMILIES <= families, f"missing: {sorted(REQUIRED_FAMILIES - families)}"


def test_list_backbones_is_the_sorted_registry() -> None:
    assert list_backbones() == sorted(BACKBONES.names())
    assert {"unet", "hourglass", "resnet18", "vit_tiny_patch16_224"} <= set(list_backbones())


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_contract(name: str) -> None:
    torch.manual_seed(0)
    meta = BACKBONES.get(name).meta
    assert meta["source"] in {"timm", "torchvision", "own"}
    model, side = _build_small(name)
    assert not any(isinstance(m, _BatchNorm) for m in model.modules()) and not has_batchnorm(model)
    red = model.feature_reductions
    assert red[-1] == 32 and red[0] >= 2 and all(b > a for a, b in zip(red, red[1:]))
    assert len(model.feature_channels) == len(red)

    x = torch.randn(1, 1, side, side, requires_grad=True)
    feats = model(x)
    assert [tuple(f.shape) for f in feats] == _expected_shapes(model, side, side)
    assert all(torch.isfinite(f).all() for f in feats)
    sum(f.mean() for f in feats).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the image through every level
    stem_grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(stem_grads) > 0.9 * sum(1 for _ in model.parameters())

    # Any size divisible by 32, non-square too (fixed-size transformers resample to their img_size and back).
    with torch.no_grad():
        feats = model(torch.randn(1, 1, side, side + 32))
    assert [tuple(f.shape) for f in feats] == _expected_shapes(model, side, side + 32)


@pytest.mark.parametrize("name", ["resnet18", "alexnet", "vit_tiny_patch16_224", "unet", "resnet18_ibn_a"])
def test_in_chans_is_honoured(name: str) -> None:
    model = create_backbone(name, in_chans=3)
    feats = model(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in feats] == _expected_shapes(model, 64, 64)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, 64, 64))


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        create_backbone("no_such_backbone")


def test_timm_prefix_builds_unregistered_models() -> None:
    cnn = create_backbone("timm:resnet10t")
    assert "timm:resnet10t" not in BACKBONES
    assert cnn.feature_reductions == [2, 4, 8, 16, 32]
    # A plain transformer given without options gets its last block, a simple pyramid and any input size.
    vit = create_backbone("timm:vit_tiny_patch16_224", depth=3)
    assert vit.feature_reductions == [4, 8, 16, 32]
    feats = vit(torch.randn(1, 1, 64, 96))
    assert [tuple(f.shape) for f in feats] == _expected_shapes(vit, 64, 96)
    with pytest.raises(KeyError, match="no_such_model"):
        create_backbone("timm:no_such_model")


def test_drop_path_rate_reaches_timm_and_unsupported_rates_warn() -> None:
    model = create_backbone("resnet18", drop_path_rate=0.2)
    rates = [m.drop_prob for m in model.modules() if type(m).__name__ == "DropPath"]
    assert rates and max(rates) == pytest.approx(0.2)
    with pytest.warns(UserWarning, match="drop_path_rate"):
        create_backbone("vgg11", drop_path_rate=0.1)
    with pytest.warns(UserWarning, match="unet"):
        create_backbone("unet", drop_path_rate=0.1)


def test_fixed_size_transformer_accepts_other_sizes() -> None:
    model = create_backbone("convit_tiny", img_size=64, depth=2)
    assert model.fixed_input_size == (64, 64)
    feats = model(torch.randn(1, 1, 128, 96))
    assert [tuple(f.shape) for f in feats] == _expected_shapes(model, 128, 96)


def test_align_to_input_resamples_only_off_grid_maps() -> None:
    on_grid, off_grid = torch.randn(1, 2, 8, 8), torch.randn(1, 3, 7, 9)
    out = align_to_input([on_grid, off_grid], (32, 32), [4, 8])
    assert out[0] is on_grid
    assert out[1].shape == (1, 3, 4, 4)
    # A constant map stays constant (bilinear resampling, no zero padding at the borders).
    const = align_to_input([torch.full((1, 1, 3, 5), 2.0)], (64, 64), [16])[0]
    assert torch.allclose(const, torch.full((1, 1, 4, 4), 2.0))


def test_check_levels_rejects_bad_reductions() -> None:
    with pytest.raises(ValueError, match="end at 32"):
        check_levels("x", [8, 16], [8, 16])
    with pytest.raises(ValueError, match="increase"):
        check_levels("x", [8, 16, 32], [8, 8, 32])


def test_simple_pyramid_shapes_and_widths() -> None:
    pyramid = SimpleFeaturePyramid(32)
    assert pyramid.out_channels == [8, 16, 32, 32]
    feats = pyramid(torch.randn(2, 32, 4, 6))
    assert [tuple(f.shape) for f in feats] == [(2, 8, 16, 24), (2, 16, 8, 12), (2, 32, 4, 6), (2, 32, 2, 3)]
    assert [f.shape[1] for f in SimpleFeaturePyramid(32, 24)(torch.randn(1, 32, 2, 2))] == [24] * 4


def test_ibn_a_only_in_stages_1_to_3_and_instance_normalises_half() -> None:
    model = create_backbone("resnet18_ibn_a")
    for stage in ("layer1", "layer2", "layer3"):
        assert all(isinstance(block.bn1, IBN) for block in getattr(model.body, stage))
    assert not any(isinstance(m, IBN) for m in model.body.layer4.modules())
    ibn = IBN(8)
    x = torch.randn(2, 8, 6, 6) * 5 + torch.arange(2.0).view(2, 1, 1, 1) * 100  # very different per sample
    y = ibn(x)[:, :4]  # the InstanceNorm half: zero mean / unit variance per sample and channel
    assert torch.allclose(y.mean(dim=(2, 3)), torch.zeros(2, 4), atol=1e-4)
    assert torch.allclose(y.var(dim=(2, 3), unbiased=False), torch.ones(2, 4), atol=1e-2)
    with pytest.raises(ValueError, match="ratio"):
        IBN(4, ratio=1.0)


def test_unet_width_is_configurable() -> None:
    model = create_backbone("unet", width=8, max_width=64)
    assert model.feature_channels == [16, 32, 64, 64, 64]
    assert [f.shape[1] for f in model(torch.randn(1, 1, 64, 64))] == model.feature_channels


def test_hourglass_encoder_matches_stacked_hourglass_forward() -> None:
    torch.manual_seed(0)
    model = HourglassEncoder(in_chans=1, num_stacks=2, width=16).eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        ours = model(x)
        theirs, _ = model.net(x)
    assert torch.allclose(ours[0], theirs, atol=1e-6)
    assert [f.shape[1] for f in ours] == [16] * 4
