"""A tiny trained checkpoint (one epoch at 64 x 64) shared by the prediction tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(synth_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from spine_kp.engine.config import load_experiment
    from spine_kp.engine.train import replace_data_paths, train

    cfg = load_experiment(
        "demo_cpu",
        {
            "data.input_size": "[64, 64]",
            "data.batch_size": "2",
            "data.val_fraction": "0.4",
            "model.decoder_channels": "16",
            "trainer.max_epochs": "1",
            "trainer.progress_bar": "false",
        },
    )
    cfg = replace_data_paths(cfg, synth_root / "studies", synth_root / "annotations.json")
    result = train(cfg, tmp_path_factory.mktemp("tiny_run"))
    assert result.last_checkpoint is not None
    return result.last_checkpoint
