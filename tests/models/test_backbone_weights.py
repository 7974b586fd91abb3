"""Loading backbone weights from local files: own state dicts, wrapped/original checkpoints, RGB -> 1 channel."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

from spine_kp.models.backbones import create_backbone, load_backbone_weights, read_state_dict


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return model.eval()(x)


def _same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("resnet18_ibn_a", {}),
        ("swin_tiny_patch4_window7_224", {"depths": (1, 1, 1, 1)}),
        ("vit_tiny_patch16_224", {"depth": 2}),
        ("googlenet", {}),
        ("unet", {"width": 8}),
        ("hourglass", {"width": 16}),
    ],
)
def test_own_state_dict_round_trip(tmp_path: Path, name: str, kwargs: dict[str, object]) -> None:
    torch.manual_seed(0)
    source = create_backbone(name, **kwargs)
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    x = torch.randn(1, 1, 64, 64)
    torch.manual_seed(1)
    assert not _same(_outputs(create_backbone(name, **kwargs), x), _outputs(source, x))  # init differs
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete own checkpoint loads without any complaint
        loaded = create_backbone(name, pretrained=str(path), **kwargs)
    assert _same(_outputs(loaded, x), _outputs(source, x))


def test_rgb_weights_into_one_channel_model_sum_over_rgb(tmp_path: Path) -> None:
    torch.manual_seed(0)
    rgb = create_backbone("resnet18", in_chans=3)
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    gray = create_backbone("resnet18", in_chans=1)
    assert load_backbone_weights(gray, path).adapted == ["body.conv1.weight"]
    x = torch.randn(1, 1, 64, 64)
    # Summing the stem over RGB makes a grey image behave exactly like the same image in all three channels.
    for a, b in zip(_outputs(gray, x), _outputs(rgb, x.repeat(1, 3, 1, 1)), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_wrapped_and_prefixed_checkpoints_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = create_backbone("unet", width=8)
    state = source.state_dict()
    x = torch.randn(1, 1, 32, 32)
    variants = {
        "lightning.ckpt": {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3},
        "ddp.pth": {"model": {f"module.{k}": v for k, v in state.items()}},
        # A whole network: backbone under a prefix, plus tensors of other parts that must be ignored.
        "net.pth": {**{f"backbone.{k}": v for k, v in state.items()}, "head.weight": torch.zeros(3, 8, 1, 1)},
    }
    for file_name, obj in variants.items():
        torch.save(obj, tmp_path / file_name)
        torch.manual_seed(1)
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            loaded = create_backbone("unet", width=8, pretrained=str(tmp_path / file_name))
        assert _same(_outputs(loaded, x), _outputs(source, x)), file_name
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    assert read_state_dict(tmp_path / "w.safetensors").keys() == state.keys()


def test_original_timm_checkpoint_loads_with_report(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = timm.create_model("resnet18")  # a classifier with BatchNorm, as published by timm
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_backbone("resnet18")
    with pytest.warns(UserWarning) as record:
        report = load_backbone_weights(model, path)
    message = str(record[0].message)
    assert "fc.weight" in message and "BatchNorm running statistics" in message and str(path) in message
    assert report.missing == [] and report.adapted == ["body.conv1.weight"]
    assert torch.equal(model.body.layer1[0].bn1.weight, reference.layer1[0].bn1.weight)  # GN keeps BN's affine
    assert torch.allclose(model.body.conv1.weight, reference.conv1.weight.sum(dim=1, keepdim=True))


def test_original_torchvision_and_renamed_timm_checkpoints_load(tmp_path: Path) -> None:
    torch.manual_seed(0)
    alex = torchvision.models.alexnet()
    torch.save(alex.state_dict(), tmp_path / "alexnet.pth")
    with pytest.warns(UserWarning, match="classifier"):
        model = create_backbone("alexnet", pretrained=str(tmp_path / "alexnet.pth"))
    assert torch.equal(model.body.get_submodule("features.3").weight, alex.features[3].weight)
    # timm's feature wrapper renames swin's "layers.0" to "layers_0"; names still match.
    swin = timm.create_model("swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1))
    torch.save(swin.state_dict(), tmp_path / "swin.pth")
    with pytest.warns(UserWarning, match="head"):
        model = create_backbone(
            "swin_tiny_patch4_window7_224", depths=(1, 1, 1, 1), pretrained=str(tmp_path / "swin.pth")
        )
    assert torch.equal(model.body.layers_2.blocks[0].mlp.fc1.weight, swin.layers[2].blocks[0].mlp.fc1.weight)


def test_position_embedding_is_resampled_to_another_img_size(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vit224 = timm.create_model("vit_tiny_patch16_224", depth=1)
    torch.save(vit224.state_dict(), tmp_path / "vit.pth")
    with pytest.warns(UserWarning, match="pos_embed"):
        model = create_backbone("vit_tiny_patch16_224", depth=1, img_size=64, pretrained=str(tmp_path / "vit.pth"))
    pos = model.body.model.pos_embed
    assert pos.shape == (1, 1 + 4 * 4, 192)
    assert torch.equal(pos[:, 0], vit224.pos_embed[:, 0])  # class token embedding kept as is


def test_missing_tensors_are_named_in_a_warning(tmp_path: Path) -> None:
    state = create_backbone("unet", width=8).state_dict()
    dropped = "levels.4.1.3.weight"
    del state[dropped]
    torch.save(state, tmp_path / "partial.pth")
    with pytest.warns(UserWarning, match=f"1 missing.*{dropped}"):
        create_backbone("unet", width=8, pretrained=str(tmp_path / "partial.pth"))


def test_bad_files_fail_with_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        create_backbone("unet", pretrained=str(missing))
    torch.save({"something.else": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match="other.pth"):
        create_backbone("unet", width=8, pretrained=str(tmp_path / "other.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth"):
        read_state_dict(tmp_path / "list.pth")
