"""Training of the junction check (:mod:`spine_kp.junction`) and its self-contained checkpoint payload.

Runs after the landmark network (and the crop grading stage) when ``junction.enabled``: on the training split's
annotated slices, the annotated discs give two sets of five candidates each (:func:`spine_kp.junction.geometry.
disc_candidates`), exactly as predict builds them from a decoded chain:

* from the discs down to L5-S1: L3-L4, L4-L5, L5-S1 and two extrapolated below (offsets -2, -1, 0, 1, 2);
* from the discs down to L4-L5, as a chain one level short would give them: L2-L3, L3-L4, L4-L5 and two extrapolated
  (offsets -3, -2, -1, 0, 1), so the junction is also learnt where it is only extrapolated;

and every other annotated disc further up is one more example of "two or more above". Each epoch re-crops every
slice with a random shift of each centre, one random rotation and window scale per set, and a random gamma. The
validation split's slices (plain crops) give the share of chains whose junction the check finds (both sets), kept in
the payload's metrics; the weights are the last epoch's. The payload goes into the run's checkpoints under
``"junction"`` (:func:`spine_kp.engine.grade_stage_train.attach_grade_stage` writes any payload).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from spine_kp.checkpoint import JUNCTION_KEY
from spine_kp.config import to_dict
from spine_kp.engine.annotated_slices import load_annotated_slices
from spine_kp.engine.optim import adamw_warmup_cosine
from spine_kp.engine.stage_trainer import stage_trainer
from spine_kp.grading.crops import extract_crops
from spine_kp.inference.junction_check import JunctionLayout, crop_angle
from spine_kp.io.dicom import StudyIndex
from spine_kp.junction.config import JunctionConfig
from spine_kp.junction.geometry import (
    N_CANDIDATES,
    OFFSETS,
    candidate_classes,
    disc_candidates,
    hypothesis_log_likelihoods,
)
from spine_kp.junction.model import JunctionNet
from spine_kp.schema import Schema
from spine_kp.types import Slice, StudyRecord

log = logging.getLogger(__name__)

PAYLOAD_VERSION = 1
#: the "two or more above" class is the most frequent (every upper disc): it weighs half in the loss
CLASS_WEIGHTS = (0.5, 1.0, 1.0, 1.0, 1.0)
LABEL_SMOOTHING = 0.05


def _chains(
    rec: StudyRecord, slc: Slice, schema: Schema, layout: JunctionLayout
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(points (N, 2) original pixels, classes (N,))`` of a slice: the two candidate sets, then the upper discs."""
    points = {schema.index(p.identification): np.asarray(p.coord, dtype=np.float64) for p in rec.primary.points}
    discs = [j for j in layout.discs if j in points]
    last = layout.discs[-1]
    if last not in points or discs[-3:] != list(layout.discs[-3:]):
        return []
    out = []
    for end, junction in ((len(discs), 2), (len(discs) - 1, 3)):
        cand = disc_candidates(np.stack([points[j] for j in discs[:end]]))
        if cand is not None:
            out.append((cand, candidate_classes(junction)))
    upper = [points[j] for j in discs[:-4]]  # above the lowest set's first candidate (L3-L4): offset <= -3
    if upper and out:
        out.append((np.stack(upper), np.zeros(len(upper), dtype=np.int64)))
    return out


class JunctionCrops(Dataset):
    """One item per slice: every crop of its sets (augmented in training) and their classes."""

    def __init__(
        self,
        items: Sequence[tuple[Slice, list[tuple[np.ndarray, np.ndarray]]]],
        cfg: JunctionConfig,
        augment: bool,
        seed: int,
    ) -> None:
        self.items, self.cfg, self.augment = list(items), cfg, augment
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        slc, sets = self.items[i]
        cfg, rng = self.cfg, self.rng
        crops, labels = [], []
        angle = crop_angle(sets[0][0], slc.spacing)  # the set ending at L5-S1: the local axis of the junction
        for points, classes in sets:
            pts, a, window = points, angle, cfg.window_mm
            if self.augment:
                shift_mm = rng.normal(0.0, cfg.jitter_mm, points.shape)
                pts = points + shift_mm / np.array([slc.spacing[1], slc.spacing[0]])
                a = angle + math.radians(rng.normal(0.0, cfg.rotate_deg))
                window = cfg.window_mm * rng.uniform(1.0 - cfg.scale, 1.0 + cfg.scale)
            c = extract_crops(slc.pixels, pts, slc.spacing, cfg.size_px, window, np.full(len(pts), a))
            if self.augment and rng.random() < 0.5:
                c = np.sign(c) * np.abs(c) ** rng.uniform(0.7, 1.4)
            crops.append(c)
            labels.append(classes)
        return {
            "crops": torch.from_numpy(np.concatenate(crops)[:, None].astype(np.float32)),
            "labels": torch.from_numpy(np.concatenate(labels).astype(np.int64)),
            "sets": torch.tensor([len(c) for c, _ in sets[:2]]),
        }


def _collate(batch: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([b[k] for b in batch]) for k in ("crops", "labels")}


class JunctionModule(pl.LightningModule):
    """The recipe: cross-entropy over the offset classes (label smoothing, the upper class at half weight), AdamW
    with the landmark network's warm-up and cosine schedule."""

    def __init__(self, cfg: JunctionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.model = JunctionNet(cfg.channels, cfg.dropout)
        self.register_buffer("class_weights", torch.tensor(CLASS_WEIGHTS), persistent=False)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["crops"])
        loss = F.cross_entropy(logits, batch["labels"], weight=self.class_weights, label_smoothing=LABEL_SMOOTHING)
        self.log("junction/train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch["labels"]))
        return loss

    def configure_optimizers(self) -> dict[str, Any]:
        c = self.cfg
        return adamw_warmup_cosine(self.model, self.trainer, c.lr, c.weight_decay, c.warmup_epochs, c.min_lr_ratio)


@torch.no_grad()
def junction_accuracy(model: JunctionNet, data: JunctionCrops) -> dict[str, Any]:
    """Crop accuracy and the share of candidate sets whose junction is the most likely hypothesis (the chain from
    L5-S1 and the one a level short)."""
    model.eval()
    hits = sets = right = crops = 0
    for i in range(len(data)):
        item = data[i]
        lp = F.log_softmax(model(item["crops"]), dim=1).numpy()
        right += int((lp.argmax(1) == item["labels"].numpy()).sum())
        crops += len(lp)
        for s, truth in enumerate((0, 1)[: len(item["sets"])]):
            ll = hypothesis_log_likelihoods(lp[s * N_CANDIDATES : (s + 1) * N_CANDIDATES])
            hits += int(max(ll, key=ll.get) == truth)
            sets += 1
    return {
        "crops": crops,
        "crop_accuracy": right / crops if crops else None,
        "sets": sets,
        "junction_found": hits / sets if sets else None,
    }


def junction_skip_reason(cfg: JunctionConfig, schema: Schema, n_chains: int) -> str | None:
    """Why the check is not trained (None: it is)."""
    if not cfg.enabled:
        return "junction.enabled is false"
    if JunctionLayout.of(schema) is None:
        return f"schema {schema.name!r} has no chain of three or more evenly spaced {schema.landmark_kinds[-1]}s"
    if n_chains < cfg.min_train_studies:
        last = schema.landmarks[JunctionLayout.of(schema).discs[-1]]  # type: ignore[union-attr]
        return (
            f"only {n_chains} training slices annotate {last} and the two discs above it "
            f"(junction.min_train_studies: {cfg.min_train_studies}); the levels are not checked"
        )
    return None


def train_junction(
    cfg: JunctionConfig,
    schema: Schema,
    train_records: Sequence[StudyRecord],
    val_records: Sequence[StudyRecord],
    studies: Mapping[str, StudyIndex],
    seed: int = 0,
    accelerator: str = "cpu",
    progress_bar: bool = False,
) -> dict[str, Any] | None:
    """Train the junction check on the annotated slices of a split.

    Returns:
        ``{"version", "config", "state_dict", "metrics"}`` (plain data and CPU tensors), or None when it is skipped
        (the reason is logged).
    """
    t0 = time.perf_counter()
    layout = JunctionLayout.of(schema)

    def items(records: Sequence[StudyRecord], what: str) -> list[tuple[Slice, list[tuple[np.ndarray, np.ndarray]]]]:
        if layout is None:
            return []
        out = []
        for rec, slc in load_annotated_slices(records, studies, 0, what):
            sets = _chains(rec, slc, schema, layout)
            if sets:
                out.append((slc, sets))
        return out

    train_items = items(train_records, "junction check") if cfg.enabled else []
    reason = junction_skip_reason(cfg, schema, len(train_items))
    if reason is not None:
        (log.warning if cfg.enabled else log.info)("junction check not trained: %s", reason)
        return None
    pl.seed_everything(seed, workers=True, verbose=False)
    val_items = items(val_records, "junction check")
    train_set = JunctionCrops(train_items, cfg, augment=True, seed=seed)
    per_batch = max(1, cfg.batch_size // 12)  # about 12 crops per slice
    loader = DataLoader(
        train_set, batch_size=per_batch, shuffle=True, collate_fn=_collate, drop_last=len(train_set) > per_batch
    )
    module = JunctionModule(cfg)
    if cfg.epochs > 0:
        stage_trainer(cfg.epochs, len(loader), accelerator, progress_bar).fit(module, loader)
    model = module.model.cpu().eval()
    metrics = {
        "train_slices": len(train_items),
        "val_slices": len(val_items),
        "val": junction_accuracy(model, JunctionCrops(val_items, cfg, augment=False, seed=seed)) if val_items else None,
        "classes": list(OFFSETS),
        "seconds_total": round(time.perf_counter() - t0, 1),
    }
    log.info("junction check: %s", metrics)
    return {
        "version": PAYLOAD_VERSION,
        "config": to_dict(cfg),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metrics": metrics,
    }


__all__ = [
    "JUNCTION_KEY",
    "JunctionCrops",
    "JunctionModule",
    "junction_accuracy",
    "junction_skip_reason",
    "train_junction",
]
