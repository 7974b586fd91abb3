"""The one optimiser and schedule: weight-decay groups, warm-up then cosine to the configured floor, in both stages."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from spine_kp.engine.optim import adamw_warmup_cosine, param_groups_weight_decay, warmup_steps


def _net() -> torch.nn.Module:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.GroupNorm(2, 4), torch.nn.Conv2d(4, 2, 1, bias=False))
    net[2].weight.requires_grad_(False)  # frozen: left out
    return net


def test_biases_and_1d_tensors_get_no_decay_and_frozen_ones_are_left_out():
    net = _net()
    decay, no_decay = param_groups_weight_decay(net, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [net[0].weight.shape]
    assert {id(p) for p in no_decay["params"]} == {id(net[0].bias), id(net[1].weight), id(net[1].bias)}


def _lrs(module_lr: float, total: int, epochs: int, warmup_epochs: float, floor: float) -> list[float]:
    trainer = SimpleNamespace(estimated_stepping_batches=total, max_epochs=epochs)
    out = adamw_warmup_cosine(_net(), trainer, module_lr, 0.01, warmup_epochs, floor)
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert out["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_warm_up_then_cosine_down_to_the_configured_floor():
    lrs = _lrs(0.1, total=40, epochs=4, warmup_epochs=1.0, floor=0.2)
    w = warmup_steps(40, 4, 1.0)
    assert w == 10
    assert lrs[:3] == pytest.approx([0.1 / 11, 0.2 / 11, 0.3 / 11])  # linear warm-up over one epoch
    assert lrs[w] == pytest.approx(0.1)  # the peak
    assert min(lrs[w:]) == pytest.approx(0.1 * (0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * 29 / 30))))
    assert _lrs(0.1, 40, 4, 1.0, floor=0.0)[-1] < min(lrs[w:])  # the floor comes from the config
    assert warmup_steps(5, 10, 1.0) == 0 and warmup_steps(3, 1, 5.0) == 2  # at most T - 1 steps


def test_the_crop_stage_uses_the_same_schedule_with_its_own_settings():
    from spine_kp.engine.grade_stage_module import CropGraderModule
    from spine_kp.grading.config import GradeStageConfig
    from spine_kp.schema import load_schema

    cfg = GradeStageConfig(channels=(8,), size_px=16, lr=0.01, min_lr_ratio=0.3, warmup_epochs=0.0, epochs=2)
    module = CropGraderModule(cfg, load_schema(), None)
    module._trainer = SimpleNamespace(estimated_stepping_batches=10, max_epochs=2)  # what configure_optimizers reads
    out = module.configure_optimizers()
    opt, sched = out["optimizer"], out["lr_scheduler"]["scheduler"]
    assert opt.param_groups[0]["weight_decay"] == cfg.weight_decay and opt.param_groups[1]["weight_decay"] == 0.0
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)  # no warm-up
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 * 0.3)  # the stage's own floor, not a constant
    with pytest.raises(ValueError, match="min_lr_ratio"):
        GradeStageConfig(min_lr_ratio=1.5)
