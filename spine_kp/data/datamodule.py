"""LightningDataModule: scan the data root once, split by study, serve training and validation batches.

The split is by study UID and deterministic for a seed: either a held-out fraction, or fold ``fold`` of a
``num_folds``-fold split. The engine's validation runs the real predictor and evaluator on ``val_records``
(with ``studies`` to find their DICOM files), so those are exposed besides the loaders.

The heatmap targets are encoded by the datasets (in the loader workers) with the codec this data module is given:
the model's own (``LandmarkModule.codec``, built by :func:`spine_kp.checkpoint.build_codec`), never one rebuilt
here from config fields, so training targets and the model's decoding cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader

from spine_kp.data.dataset import MissingDataError, SpineDataset, TargetCodec, collate_samples, resolve_records
from spine_kp.data.labels import LabelStats, label_stats
from spine_kp.data.transforms import AugmentConfig
from spine_kp.io.annotations import read_annotations
from spine_kp.io.data_checks import check_against_data
from spine_kp.io.dicom import StudyIndex, scan
from spine_kp.schema import Schema, load_schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Data settings (plain data, loadable from YAML).

    Attributes:
        root: data root holding the study folders.
        annotations: competition-format annotation JSON.
        schema: schema YAML path or packaged name; None for the default schema.
        input_size: (H, W) network input.
        target_spacing: mm per input pixel: images are scaled so anatomy has one size in the input whatever the
            field of view (shrunk only when the image would not fit); None fits each image to ``input_size``.
        neighbours: k neighbouring slices on each side as extra channels (2k+1 channels).
        val_fraction: share of studies held out for validation when ``fold`` is None.
        fold: validation fold in [0, num_folds) for a k-fold split by study; None for a fraction split.
        num_folds: number of folds.
        seed: seed of the split and of the augmentation stream.
        batch_size, num_workers, pin_memory: DataLoader settings (workers are persistent so caches survive).
        cache: keep prepared slices in memory (per worker).
        cache_dir: also keep them as ``.npz`` files here (shared by workers and runs); None for none.
        augment: training augmentation.
        skip_missing: skip annotated studies missing from the root (warning) instead of failing.
        scan_workers: processes used to scan the DICOM headers.
    """

    root: str = ""
    annotations: str = ""
    schema: str | None = None
    input_size: tuple[int, int] = (256, 256)
    target_spacing: float | None = None
    neighbours: int = 0
    val_fraction: float = 0.2
    fold: int | None = None
    num_folds: int = 5
    seed: int = 0
    batch_size: int = 8
    num_workers: int = 0
    pin_memory: bool = False
    cache: bool = True
    cache_dir: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    skip_missing: bool = False
    scan_workers: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"DataConfig.val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.num_folds < 2:
            raise ValueError(f"DataConfig.num_folds must be >= 2, got {self.num_folds}")
        if self.fold is not None and not 0 <= self.fold < self.num_folds:
            raise ValueError(f"DataConfig.fold must be in [0, {self.num_folds}), got {self.fold}")
        if self.neighbours < 0 or self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("DataConfig: neighbours and num_workers must be >= 0, batch_size >= 1")
        if self.target_spacing is not None and not self.target_spacing > 0:
            raise ValueError(f"DataConfig.target_spacing must be > 0 mm or null, got {self.target_spacing}")
        if len(self.input_size) != 2 or min(self.input_size) < 8:
            raise ValueError(f"DataConfig.input_size must be (H, W) of at least 8 pixels, got {self.input_size}")


def split_studies(
    study_uids: Iterable[str], val_fraction: float, seed: int, fold: int | None = None, num_folds: int = 5
) -> tuple[list[str], list[str]]:
    """Split study UIDs into (train, validation), deterministically for a seed and independent of input order.

    With ``fold`` set: a ``num_folds``-fold split (every study is in exactly one validation fold). Otherwise
    ``round(n * val_fraction)`` studies are held out (at least one when the fraction is positive and n >= 2).
    """
    uids = sorted(set(study_uids))
    order = [uids[i] for i in np.random.default_rng(seed).permutation(len(uids))]
    if fold is not None:
        val = set(order[fold::num_folds])
    else:
        n_val = round(len(uids) * val_fraction)
        if val_fraction > 0 and len(uids) >= 2:
            n_val = min(max(n_val, 1), len(uids) - 1)
        val = set(order[:n_val])
    return [u for u in uids if u not in val], [u for u in uids if u in val]


class SpineDataModule(pl.LightningDataModule):
    """Training / validation data of one run.

    Args:
        config: data settings.
        schema: landmark set; default ``load_schema(config.schema)``.
        codec: the model's heatmap codec (``LandmarkModule.codec``); both loaders' batches then carry ``heatmaps``
            and ``heatmap_weight`` (see :mod:`spine_kp.data.dataset`). None: batches without heatmap targets,
            enough for the records and the images but not for training.
    """

    def __init__(self, config: DataConfig, schema: Schema | None = None, codec: TargetCodec | None = None) -> None:
        super().__init__()
        self.config = config
        self.schema = schema if schema is not None else load_schema(config.schema)
        self.codec = codec
        self._train: SpineDataset | None = None
        self._val: SpineDataset | None = None
        self._studies: dict[str, StudyIndex] = {}
        self._stats: LabelStats | None = None
        self.skipped: list[str] = []
        self.data_warnings: list[str] = []  # points outside their image, zIndex beyond the series (counted, logged)

    def setup(self, stage: str | None = None) -> None:
        """Scan the root, read and check the annotations, split by study (once; later calls do nothing)."""
        if self._train is not None:
            return
        cfg = self.config
        if not cfg.root or not cfg.annotations:
            raise ValueError("DataConfig.root and DataConfig.annotations must both be set")
        records = read_annotations(cfg.annotations, self.schema)
        studies = scan(cfg.root, workers=cfg.scan_workers).studies
        records, self.skipped = resolve_records(records, studies, cfg.skip_missing, cfg.root)
        if not records:
            raise MissingDataError(f"{cfg.annotations}: no annotated study could be loaded from {cfg.root}")
        self.data_warnings = check_against_data(records, studies)
        train_uids, val_uids = split_studies(
            (r.study_uid for r in records), cfg.val_fraction, cfg.seed, cfg.fold, cfg.num_folds
        )
        train_set, val_set = set(train_uids), set(val_uids)
        self._studies = {r.study_uid: studies[r.study_uid] for r in records}
        common = dict(
            schema=self.schema,
            input_size=cfg.input_size,
            target_spacing=cfg.target_spacing,
            neighbours=cfg.neighbours,
            cache=cfg.cache,
            cache_dir=cfg.cache_dir,
            seed=cfg.seed,
            root=cfg.root,
            codec=self.codec,
        )
        self._train = SpineDataset(
            [r for r in records if r.study_uid in train_set], self._studies, augment=cfg.augment, **common
        )
        self._val = SpineDataset([r for r in records if r.study_uid in val_set], self._studies, **common)
        log.info("data: %d training and %d validation images", len(self._train), len(self._val))

    def _need(self) -> tuple[SpineDataset, SpineDataset]:
        if self._train is None or self._val is None:
            raise RuntimeError("SpineDataModule: call setup() first")
        return self._train, self._val

    @property
    def train_dataset(self) -> SpineDataset:
        return self._need()[0]

    @property
    def val_dataset(self) -> SpineDataset:
        return self._need()[1]

    @property
    def train_records(self) -> list[StudyRecord]:
        """Annotation records of the training studies."""
        return list(self._need()[0].records)

    @property
    def val_records(self) -> list[StudyRecord]:
        """Annotation records of the validation studies (ground truth for the evaluator)."""
        return list(self._need()[1].records)

    @property
    def studies(self) -> dict[str, StudyIndex]:
        """Study UID -> StudyIndex of every usable annotated study (train and validation)."""
        self._need()
        return dict(self._studies)

    @property
    def label_stats(self) -> LabelStats:
        """Landmark and grade counts over the training records (untrained landmarks/grades, class weights)."""
        if self._stats is None:
            self._stats = label_stats(self.train_records, self.schema)
        return self._stats

    def _loader(self, dataset: SpineDataset, shuffle: bool) -> DataLoader:
        cfg = self.config
        return DataLoader(
            dataset,
            batch_size=cfg.batch_size,
            shuffle=shuffle,
            num_workers=cfg.num_workers,
            pin_memory=cfg.pin_memory,
            collate_fn=collate_samples,
            persistent_workers=cfg.num_workers > 0,  # a worker's slice cache lives as long as the worker
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._need()[0], shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._need()[1], shuffle=False)
