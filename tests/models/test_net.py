"""LandmarkNet: every decoder on real and stub backbones, schema-driven heads, point sampling, config round trip."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from spine_kp.codec.heatmap import cells_to_pixels, heatmap_argmax
from spine_kp.config import ConfigError, from_dict, to_dict
from spine_kp.models.decoders import DECODERS
from spine_kp.models.heads import GradeHead, grade_probabilities, landmark_scores, sample_at_points
from spine_kp.models.net import LandmarkNet, ModelConfig, build_landmark_net, create_model
from spine_kp.models.norm import has_batchnorm
from spine_kp.schema import Schema, load_schema

SIZE = 64
# A CNN with 5 levels (stride 2..32) and a hierarchical transformer with 4 levels (stride 4..32).
REAL_BACKBONES = ["resnet18", "pvt_v2_b0"]


class StubBackbone(nn.Module):
    """Strided conv + BatchNorm blocks (BatchNorm on purpose: assembling the net must convert it)."""

    def __init__(self, in_chans: int = 1, channels: tuple[int, ...] = (8, 12, 16, 24), reductions=(4, 8, 16, 32)):
        super().__init__()
        self.feature_channels = list(channels)
        self.feature_reductions = list(reductions)
        blocks, prev_c, prev_r = [], in_chans, 1
        for c, r in zip(channels, reductions):
            s = r // prev_r
            blocks.append(nn.Sequential(nn.Conv2d(prev_c, c, 3, s, 1), nn.BatchNorm2d(c), nn.ReLU()))
            prev_c, prev_r = c, r
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


def _cfg(backbone: str, decoder: str, **kw: object) -> ModelConfig:
    dkw = {"depth": 2} if decoder == "hourglass" else {}
    return ModelConfig(
        backbone=backbone,
        decoder=decoder,
        decoder_channels=16,
        decoder_kwargs=dkw,
        head_kwargs={"hidden": 32, "embed_dim": 4},
        **kw,
    )  # type: ignore[arg-type]


def _build(backbone: str, decoder: str, schema: Schema, **kw: object) -> LandmarkNet:
    cfg = _cfg(backbone, decoder, **kw)
    if backbone == "stub":
        return build_landmark_net(StubBackbone(cfg.in_chans), cfg, schema)
    return create_model(cfg, schema)


def _gt_points(batch: int, k: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(batch, k, 2, generator=g) * (SIZE - 1)


@pytest.mark.parametrize("decoder", DECODERS.names())
@pytest.mark.parametrize("backbone", ["stub", *REAL_BACKBONES])
def test_forward_backward_shapes(backbone: str, decoder: str) -> None:
    torch.manual_seed(0)
    schema = load_schema()
    net = _build(backbone, decoder, schema)
    assert not has_batchnorm(net)
    x = torch.randn(2, 1, SIZE, SIZE)
    out = net(x, _gt_points(2, schema.num_landmarks))
    k = schema.num_landmarks
    assert out["heatmaps"].shape == (2, k, SIZE // 4, SIZE // 4)
    assert set(out["grade_logits"]) == {kind.name for kind in schema.kinds}
    for kind in schema.kinds:
        n = len(schema.landmarks_of_kind(kind.name))
        assert out["grade_logits"][kind.name].shape == (2, n, len(kind.grades))
    expect_aux = 1 if DECODERS.get(decoder).meta.get("intermediate_supervision") else 0
    assert len(out["aux_heatmaps"]) == expect_aux
    assert all(a.shape == out["heatmaps"].shape for a in out["aux_heatmaps"])
    tensors = [out["heatmaps"], *out["aux_heatmaps"], *out["grade_logits"].values()]
    assert all(torch.isfinite(t).all() for t in tensors)
    sum(t.square().mean() for t in tensors).backward()
    # A standalone decoder (hourglass) reads one backbone level only: the deeper backbone stages get no gradient.
    scope = net if not DECODERS.get(decoder).meta.get("standalone") else nn.ModuleList([net.decoder, net.grade_head])
    missing = [n for n, p in scope.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_initial_heatmaps_are_near_zero() -> None:
    net = _build("stub", "unet", load_schema())
    heatmaps = net(torch.randn(1, 1, SIZE, SIZE))["heatmaps"]
    assert heatmaps.abs().max() < 0.05


def test_points_none_reads_grades_at_the_heatmap_argmax() -> None:
    torch.manual_seed(0)
    schema = load_schema()
    net = _build("stub", "fpn", schema).eval()
    nn.init.normal_(net.heatmap_head.conv.weight)  # give the heatmaps distinct peaks
    x = torch.randn(1, 1, SIZE, SIZE)
    out = net(x)
    uv, _ = heatmap_argmax(out["heatmaps"])
    assert torch.equal(out["points"], cells_to_pixels(uv, 4))
    again = net(x, out["points"])
    for kind, logits in out["grade_logits"].items():
        assert torch.allclose(logits, again["grade_logits"][kind])
    moved = net(x, out["points"] + 20.0)
    assert not torch.allclose(moved["grade_logits"]["disc"], out["grade_logits"]["disc"])
    later = net.grade(out["features"], out["points"] + 20.0)  # grading chosen points without a second pass
    assert out["features"].shape == (1, 16, SIZE // 4, SIZE // 4)
    assert all(torch.allclose(later[k], moved["grade_logits"][k]) for k in later)


@pytest.mark.parametrize("output_stride", [1, 2])
def test_finer_output_stride(output_stride: int) -> None:
    schema = load_schema()
    net = _build("resnet18", "unet", schema, output_stride=output_stride)
    out = net(torch.randn(1, 1, SIZE, SIZE))
    assert out["heatmaps"].shape[-2:] == (SIZE // output_stride, SIZE // output_stride)


def test_stacked_slices_input() -> None:
    net = _build("stub", "segformer", load_schema(), in_chans=3)
    assert net(torch.randn(1, 3, SIZE, SIZE))["heatmaps"].shape == (1, 12, 16, 16)


def test_schema_drives_the_heads() -> None:
    schema = Schema.from_dict(
        {
            "name": "toy",
            "kinds": {"a": {"grades": {"x": "", "y": "", "z": ""}}, "b": {"multi_label": True, "grades": {"p": ""}}},
            "landmarks": [{"name": "A1", "kind": "a"}, {"name": "B1", "kind": "b"}, {"name": "A2", "kind": "a"}],
        }
    )
    net = _build("stub", "unet", schema)
    out = net(torch.randn(2, 1, SIZE, SIZE))
    assert out["heatmaps"].shape[1] == 3
    assert out["grade_logits"]["a"].shape == (2, 2, 3) and out["grade_logits"]["b"].shape == (2, 1, 1)


def test_sample_at_points_uses_the_pixel_centre_convention() -> None:
    stride, h, w = 4, 8, 10
    j, i = torch.meshgrid(torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32), indexing="xy")
    features = torch.stack([(j + 0.5) * stride - 0.5, (i + 0.5) * stride - 0.5])[None]  # value = cell centre xy
    pts = torch.tensor([[[1.5, 1.5], [10.2, 17.9], [30.0, 22.25]]])  # inside the outermost cell centres
    sampled = sample_at_points(features, pts, stride)
    assert torch.allclose(sampled, pts, atol=1e-4)


def test_grade_head_tolerates_missing_points_and_uses_identity() -> None:
    schema = load_schema()
    head = GradeHead(8, schema, stride=4, hidden=16, embed_dim=4)
    pts = torch.full((1, schema.num_landmarks, 2), 20.0)
    pts[0, 3] = float("nan")
    logits = head(torch.randn(1, 8, 16, 16), pts)
    assert all(torch.isfinite(v).all() for v in logits.values())
    # Same features and points for every landmark: only the identity embedding tells two discs apart.
    same = head(torch.ones(1, 8, 16, 16), torch.full((1, schema.num_landmarks, 2), 20.0))
    assert not torch.allclose(same["disc"][0, 0], same["disc"][0, 1])


def test_grade_head_rejects_even_context_grid() -> None:
    with pytest.raises(ValueError, match="odd"):
        GradeHead(8, load_schema(), stride=4, context_grid=2)


def test_grade_probabilities_follow_multi_label() -> None:
    schema = load_schema()
    logits = {k.name: torch.randn(2, len(schema.landmarks_of_kind(k.name)), len(k.grades)) for k in schema.kinds}
    probs = grade_probabilities(logits, schema)
    single = [k.name for k in schema.kinds if not k.multi_label][0]
    multi = [k.name for k in schema.kinds if k.multi_label][0]
    assert torch.allclose(probs[single].sum(-1), torch.ones(2, probs[single].shape[1]))
    assert torch.allclose(probs[multi], logits[multi].sigmoid())


def test_landmark_scores() -> None:
    peaks = torch.tensor([[1.3, 0.5, -0.2]])
    probs = torch.tensor([[[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]]])
    expected = torch.tensor([[[0.2, 0.8], [0.25, 0.25], [0.0, 0.0]]])
    assert torch.allclose(landmark_scores(peaks, probs), expected)
    assert np.allclose(landmark_scores(peaks.numpy(), probs.numpy()), expected.numpy())


def test_model_config_round_trip_and_errors() -> None:
    cfg = ModelConfig(backbone="resnet18", decoder="fpn", decoder_kwargs={"pyramid_channels": 32}, pretrained=None)
    again = from_dict(ModelConfig, to_dict(cfg))
    assert again == cfg
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.backbone = "resnet34"  # type: ignore[misc]
    with pytest.raises(ConfigError, match=r"unknown key 'model\.widht'"):
        from_dict(ModelConfig, {**to_dict(cfg), "widht": 3}, prefix="model.")
    with pytest.raises(ConfigError, match=r"model: ModelConfig: output_stride must be 1, 2 or 4, got 8"):
        from_dict(ModelConfig, {"output_stride": 8}, prefix="model.")
    with pytest.raises(ValueError, match="output_stride"):
        ModelConfig(output_stride=8)


def test_build_errors() -> None:
    schema = load_schema()
    with pytest.raises(ValueError, match="needs a backbone"):
        create_model(ModelConfig(backbone="none", decoder="unet"), schema)
    with pytest.raises(KeyError, match="resnet18"):
        create_model(ModelConfig(backbone="no_such_net"), schema)
    with pytest.raises(ValueError, match="without a backbone"):
        create_model(ModelConfig(backbone="none", decoder="hourglass", pretrained="weights.pt"), schema)
    net = _build("stub", "unet", schema)
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.randn(1, 1, 48, 64))


def test_models_command_lists_and_checks(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from spine_kp.cli.main import main

    assert main(["models", "--json", "--names", "resnet18", "segformer"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["kind"], r["name"]) for r in rows] == [("backbone", "resnet18"), ("decoder", "segformer")]
    assert rows[0]["source"] == "timm" and rows[1]["source"] == "own"
    assert 5 < rows[0]["params_m"] < 50  # resnet18 alone has 11.2 M
    assert main(["models", "--check", "--names", "hourglass", "--size", "64"]) == 0
    out = capsys.readouterr().out
    assert out.count(" OK") >= 2  # the hourglass backbone row and the hourglass decoder row
    assert main(["models", "--names", "no_such_net"]) == 2


def test_models_check_fails_with_exit_code_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from spine_kp.cli.main import main
    from spine_kp.models.registry import Entry

    def broken(*args: object, **kwargs: object) -> nn.Module:
        raise RuntimeError("deliberately broken")

    entry = Entry("broken_for_test", broken, {"family": "test", "source": "own", "standalone": True})
    monkeypatch.setitem(DECODERS._entries, "broken_for_test", entry)
    assert main(["models", "--check", "--names", "broken_for_test", "--size", "64"]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_grade_head_samples_in_float32_under_low_precision() -> None:
    """bf16 cannot represent x = 301.3 (spacing 2 at 256-512): sampling must not round the coordinates."""
    stride = 4
    step = torch.zeros(1, 1, 8, 128)
    step[..., 75:] = 1.0  # exact in bf16; cells 74 | 75 are centred at x = 297.5 | 301.5
    head = GradeHead(1, load_schema(), stride=stride, context_grid=1)
    pts = torch.full((1, load_schema().num_landmarks, 2), 301.3)
    captured: list[torch.Tensor] = []
    head.mlp.register_forward_pre_hook(lambda module, inputs: captured.append(inputs[0]) or None)
    head(step.bfloat16(), pts)
    assert abs(captured[0][0, 0, 0].item() - 0.95) < 0.01  # bilinear weight (301.3 - 297.5) / 4
