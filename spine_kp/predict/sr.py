"""``predict --dicom-sr DIR``: one DICOM Structured Report per predicted study (built by :mod:`spine_kp.io.dicom_sr`).

The model is identified from its checkpoint: name ``spine_kp <backbone>+<decoder>`` (from the stored model
config), version ``<spine_kp version> sha256:<first 12 hex digits of the checkpoint file>`` so two checkpoints of
one architecture never share a version, and a device UID derived from that digest. An ONNX export carries the same
identification in its metadata (:func:`algorithm_from_onnx`), so ``predict --onnx`` writes the same reports without
torch. A study whose SR cannot be built or written is added to the run's failures with the reason; the other
studies go on.
"""

from __future__ import annotations

import errno
import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from pydicom.uid import generate_uid

from spine_kp.io.dicom_sr import AlgorithmInfo, build_sr, read_source_header, write_sr
from spine_kp.io.names import study_file_stems
from spine_kp.predict.runner import PredictRun, StudyFailure
from spine_kp.schema import Schema
from spine_kp.types import Slice

_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a full or read-only disk: one error line, not N failures


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _model_config(path: Path) -> dict:
    """The ``model`` section of the config stored in a checkpoint ({} when there is none)."""
    from spine_kp.checkpoint import CheckpointError, load_checkpoint  # torch: not on the ONNX path

    try:  # mmap: the pickled structure is read, the tensors are not
        return load_checkpoint(path, mmap=True).model_config
    except CheckpointError:
        return {}


def _package_version() -> str:
    try:
        return version("spine_kp")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


def algorithm_from_checkpoint(path: str | Path) -> AlgorithmInfo:
    """Name, version, parameters and device UID of the model in a checkpoint (see the module docstring)."""
    p = Path(path)
    return _algorithm(_model_config(p), p.name, _file_digest(p), _package_version())


def algorithm_from_onnx(meta: dict) -> AlgorithmInfo:
    """The same identification from an ONNX export's metadata (``OnnxPredictor.meta``): the checkpoint it was
    exported from, its digest and the spine_kp version that exported it."""
    model = meta.get("model", {})
    return _algorithm(
        dict(model.get("config", {})),
        str(model.get("checkpoint", "")),
        str(model.get("checkpoint_sha256", "")),
        str(model.get("spine_kp_version", "unknown")),
    )


def _algorithm(model: dict, checkpoint_name: str, digest: str, package: str) -> AlgorithmInfo:
    arch = "+".join(str(model[k]) for k in ("backbone", "decoder") if k in model)
    params = [f"checkpoint={checkpoint_name}"] + [
        f"{k}={model[k]}" for k in ("output_stride", "in_chans") if k in model
    ]
    return AlgorithmInfo(
        name=f"spine_kp {arch}".strip(),
        version=f"{package} sha256:{digest[:12]}",
        parameters=tuple(params),
        device_uid=generate_uid(entropy_srcs=[digest]),
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
