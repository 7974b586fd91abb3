"""Several annotated data sets trained as one model: each a data root and its competition-format annotation file.

``spine-kp train --data A --annotations A.json --data B --annotations B.json`` (``data.sources`` in a config) trains
on the union of the annotated studies. Each source is read and resolved against its own root, so a missing study is
named with the root it is missing from. A study UID may belong to one source only: the same study annotated twice
would be trained twice and could sit in both the training and the validation split, so it is an error naming both
annotation files.

The label sets of the sources may differ (one annotates no T12 vertebra, another only L1-L5 and the discs between
them, without grades). A landmark a study does not annotate is *unknown*, not absent: its heatmap gets weight 0, it
is never in the absent term, and an empty grade gets no grade loss (:func:`spine_kp.data.labels.encode_targets`
masks them; :mod:`spine_kp.data.dataset` builds ``absent`` from annotated landmarks only). The label statistics are
counted over the union, so every landmark some source annotates is trained and predicted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spine_kp.data.dataset import MissingDataError, resolve_records
from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import IngestError, StudyIndex, scan
from spine_kp.schema import Schema
from spine_kp.types import StudyRecord


class DuplicateStudyError(IngestError):
    """A study is annotated in two data sources; the message names it and both annotation files."""


@dataclass(frozen=True)
class DataSource:
    """One annotated data set (plain data, loadable from YAML as ``{root: ..., annotations: ...}``).

    Attributes:
        root: data root holding the study folders.
        annotations: competition-format annotation JSON of studies under ``root``.
    """

    root: str = ""
    annotations: str = ""

    def __post_init__(self) -> None:
        if not self.root or not self.annotations:
            raise ValueError(
                f"a data source needs both root and annotations, got root {self.root!r} and annotations "
                f"{self.annotations!r}"
            )


@dataclass(frozen=True)
class SourceData:
    """What one source contributes: its usable records, their studies, and the records skipped (``skip_missing``)."""

    source: DataSource
    records: list[StudyRecord]
    studies: dict[str, StudyIndex]
    skipped: list[str]


def check_unique_studies(annotated: Sequence[tuple[DataSource, Sequence[StudyRecord]]]) -> None:
    """Refuse a study UID annotated in two sources.

    Raises:
        DuplicateStudyError: one line naming the first such study, how many there are, and both annotation files.
    """
    owner: dict[str, DataSource] = {}
    for source, records in annotated:
        clash = [r.study_uid for r in records if r.study_uid in owner]
        if clash:
            first = owner[clash[0]]
            more = f" (and {len(clash) - 1} more)" if len(clash) > 1 else ""
            raise DuplicateStudyError(
                f"study {clash[0]}{more} is annotated in both {first.annotations} and {source.annotations}: a study "
                "may belong to one data source only; remove it from one of the two files"
            )
        owner.update((r.study_uid, source) for r in records)


def read_sources(
    sources: Sequence[DataSource], schema: Schema, skip_missing: bool = False, scan_workers: int = 1
) -> list[SourceData]:
    """Read every source's annotations, check the study UIDs are unique, then scan each root and resolve its records.

    The annotations are all read before any root is scanned, so a duplicate study fails before the slow scan.

    Raises:
        DuplicateStudyError: a study is annotated in two sources.
        MissingDataError: a source has unusable records (without ``skip_missing``), or none usable at all.
    """
    annotated = [(s, read_annotations(s.annotations, schema)) for s in sources]
    check_unique_studies(annotated)
    out = []
    for source, records in annotated:
        studies = scan(source.root, workers=scan_workers).studies
        kept, skipped = resolve_records(records, studies, skip_missing, source.root)
        if not kept:
            raise MissingDataError(f"{source.annotations}: no annotated study could be loaded from {source.root}")
        out.append(SourceData(source, kept, {r.study_uid: studies[r.study_uid] for r in kept}, skipped))
    return out
