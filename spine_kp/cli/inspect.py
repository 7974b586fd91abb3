"""``spine-kp inspect``: show, per study, which series and slice the loader picks, and why.

stdout: one line (or, with ``--json``, one JSON object) per study that could be read.
stderr: studies that failed with their reason, then a summary of skipped files (``--verbose`` lists each).
Exit codes: 0 when at least one study was read; 1 when none could be; 2 when DATA_ROOT is not a folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from spine_kp.types import Slice


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_root", metavar="DATA_ROOT", help="folder of DICOM studies (any depth)")
    parser.add_argument("--json", action="store_true", help="one JSON object per study on stdout")
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


def _line(r: dict[str, object]) -> str:
    row_mm, col_mm = r["pixelSpacing"]  # type: ignore[misc]
    return (
        f"{r['studyUid']}  series {r['seriesUid']} '{r['seriesDescription']}'  instance {r['instanceUid']}  "
        f"zIndex {r['zIndex']} of {r['numSlices']}  spacing {row_mm:g} x {col_mm:g} mm  "
        f"{r['rows']} x {r['cols']} px  [{r['folder']}]  -- {r['reason']}"
    )


def run(args: argparse.Namespace) -> int:
    from spine_kp.io.dicom import IngestError, load_middle_slice, scan

    try:
        result = scan(args.data_root, workers=max(1, args.workers))
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    read = 0
    for study in result.studies.values():
        try:
            record = _record(load_middle_slice(study), study.folder)
        except IngestError as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            continue
        read += 1
        print(json.dumps(record, ensure_ascii=False) if args.json else _line(record), flush=True)

    if args.verbose:
        for s in result.skipped:
            print(f"skipped {s.path}: {s.reason}", file=sys.stderr)
    counts = Counter(s.category for s in result.skipped)
    if counts:
        detail = ", ".join(f"{n} {category}" for category, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        print(f"skipped {len(result.skipped)} file(s): {detail}", file=sys.stderr)
    failed = len(result.studies) - read
    print(f"{len(result.studies)} studies: {read} read, {failed} failed", file=sys.stderr)
    return 0 if read else 1
