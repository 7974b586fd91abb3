"""LightningDataModule: scan the data root once, split by study, serve training and validation batches.

The split is by study UID and deterministic for a seed: either a held-out fraction, or fold ``fold`` of a
``num_folds``-fold split. With several data sources (``sources``, :mod:`spine_kp.data.sources`) each source is split
on its own and the parts are joined, so every source of two studies or more is validated. The engine's validation
runs the real predictor and evaluator on ``val_records`` (with ``studies`` to find their DICOM files), so those are
exposed besides the loaders.

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

from spine_kp.config import BoundsError, bounded, check_bounds
from spine_kp.data.dataset import MissingDataError, SpineDataset, TargetCodec, collate_samples
from spine_kp.data.labels import LabelStats, label_stats
from spine_kp.data.sources import DataSource, read_sources
from spine_kp.data.transforms import AugmentConfig
from spine_kp.io.data_checks import check_against_data
from spine_kp.io.dicom import StudyIndex
from spine_kp.schema import Schema, load_schema
from spine_kp.types import StudyRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataConfig:
    """Data settings (plain data, loadable from YAML).

    Attributes:
        root: data root holding the study folders.
        annotations: competition-format annotation JSON.
        sources: several data sets trained as one (each ``{root, annotations}``), in place of ``root`` and
            ``annotations``; their label sets may differ (a landmark a study does not annotate is unknown: no loss).
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
    sources: tuple[DataSource, ...] = ()
    schema: str | None = None
    input_size: tuple[int, int] = bounded((256, 256), ge=16, le=4096)
    target_spacing: float | None = bounded(None, gt=0, le=20)  # mm per pixel; the ONNX metadata's limit
    neighbours: int = bounded(0, ge=0, le=8)
    val_fraction: float = bounded(0.2, gt=0, lt=1)
    fold: int | None = bounded(None, ge=0)
    num_folds: int = bounded(5, ge=2)
    seed: int = bounded(0, ge=0, le=2**32 - 1)
    batch_size: int = bounded(8, ge=1)
    num_workers: int = bounded(0, ge=0)
    pin_memory: bool = False
    cache: bool = True
    cache_dir: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    skip_missing: bool = False
    scan_workers: int = bounded(1, ge=1)

    def __post_init__(self) -> None:
        check_bounds(self)  # the ranges next to the fields above
        if self.fold is not None and not 0 <= self.fold < self.num_folds:
            raise ValueError(f"DataConfig.fold must be in [0, {self.num_folds}), got {self.fold}")
        if len(self.input_size) != 2:
            raise ValueError(f"DataConfig.input_size must be (H, W), got {self.input_size}")
        if self.sources and (self.root or self.annotations):
            raise BoundsError(
                "sources",
                "replaces data.root and data.annotations: set either those two (one data set) or data.sources "
                "(several), not both",
            )

    @property
    def data_sources(self) -> tuple[DataSource, ...]:
        """The data sets to train on: ``sources``, or the one of ``root`` and ``annotations``.

        Raises:
            ValueError: neither ``sources`` nor both ``root`` and ``annotations`` are set.
        """
        if self.sources:
            return self.sources
        if not self.root or not self.annotations:
            raise ValueError("DataConfig.root and DataConfig.annotations (or DataConfig.sources) must be set")
        return (DataSource(self.root, self.annotations),)


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


def empty_split_message(cfg: DataConfig, n_train: int, n_val: int) -> str:
    """One line for a split that leaves training or validation without a study: the counts and the setting to change."""
    n = n_train + n_val
    sources = cfg.data_sources
    annotations, roots = ", ".join(s.annotations for s in sources), ", ".join(s.root for s in sources)
    empty = "training" if not n_train else "validation"
    fraction = f"data.val_fraction {cfg.val_fraction:g}"
    how = f"fold {cfg.fold} of data.num_folds {cfg.num_folds}" if cfg.fold is not None else fraction
    if n < 2:
        fix = "training needs at least 2 annotated studies, one to validate on: add studies"
    elif cfg.fold is not None:
        fix = f"choose --fold (data.fold) below {n}, or fewer data.num_folds (at most {n})"
    else:
        fix = "raise data.val_fraction, or add studies"
    return (
        f"{annotations}: the {empty} split is empty: {n} annotated studies under {roots}, {n_train} for "
        f"training, {n_val} for validation ({how}); {fix}"
    )


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
        """Read and check each source's annotations, scan its root, split by study (once; later calls do nothing)."""
        if self._train is not None:
            return
        cfg = self.config
        parts = read_sources(cfg.data_sources, self.schema, cfg.skip_missing, cfg.scan_workers)
        records = [r for part in parts for r in part.records]
        self._studies = {uid: study for part in parts for uid, study in part.studies.items()}  # UIDs are unique
        self.skipped = [line for part in parts for line in part.skipped]
        self.data_warnings = check_against_data(records, self._studies)
        # Split each source on its own (one source: the plain split), so a small source is validated too.
        train_set: set[str] = set()
        val_set: set[str] = set()
        for part in parts:
            uids = (r.study_uid for r in part.records)
            train, val = split_studies(uids, cfg.val_fraction, cfg.seed, cfg.fold, cfg.num_folds)
            train_set.update(train)
            val_set.update(val)
        if not train_set or not val_set:  # Lightning would only warn, and no best.ckpt would be written
            raise MissingDataError(empty_split_message(cfg, len(train_set), len(val_set)))
        common = dict(
            schema=self.schema,
            input_size=None if self.codec is not None else cfg.input_size,  # with a codec: its own, from the config
            target_spacing=cfg.target_spacing,
            neighbours=cfg.neighbours,
            cache=cfg.cache,
            cache_dir=cfg.cache_dir,
            seed=cfg.seed,
            root=", ".join(part.source.root for part in parts),
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
