"""The crop grader's outputs per kind, and the augmentation re-crop."""

from __future__ import annotations

import math

import pytest
import torch

from spine_kp.grading.config import GradeStageConfig
from spine_kp.grading.cropset import outer_size, random_recrop
from spine_kp.grading.model import create_crop_grader, graded_landmarks
from spine_kp.schema import load_schema


@pytest.fixture(scope="module")
def schema():
    return load_schema()


def test_output_shapes_per_kind_follow_the_schema(schema, one_thread):
    cfg = GradeStageConfig(size_px=24, channels=(8, 16), neighbours=0, per_kind=False)
    model = create_crop_grader(cfg, schema).eval()
    out = model(torch.randn(3, schema.num_landmarks, 24, 24))
    assert set(out) == {k.name for k in schema.kinds}
    for kind in schema.kinds:
        assert out[kind.name].shape == (3, len(schema.landmarks_of_kind(kind.name)), len(kind.grades))
    with pytest.raises(ValueError, match="crops per slice"):
        model(torch.randn(1, schema.num_landmarks - 1, 24, 24))


def test_a_kind_subset_grades_only_its_landmarks(schema, one_thread):
    discs = [i for i, k in enumerate(schema.landmark_kinds) if k == "disc"]
    assert graded_landmarks(schema, ("disc",)) == tuple(discs)
    assert graded_landmarks(schema) == tuple(range(schema.num_landmarks))
    with pytest.raises(KeyError, match="unknown kind"):
        graded_landmarks(schema, ("pedicle",))
    model = create_crop_grader(
        GradeStageConfig(size_px=16, channels=(8,), neighbours=0, kinds=("disc",)), schema
    ).eval()
    out = model(torch.randn(2, len(discs), 16, 16))
    assert list(out) == ["disc"] and out["disc"].shape == (2, len(discs), len(schema.kind("disc").grades))


def test_per_kind_graders_share_no_weights(schema, one_thread):
    """Default: one network per kind, so the disc loss never moves the vertebra network (and vice versa)."""
    model = create_crop_grader(GradeStageConfig(size_px=16, channels=(8,), neighbours=0), schema)
    assert set(model.graders) == {k.name for k in schema.kinds}
    out = model(torch.randn(2, schema.num_landmarks, 16, 16))
    for kind in schema.kinds:
        assert out[kind.name].shape == (2, len(schema.landmarks_of_kind(kind.name)), len(kind.grades))
    out["disc"].sum().backward()
    assert all(p.grad is None for p in model.graders["vertebra"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.graders["disc"].parameters())
    shared = create_crop_grader(GradeStageConfig(size_px=16, channels=(8,), neighbours=0, per_kind=False), schema)
    assert not hasattr(shared, "graders") and set(shared(torch.randn(1, schema.num_landmarks, 16, 16))) == set(out)


def test_landmark_identity_changes_the_logits(schema, one_thread):
    """The same crop at every landmark: the identity embedding still tells the discs apart."""
    model = create_crop_grader(GradeStageConfig(size_px=16, channels=(8,), neighbours=0, per_kind=False), schema).eval()
    crops = torch.randn(1, 1, 16, 16).expand(1, schema.num_landmarks, 16, 16)
    discs = model(crops)["disc"][0]
    assert not torch.allclose(discs[0], discs[1])


def test_recrop_without_augmentation_is_the_central_window():
    big = torch.randn(2, 3, 30, 30)
    out = random_recrop(big, 20)
    torch.testing.assert_close(out, big[..., 5:25, 5:25], atol=1e-5, rtol=0)


def test_recrop_shift_moves_the_content_and_the_margin_covers_the_largest_move():
    cfg = GradeStageConfig(size_px=20, window_mm=20.0, jitter_mm=3.0, rotate_deg=10.0)
    so = outer_size(cfg)
    r = math.radians(cfg.rotate_deg)
    assert (so - 1) / 2 >= 10 * (math.cos(r) + math.sin(r)) + math.sqrt(2) * 3.0  # corners stay inside
    big = torch.zeros(1, 1, so, so)
    big[0, 0, so // 2, so // 2] = 1.0
    g = torch.Generator().manual_seed(0)
    moved = [random_recrop(big, 20, shift_px=3.0, rotate_rad=r, generator=g)[0, 0] for _ in range(4)]
    centre = random_recrop(big, 20)[0, 0]
    assert all(not torch.allclose(m, centre) for m in moved)
    assert all(abs(float(m.sum()) - 1.0) < 0.05 for m in moved)  # the dot stays inside the re-crop


def test_recrop_moves_the_planes_of_a_landmark_together_and_the_grader_reads_them_as_channels():
    import torch

    from spine_kp.grading.cropset import random_recrop
    from spine_kp.grading.model import PerKindCropGrader
    from spine_kp.schema import load_schema

    base = torch.randn(2, 4, 1, 20, 20)
    crops = base.expand(-1, -1, 3, -1, -1).reshape(2, 12, 20, 20)  # 4 landmarks x 3 identical planes
    out = random_recrop(crops, 12, shift_px=3.0, rotate_rad=0.3, intensity=0.2, planes=3).reshape(2, 4, 3, 12, 12)
    torch.testing.assert_close(out[:, :, 0], out[:, :, 2])  # same shift, rotation and intensity across planes
    assert not torch.allclose(out[:, 0, 0], out[:, 1, 0])  # landmarks still drawn independently
    schema = load_schema("default")
    grader = PerKindCropGrader(schema, channels=(8,), planes=3)
    logits = grader(torch.randn(2, len(schema.landmarks) * 3, 16, 16))
    assert logits["disc"].shape == (2, 6, 7) and logits["vertebra"].shape == (2, 6, 2)
    with pytest.raises(ValueError, match="36 crops"):
        grader(torch.randn(2, len(schema.landmarks), 16, 16))


def test_mirror_reverses_the_lateral_order_of_some_landmarks_planes_and_nothing_else():
    big = torch.randn(4, 8 * 3, 24, 24)  # 8 landmarks x 3 distinct planes
    central = big[..., 2:22, 2:22].reshape(4, 8, 3, 20, 20)
    g = torch.Generator().manual_seed(0)
    out = random_recrop(big, 20, planes=3, mirror=True, generator=g).reshape(4, 8, 3, 20, 20)
    same = torch.isclose(out, central, atol=1e-5).flatten(2).all(-1)  # (B, L)
    flipped = torch.isclose(out, central.flip(2), atol=1e-5).flatten(2).all(-1)
    assert bool((same ^ flipped).all())  # each landmark: its planes as they were, or reversed as a whole
    assert 0 < int(flipped.sum()) < flipped.numel()  # both happen
    plain = random_recrop(big, 20, planes=3, mirror=False).reshape(4, 8, 3, 20, 20)
    torch.testing.assert_close(plain, central, atol=1e-5, rtol=0)
    one_plane = random_recrop(big, 20, planes=1, mirror=True)
    torch.testing.assert_close(one_plane, big[..., 2:22, 2:22], atol=1e-5, rtol=0)  # a single plane has no side


def test_flip_cc_flips_all_planes_of_a_landmark_upside_down_together():
    big = torch.randn(4, 8 * 3, 24, 24)
    central = big[..., 2:22, 2:22].reshape(4, 8, 3, 20, 20)
    g = torch.Generator().manual_seed(1)
    out = random_recrop(big, 20, planes=3, flip_cc=True, generator=g).reshape(4, 8, 3, 20, 20)
    same = torch.isclose(out, central, atol=1e-5).flatten(2).all(-1)
    flipped = torch.isclose(out, central.flip(3), atol=1e-5).flatten(2).all(-1)  # rows reversed, columns kept
    assert bool((same ^ flipped).all())
    assert 0 < int(flipped.sum()) < flipped.numel()


def test_avgmax_pooling_feeds_the_maximum_of_each_channel_to_the_classifier(schema, one_thread):
    from spine_kp.grading.model import CropGrader

    torch.manual_seed(0)
    grader = CropGrader(schema, ("disc",), channels=(4,), pool="avgmax").eval()
    crops = torch.zeros(1, 6, 16, 16)
    crops[:, :, 8, 8] = 5.0  # one bright pixel: it barely moves the average, it sets the maximum
    maps = grader.features(crops.reshape(6, 1, 16, 16))
    pooled = torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1)  # (6, 2 * 4)
    hidden = grader.mlp(torch.cat([pooled, grader.embedding.weight], dim=1))
    torch.testing.assert_close(grader(crops)["disc"][0], grader.classifiers[0](hidden))
    average = CropGrader(schema, ("disc",), channels=(4,), pool="avg")
    assert average.mlp[0].in_features == grader.mlp[0].in_features - 4  # the max adds one value per channel
    with pytest.raises(ValueError, match="pool"):
        CropGrader(schema, ("disc",), channels=(4,), pool="median")
    with pytest.raises(ValueError, match="pool"):
        GradeStageConfig(pool="median")


def test_an_ensemble_grades_with_the_mean_logits_of_independent_members(schema, one_thread):
    from spine_kp.grading.model import CropGraderEnsemble

    cfg = GradeStageConfig(size_px=16, channels=(8,), neighbours=0, members=3)
    torch.manual_seed(0)
    model = create_crop_grader(cfg, schema).eval()
    assert isinstance(model, CropGraderEnsemble) and len(model.members) == 3
    assert model.landmarks == model.members[0].landmarks and model.kind_names == model.members[0].kind_names
    crops = torch.randn(2, schema.num_landmarks, 16, 16)
    outs = model.member_logits(crops)
    assert not torch.equal(outs[0]["disc"], outs[1]["disc"])  # each member from its own initialisation
    mean = model(crops)
    for kind in model.kind_names:
        torch.testing.assert_close(mean[kind], (outs[0][kind] + outs[1][kind] + outs[2][kind]) / 3)
    outs[1]["disc"].sum().backward()  # one member's loss moves that member only
    assert all(p.grad is None for p in model.members[0].parameters())
    assert any(p.grad is not None for p in model.members[1].parameters())
    with pytest.raises(ValueError, match="at least 2 members"):
        CropGraderEnsemble([model.members[0]])
    with pytest.raises(ValueError, match="members"):
        GradeStageConfig(members=0)


def test_mean_context_starts_as_the_grader_without_it_and_then_reads_the_other_levels(schema, one_thread):
    from spine_kp.grading.model import CropGrader

    torch.manual_seed(0)
    plain = CropGrader(schema, ("disc",), channels=(4,), pool="avgmax").eval()
    ctx = CropGrader(schema, ("disc",), channels=(4,), pool="avgmax", context="mean").eval()
    # every tensor of the grader without context loads into the one with it (grade_stage.init), and the zero-started
    # context map makes them the same function
    missing = ctx.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["context.weight"] and missing.unexpected_keys == []
    assert torch.count_nonzero(ctx.context.weight) == 0
    crops = torch.randn(2, 6, 16, 16)
    torch.testing.assert_close(ctx(crops)["disc"], plain(crops)["disc"])
    # with a trained map, changing one level's crop changes the logits of the other levels, only through the mean
    with torch.no_grad():
        ctx.context.weight.normal_()
    other = crops.clone()
    other[:, 0] = torch.randn(2, 16, 16)
    a, b = ctx(crops)["disc"], ctx(other)["disc"]
    assert not torch.allclose(a[:, 1:], b[:, 1:])
    torch.testing.assert_close(plain(crops)["disc"][:, 1:], plain(other)["disc"][:, 1:])  # without: independent
    maps = ctx.features(crops.reshape(12, 1, 16, 16))
    feats = torch.cat([maps.mean((2, 3)), maps.amax((2, 3))], dim=1).reshape(2, 6, -1)
    ident = ctx.embedding.weight[None].expand(2, -1, -1)
    pre = ctx.mlp[0](torch.cat([feats, ident], dim=-1)) + feats.mean(1, keepdim=True) @ ctx.context.weight.T
    torch.testing.assert_close(a, ctx.classifiers[0](torch.nn.functional.gelu(pre)))
    # the config builds it, and refuses other names
    model = create_crop_grader(GradeStageConfig(size_px=16, channels=(8,), neighbours=0, context="mean"), schema)
    assert all(g.context is not None for g in model.graders.values())
    with pytest.raises(ValueError, match="context"):
        GradeStageConfig(context="attention")
    with pytest.raises(ValueError, match="context"):
        CropGrader(schema, ("disc",), channels=(4,), context="max")
