"""``spine-kp inspect``: show, per study, which series and slice the loader picks, and why.

stdout: one line per study that could be read; with ``--json`` one JSON object per study, read or failed (a
failed study is ``{"studyUid", "folder", "error"}``, told apart by its ``error`` key).
stderr: studies that failed with their reason, then a summary of skipped files (``--verbose`` lists each).
Exit codes: 0 when at least one study was read; 1 when none could be; 2 when DATA_ROOT is not a folder or holds no
DICOM study (one ``error:`` line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from spine_kp.types import Slice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", metavar="DATA_ROOT", help="folder of DICOM studies (any depth)")
    parser.add_argument(
        "--json",
        action="store_true",
        help='one JSON object per study on stdout; a study that failed is {"studyUid", "folder", "error"}',
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="processes reading headers (default 1)")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every skipped file with its reason")


def _record(sl: Slice, folder: str) -> dict[str, object]:
    """JSON-ready description of the loaded middle slice of a study."""
    return {
        "studyUid": sl.study_uid,
        "seriesUid": sl.series_uid,
        "instanceUid": sl.instance_uid,
        "zIndex": sl.z_index,
        "numSlices": sl.num_slices,
        "pixelSpacing": list(sl.spacing),
        "rows": sl.shape[0],
        "cols": sl.shape[1],
        "seriesDescription": sl.series_description,
        "reason": sl.reason,
        "folder": folder,
        "path": sl.path,
    }


def _failure(study_uid: str, folder: str, error: str) -> dict[str, object]:
    """JSON-ready description of a study whose slice could not be loaded (the reason without the study prefix)."""
    prefix = f"study {study_uid} ({folder}): "
    return {"studyUid": study_uid, "folder": folder, "error": error.removeprefix(prefix)}


def _line(r: dict[str, object]) -> str:
    row_mm, col_mm = r["pixelSpacing"]  # type: ignore[misc]
    return (
        f"{r['studyUid']}  series {r['seriesUid']} '{r['seriesDescription']}'  instance {r['instanceUid']}  "
        f"zIndex {r['zIndex']} of {r['numSlices']}  spacing {row_mm:g} x {col_mm:g} mm  "
        f"{r['rows']} x {r['cols']} px  [{r['folder']}]  -- {r['reason']}"
    )


def _counts(counts: Counter[str]) -> str:
    """``"2 not DICOM, 1 non-image object"``: most frequent first."""
    return ", ".join(f"{n} {category}" for category, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def run(args: argparse.Namespace) -> int:
    from spine_kp.errors import UserError
    from spine_kp.io.dicom import IngestError, load_middle_slice, scan

    result = scan(args.data_root, workers=max(1, args.workers))  # IngestError when DATA_ROOT is not a folder
    if not result.studies:
        from spine_kp.io.scan import no_study_message

        raise UserError(no_study_message(args.data_root, [s.reason for s in result.skipped]))
    read = 0
    for study in result.studies.values():
        try:
            record = _record(load_middle_slice(study), study.folder)
        except IngestError as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            if args.json:
                print(json.dumps(_failure(study.study_uid, study.folder, str(exc)), ensure_ascii=False), flush=True)
            continue
        read += 1
        print(json.dumps(record, ensure_ascii=False) if args.json else _line(record), flush=True)

    if args.verbose:
        for s in result.skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    counts = Counter(s.category for s in result.skipped)
    if counts:
        print(f"skipped {len(result.skipped)} file(s): {_counts(counts)}", file=sys.stderr)
    failed = len(result.studies) - read
    print(f"{len(result.studies)} studies: {read} read, {failed} failed", file=sys.stderr)
    return 0 if read else 1
