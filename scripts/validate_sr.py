"""Validate the DICOM SR writer with dciodvfy (Debian's dicom3tools) on phantom studies.

Usage:
    python scripts/validate_sr.py [--studies 3] [--out DIR]

Writes phantom studies, builds one SR per study from its annotations (each point scored), writes it with the same
code as ``spine-kp predict --dicom-sr``, and runs ``dciodvfy`` on every file. Prints one line per file with the
number of errors and warnings, then the distinct messages; exits 1 when any file has an error. dciodvfy is not a
Python package (``apt-get install dicom3tools``), so this check lives here and not in the test suite, which reads
the SR files back with pydicom and highdicom instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from spine_kp.io.annotations import read_annotations
from spine_kp.io.dicom import load_instance, scan
from spine_kp.io.dicom_sr import AlgorithmInfo, build_sr, read_source_header, sr_file_name, write_sr
from spine_kp.schema import load_schema
from spine_kp.synth.write import make_dataset


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=3)
    ap.add_argument("--out", default=None, help="folder for phantoms and SR files (default: a temporary folder)")
    args = ap.parse_args(argv)
    if shutil.which("dciodvfy") is None:
        print("error: dciodvfy not found (apt-get install dicom3tools)", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="validate_sr_"))
    schema = load_schema()
    make_dataset(out / "phantoms", args.studies, seed=0, schema=schema, overwrite=True)
    index = scan(out / "phantoms" / "studies").studies
    algorithm = AlgorithmInfo("spine_kp validate_sr", "0", ("phantom annotations",), "1.2.826.0.1.3680043.8.498.1")
    errors = 0
    messages: dict[str, int] = {}
    for record in read_annotations(out / "phantoms" / "annotations.json", schema):
        image = record.images[0]
        points = tuple(dataclasses.replace(p, score=0.5) for p in image.points)
        record = dataclasses.replace(record, images=(dataclasses.replace(image, points=points),))
        source = load_instance(index[record.study_uid], image.instance_uid).path
        path = write_sr(
            build_sr(record, read_source_header(source), schema, algorithm), out / "sr" / sr_file_name(record.study_uid)
        )
        result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
        lines = [ln.strip() for ln in (result.stdout + result.stderr).splitlines() if ln.strip()]
        n_err = sum(ln.startswith("Error") for ln in lines)
        n_warn = sum(ln.startswith("Warning") for ln in lines)
        errors += n_err
        print(f"{path.name}: {n_err} error(s), {n_warn} warning(s)")
        for ln in lines:
            if ln.startswith(("Error", "Warning")):
                messages[ln] = messages.get(ln, 0) + 1
    for msg, n in sorted(messages.items()):
        print(f"  {n} x {msg}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
