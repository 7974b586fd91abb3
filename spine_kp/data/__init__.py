"""Training data pipeline: preprocessing shared with the predictor, targets, augmentation, dataset, datamodule.

Modules:
    normalization: ``normalize_intensity``, ``intensity_stats`` (numpy only; the grading crops use it too).
    preprocess: ``fit_to_size``, ``prepare_slice``, ``Geometry``, ``to_original``
        (no annotation knowledge; the predictor uses it too).
    labels: ``encode_targets``, ``label_stats`` / ``LabelStats`` (untrained landmarks and grades, class weights).
    transforms: ``AugmentConfig``, ``Augmenter`` (geometric steps in transforms_geometric, intensity steps in
        transforms_intensity).
    dataset: ``SpineDataset``, ``collate_samples`` (the batch format), ``resolve_records``.
    (The check of annotated points against their images, ``check_against_data``, is torch-free and shared with
    evaluation: :mod:`spine_kp.io.data_checks`.)
    datamodule: ``DataConfig``, ``SpineDataModule``, ``split_studies``.

Names are exported lazily so that importing the light preprocessing does not pull in MONAI or Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Geometry": "preprocess",
    "normalize_intensity": "normalization",
    "intensity_stats": "normalization",
    "fit_to_size": "preprocess",
    "prepare_slice": "preprocess",
    "to_original": "preprocess",
    "Targets": "labels",
    "LabelStats": "labels",
    "encode_targets": "labels",
    "label_stats": "labels",
    "AugmentConfig": "transforms",
    "Augmenter": "transforms",
    "SpineDataset": "dataset",
    "MissingDataError": "dataset",
    "collate_samples": "dataset",
    "resolve_records": "dataset",
    "DataConfig": "datamodule",
    "SpineDataModule": "datamodule",
    "split_studies": "datamodule",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'spine_kp.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"spine_kp.data.{module}"), name)
