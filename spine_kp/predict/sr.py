"""``predict --dicom-sr DIR``: one DICOM Structured Report per predicted study (built by :mod:`spine_kp.io.dicom_sr`).

The model is identified by its model card's ``identity`` (:class:`spine_kp.inference.card.Identity`): name
``spine_kp <backbone>+<decoder>``, version ``<spine_kp version> sha256:<first 12 hex digits of the checkpoint file>``
so two checkpoints of one architecture never share a version, and a device UID derived from that digest. An ONNX
export carries its source checkpoint's card (:func:`algorithm_from_card`), so ``predict --onnx`` writes the same
reports without torch. A study whose SR cannot be built or written is added to the run's failures with the reason;
the other studies go on.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydicom.uid import generate_uid

from spine_kp.inference.card import Identity, ModelCard
from spine_kp.io.dicom_sr import AlgorithmInfo, build_sr, read_source_header, write_sr
from spine_kp.io.names import study_file_stems
from spine_kp.predict.runner import PredictRun, StudyFailure
from spine_kp.schema import Schema
from spine_kp.types import Slice

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a full or read-only disk: one error line, not N failures


def algorithm_from_card(card: ModelCard) -> AlgorithmInfo:
    """Name, version, parameters and device UID of the model a card describes (its ``identity`` and architecture)."""
    return _algorithm(card.identity, card.network)


def algorithm_from_checkpoint(path: str | Path) -> AlgorithmInfo:
    """The identification of the model in a checkpoint file (see the module docstring); a file that is not one
    checkpoint (a fold ensemble) is named ``spine_kp`` with the file's digest."""
    from spine_kp.checkpoint import CheckpointError, load_checkpoint  # torch: not on the ONNX path
    from spine_kp.inference.checkpoint_card import card_from_checkpoint, file_identity

    p = Path(path)
    try:  # mmap: the pickled structure is read, the tensors are not
        return algorithm_from_card(card_from_checkpoint(load_checkpoint(p, mmap=True)))
    except CheckpointError:
        return _algorithm(file_identity(p, {}), {})


def _algorithm(identity: Identity, model: Mapping[str, Any]) -> AlgorithmInfo:
    params = [f"checkpoint={identity.checkpoint}"] + [
        f"{k}={model[k]}" for k in ("output_stride", "in_chans") if k in model
    ]
    return AlgorithmInfo(
        name=identity.name,
        version=identity.version,
        parameters=tuple(params),
        device_uid=generate_uid(entropy_srcs=[identity.sha256]),
    )


def sr_names(run: PredictRun) -> dict[str, str]:
    """Study UID -> the report's file name, ``<stem>.dcm`` (:mod:`spine_kp.io.names`: distinct per study)."""
    stems = study_file_stems(p.slice.study_uid for p in run.predictions)
    return {uid: f"{stem}.dcm" for uid, stem in stems.items()}


def write_dicom_srs(run: PredictRun, schema: Schema, out_dir: str | Path, algorithm: AlgorithmInfo) -> list[Path]:
    """Write ``out_dir/<study UID>.dcm`` for every prediction of ``run`` (see :func:`sr_names`); failures go to
    ``run.failures``.

    Returns:
        The files written.

    Raises:
        OSError: a full or read-only disk (ENOSPC, EDQUOT, EROFS), naming the report's path: not a study's fault.
    """
    out = Path(out_dir)
    names = sr_names(run)
    written = []
    for pred in run.predictions:
        s = pred.slice
        try:
            sr = build_sr(pred.record, read_source_header(s.path), schema, algorithm)
            written.append(write_sr(sr, out / names[s.study_uid]))
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS:  # the disk, not the study: every other report would fail the same way
                raise
            _fail(run, s, exc)
        except Exception as exc:  # one study's report must not stop the others; the reason is reported
            _fail(run, s, exc)
    return written


def _fail(run: PredictRun, s: Slice, exc: Exception) -> None:
    folder = str(Path(s.path).parent) if s.path else ""
    run.failures.append(StudyFailure(s.study_uid, folder, f"DICOM SR not written: {type(exc).__name__}: {exc}"))
