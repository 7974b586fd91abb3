"""Validate a checkpoint on the phantom validation split with N CPU processes; each rank writes what it logged.

``python ddp_validate.py CKPT DATA_ROOT DEVICES OUT_DIR`` writes ``OUT_DIR/rank<r>.json`` per rank. With DEVICES > 1
the strategy is Lightning's "ddp": it starts the other ranks by running this file again, so it must be a file, and
it is run in a subprocess of the tests (never inside pytest). :func:`validate` is also imported by the tests, to
validate the same weights in one process.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path


def validate(ckpt: Path, root: Path, devices: int) -> tuple[int, dict[str, float]]:
    """(global rank, the metrics the module logged) of ``trainer.validate`` on ``ckpt``'s validation split."""
    import pytorch_lightning as pl

    from spine_kp.checkpoint import load_checkpoint
    from spine_kp.data.datamodule import SpineDataModule
    from spine_kp.engine.module import LandmarkModule

    source = load_checkpoint(ckpt)
    module = LandmarkModule(source.config, source.schema.to_dict(), source.label_stats, source.codec)
    module.load_state_dict(source.state_dict)
    data = dataclasses.replace(module.cfg.data, root=str(root / "studies"), annotations=str(root / "annotations.json"))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=SpineDataModule(data, schema=module.schema, codec=module.codec), verbose=False)
    return trainer.global_rank, {k: float(v) for k, v in trainer.callback_metrics.items()}


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    ckpt, root, devices, out = sys.argv[1:]
    rank, metrics = validate(Path(ckpt), Path(root), int(devices))
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(metrics))
