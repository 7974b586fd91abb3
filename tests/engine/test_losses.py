from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spine_kp.engine.losses import heatmap_loss, multi_label_loss, ordinal_negative_weights, single_label_loss


def test_heatmap_loss_ignores_missing_landmarks():
    target = torch.zeros(1, 3, 8, 8)
    target[0, :, 4, 4] = 1.0
    pred = target.clone()
    pred[0, 2] = 5.0  # landmark 2 is wildly wrong ...
    weight = torch.tensor([[1.0, 1.0, 0.0]])  # ... but missing from the annotation
    assert heatmap_loss(pred, target, weight).item() == 0.0
    assert heatmap_loss(pred, target, torch.ones(1, 3)).item() > 0
    assert heatmap_loss(pred, target, torch.ones(1, 3), kind="focal").item() > 0


def test_single_label_masks_and_weights():
    logits = torch.tensor([[[4.0, -4.0], [4.0, -4.0]]])  # predicts grade 0 for both
    target = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # second is grade 1
    mask = torch.tensor([[True, False]])
    assert single_label_loss(logits, target, mask).item() < 0.01  # the wrong one is masked
    full = single_label_loss(logits, target, torch.tensor([[True, True]]))
    weighted = single_label_loss(logits, target, torch.tensor([[True, True]]), torch.tensor([1.0, 10.0]))
    assert weighted.item() > full.item()
    assert single_label_loss(logits, target, torch.zeros(1, 2, dtype=torch.bool)).item() == 0.0


def test_multi_label_untrained_grades_do_not_count():
    logits = torch.tensor([[[5.0, -5.0, 5.0]]])
    target = torch.tensor([[[1.0, 0.0, 0.0]]])  # grade 2 predicted but absent
    mask = torch.tensor([[True]])
    bad = multi_label_loss(logits, target, mask)
    ignored = multi_label_loss(logits, target, mask, grade_mask=torch.tensor([1.0, 1.0, 0.0]))
    assert bad.item() > 1.0 and ignored.item() < 0.01
    focal = multi_label_loss(logits, target, mask, focal_gamma=2.0)
    assert 0 < focal.item() < bad.item()


def test_ordinal_weights_spare_only_the_chain_neighbours_of_a_positive_and_leave_positives_whole():
    chain = torch.tensor([0, 1, 2, 3])  # normal, bulge, protrusion, extrusion; grade 4 (a node) is off the chain
    target = torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    w = ordinal_negative_weights(target, chain, 0.3)
    torch.testing.assert_close(w[0, [0, 1, 3, 4]], torch.tensor([1 - 0.09, 0.7, 0.7, 1.0]))
    torch.testing.assert_close(w[1, 1:], torch.tensor([0.7, 1 - 0.09, 1 - 0.027, 1.0]))
    assert torch.equal(ordinal_negative_weights(target, chain, 0.0), torch.ones_like(target))
    # in the loss: positives keep their full (imbalance-weighted) term, the spared negatives lose part of theirs
    logits = torch.tensor([[[0.5, 1.0, 2.0, -1.0, 0.3]]])
    y, mask, pos = target[:1][None], torch.ones(1, 1, dtype=torch.bool), torch.tensor([1.0, 2.0, 3.0, 9.0, 5.0])
    got = multi_label_loss(logits, y, mask, pos, negative_weight=w[:1][None])
    x = logits[0, 0]
    expected = (y[0, 0] * pos * F.softplus(-x) + (1 - y[0, 0]) * w[0] * F.softplus(x)).mean()
    torch.testing.assert_close(got, expected)
    assert float(got) < float(multi_label_loss(logits, y, mask, pos))


def test_ordinal_settings_are_checked_against_the_schema():
    from spine_kp.config import ConfigError
    from spine_kp.grading.config import GradeStageConfig, ordinal_chain
    from spine_kp.schema import load_schema

    schema = load_schema("tianchi")
    on = {"ordinal_kind": "disc", "ordinal_grades": ("v1", "v2", "v3", "v4"), "ordinal_smoothing": 0.3}
    assert ordinal_chain(GradeStageConfig(**on), schema) == (0, 1, 2, 3)
    assert ordinal_chain(GradeStageConfig(), schema) == ()
    with pytest.raises(ConfigError, match="not one of the schema's kinds"):
        ordinal_chain(GradeStageConfig(**{**on, "ordinal_kind": "pedicle"}), schema)
    with pytest.raises(ConfigError, match="single-label"):
        ordinal_chain(GradeStageConfig(**{**on, "ordinal_kind": "vertebra", "ordinal_grades": ("v1", "v2")}), schema)
    with pytest.raises(ConfigError, match=r"\['v9'\] are not grades"):
        ordinal_chain(GradeStageConfig(**{**on, "ordinal_grades": ("v1", "v9")}), schema)
    with pytest.raises(ValueError, match="needs ordinal_kind"):
        GradeStageConfig(ordinal_smoothing=0.3)
