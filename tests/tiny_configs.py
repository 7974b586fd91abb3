"""Config pieces several training tests share: the tiny demo_cpu model, a tiny stacked hourglass and an augmentation
that only cuts the field of view. A plain module (not conftest.py) so test folders can import it."""

from __future__ import annotations

from dataclasses import replace

from spine_kp.data.transforms import AugmentConfig

#: A demo_cpu model small enough to train one epoch on the five phantoms in seconds (2 validation studies).
TINY_TRAIN = {
    "data.input_size": "[64, 64]",
    "data.batch_size": "2",
    "data.val_fraction": "0.4",
    "model.decoder_channels": "16",
    "trainer.max_epochs": "1",
    "trainer.progress_bar": "false",
}

#: a tiny hourglass (overrides for ``load_experiment``): the loss tests need a module, not a trained one
TINY_HOURGLASS = {
    "model.backbone": "none",
    "model.decoder": "hourglass",
    "model.output_stride": "4",
    "model.decoder_channels": "8",
    "model.decoder_kwargs": "{num_stacks: 1, depth: 2}",
    "data.input_size": "[64, 64]",
}


def cut_only(frac: tuple[float, float]) -> AugmentConfig:
    """Only the field-of-view cut, always, keeping ``frac`` of the image: landmarks leave the view on most draws."""
    off = {f"{name}_prob": 0.0 for name in ("flip", "affine", "elastic", "crop", "bias", "gamma", "contrast", "blur")}
    return replace(AugmentConfig(), **off, noise_prob=0.0, fov_cut_prob=1.0, fov_cut_frac=frac)
