"""Checks ``spine-kp predict`` runs on its outputs: before the batch is predicted, and before the first file is written.

Before the work (:func:`check_predict_outputs`): no output is an input or another output
(:func:`spine_kp.io.output_guard.refuse_same_paths`), every output can be written
(:func:`spine_kp.io.atomic.check_writable`), and an existing file is only replaced when it is what predict writes
there: ``-o`` must be an earlier predictions JSON (scored points, or none), ``--csv`` an earlier predictions CSV, and
no output may replace a DICOM file. So ``-o`` aimed at ground-truth annotations, a checkpoint or a slice fails with
one ``error:`` line instead of destroying it.

Before writing (:func:`reused_folder_warnings`): a reused ``--overlays``/``--dicom-sr`` folder is counted, so files of
an earlier run (another model's) are not mistaken for this run's.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from spine_kp.io.atomic import check_writable
from spine_kp.io.output_guard import OutputClashError, files_from_before, refuse_same_paths, same_path
from spine_kp.predict.runner import PredictRun

CSV_HEADER_START = "study,series,instance,"  # the first columns of spine_kp.predict.outputs.csv_text


def check_predict_outputs(
    data_root: str | Path,
    model: tuple[str, str | Path],
    output: str | Path,
    errors: str | Path,
    csv: str | Path | None = None,
    overlays: str | Path | None = None,
    dicom_sr: str | Path | None = None,
) -> None:
    """Raise a one-line :class:`~spine_kp.io.output_guard.OutputClashError` (or the OSError writing would raise) now.

    Args:
        data_root: the folder of DICOM studies (an input).
        model: ``(flag, path)`` of the model, ``("--checkpoint", ...)`` or ``("--onnx", ...)`` (an input).
        output: the predictions JSON (``-o``); errors: its ``.errors.json``.
        csv, overlays, dicom_sr: the optional outputs (None: not asked for).
    """
    outputs: dict[str, str | Path | None] = {
        "-o": output,
        f"the errors file of -o ({Path(errors).name})": errors,
        "--csv": csv,
        "--overlays": overlays,
    }
    # overlays (.png) and reports (.dcm) may share a folder: their names never meet
    if dicom_sr is not None and not (overlays is not None and same_path(overlays, dicom_sr)):
        outputs["--dicom-sr"] = dicom_sr
    refuse_same_paths(outputs, {"data root": data_root, model[0]: model[1]})
    for path, folder in ((output, False), (errors, False), (csv, False), (overlays, True), (dicom_sr, True)):
        if path is not None:  # an output that cannot be written fails now, not after predicting every study
            check_writable(path, folder)
    _check_replaceable("-o", output, _foreign_json)
    _check_replaceable(f"the errors file of -o ({Path(errors).name})", errors, lambda p: None)
    if csv is not None:
        _check_replaceable("--csv", csv, _foreign_csv)


def _check_replaceable(flag: str, path: str | Path, why_foreign: Callable[[Path], str | None]) -> None:
    """Refuse to replace an existing file that predict did not write there."""
    p = Path(path)
    if not p.is_file():
        return
    why = "it is a DICOM file" if _is_dicom(p) else why_foreign(p)
    if why:
        raise OutputClashError(
            f"{flag} {path} exists and is not a spine-kp prediction output ({why}); it would be overwritten: "
            "choose another path, or delete it first"
        )


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return head[128:132] == b"DICM"


def _foreign_json(path: Path) -> str | None:
    """Why ``path`` is not an earlier predictions JSON, or None when it is one (or empty)."""
    with open(path, "rb") as fh:
        start = fh.read(4096).lstrip()
    if not start:
        return None
    if not start.startswith(b"["):
        return "not a JSON list of study records"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "not valid JSON"
    unscored = _count_unscored(data)
    if unscored:
        return f"{unscored} point(s) without a score, like ground-truth annotations"
    return None


def _count_unscored(node: object) -> int:
    """Points (dicts with a ``coord``) that carry no ``score``: annotations, where predictions always have one."""
    count, stack = 0, [node]
    while stack:  # iterative: a deeply nested file must not overflow the recursion limit
        item = stack.pop()
        if isinstance(item, dict):
            if "coord" in item and "score" not in item:
                count += 1
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def _foreign_csv(path: Path) -> str | None:
    with open(path, "rb") as fh:
        first = fh.read(len(CSV_HEADER_START))
    if not first or first.decode("utf-8", "replace") == CSV_HEADER_START:
        return None
    return "its first line is not the predictions CSV header"


def reused_folder_warnings(
    run: PredictRun, overlays: str | Path | None = None, dicom_sr: str | Path | None = None
) -> list[str]:
    """``warning:`` lines for output folders that hold files this run will not overwrite.

    Args:
        run: the predictions about to be written.
        overlays, dicom_sr: the folders asked for (None: not asked for); they may be the same folder.
    """
    planned: list[tuple[str | Path, set[str]]] = []
    if overlays is not None:
        from spine_kp.predict.overlay import overlay_names

        planned.append((overlays, set(overlay_names(run.predictions).values())))
    if dicom_sr is not None:
        from spine_kp.predict.sr import sr_names

        names = set(sr_names(run).values())
        if planned and same_path(planned[0][0], dicom_sr):
            planned[0][1].update(names)
        else:
            planned.append((dicom_sr, names))
    lines = []
    for folder, names in planned:
        n = files_from_before(folder, names)
        if n:
            lines.append(f"warning: {os.fspath(folder)} holds {n} files from before (not written by this run)")
    return lines
