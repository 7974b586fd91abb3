from __future__ import annotations

import torch

from spine_kp.engine.losses import heatmap_loss, multi_label_loss, single_label_loss


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
