"""Phantom lumbar MRI data sets: realistic synthetic studies written as DICOM plus competition annotations.

This package draws; :mod:`spine_kp.io` only reads and writes real data, and nothing in ``io`` imports from here.
Modules: ``plan`` (what a study holds, incl. domain randomisation), ``anatomy`` / ``phantom`` / ``render`` /
``canvas`` / ``sample`` / ``soft_tissue`` (the anatomy and its rendering), ``acquire`` (MR contrast, noise, series),
``grades`` (grade appearances by meaning), ``study`` / ``study_types`` (one study in memory), ``write`` /
``dicom_write`` / ``dicom_encode`` (DICOM files, annotations), ``preview``.

Public API:

* :func:`make_study` builds one study in memory: every series as stored (pixels, geometry, tags, UIDs), the
  structure label maps, the grades and the annotation record. Deterministic for ``(seed, index)``.
* :func:`write_study` writes one in-memory study as a DICOM folder.
* :func:`make_dataset` writes ``OUT/studies/...`` and ``OUT/annotations.json`` (optionally
  ``OUT/preview.png``), in parallel when asked.

Example::

    from spine_kp.synth import make_dataset
    summary = make_dataset(Path("phantom"), n_studies=100, seed=0, workers=2, preview=True)
    print(summary.describe())
"""

from __future__ import annotations

from spine_kp.synth.plan import TRICKY_KINDS
from spine_kp.synth.study import make_study
from spine_kp.synth.study_types import SynthOptions, SynthSeries, SynthStudy
from spine_kp.synth.write import SynthSummary, make_dataset, write_study

__all__ = [
    "TRICKY_KINDS",
    "SynthOptions",
    "SynthSeries",
    "SynthStudy",
    "SynthSummary",
    "make_dataset",
    "make_study",
    "write_study",
]
