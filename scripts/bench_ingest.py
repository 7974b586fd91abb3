"""Benchmark study ingest: "scan headers + decode the middle slice" against decoding every slice.

The baselines are what a straightforward loader (e.g. the competition baseline) does before it can pick a slice:
    * pydicom: ``dcmread`` every file with its pixels, then group and sort;
    * SimpleITK: per folder, ``ImageSeriesReader`` on every series GDCM finds (each volume fully decoded).

Usage::

    python scripts/bench_ingest.py --studies 20 --seed 0            # synthesises the studies first
    python scripts/bench_ingest.py --data /path/to/root --workers 2  # an existing data root

Files are read once, and every method runs once untimed, before timing: all methods see a warm page cache and
already-imported libraries. The best of ``--repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np


def ours(root: Path, workers: int) -> int:
    """spine_kp ingest: header scan + one decoded slice per study. Returns the number of studies read."""
    from spine_kp.io.dicom import IngestError, load_middle_slice, scan

    result = scan(root, workers=workers)
    read = 0
    for study in result.studies.values():
        try:
            load_middle_slice(study)
            read += 1
        except IngestError:
            pass
    return read


def baseline_pydicom(root: Path) -> int:
    """Decode every file with pydicom, group by study/series, sort by position. Returns the number of studies."""
    import pydicom

    volumes: dict[tuple[str, str], list[tuple[float, np.ndarray]]] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                ds = pydicom.dcmread(os.path.join(folder, name))
                pixels = ds.pixel_array.astype(np.float32)
                o = np.asarray(ds.ImageOrientationPatient, float)
                pos = float(np.dot(np.asarray(ds.ImagePositionPatient, float), np.cross(o[:3], o[3:])))
            except Exception:  # noqa: BLE001 - junk files are skipped, as any loader must
                continue
            volumes.setdefault((ds.StudyInstanceUID, ds.SeriesInstanceUID), []).append((pos, pixels))
    for slices in volumes.values():
        slices.sort(key=lambda t: t[0])
    return len({study for study, _ in volumes})


def baseline_simpleitk(root: Path) -> int:
    """ImageSeriesReader on every series of every folder (GDCM sorts the files). Returns the number of studies."""
    import SimpleITK as sitk

    sitk.ProcessObject_SetGlobalWarningDisplay(False)  # "non uniform sampling" on multi-block axials, etc.
    studies: set[str] = set()
    for folder, _, files in os.walk(root):
        if not files:
            continue
        for series_id in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
            names = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, series_id)
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(names)
            reader.MetaDataDictionaryArrayUpdateOn()
            try:
                reader.Execute()
            except RuntimeError:
                continue
            studies.add(reader.GetMetaData(0, "0020|000d").strip())
    return len(studies)


def _timed(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """(best wall s, best CPU s of this process, result). CPU time is steadier on a shared machine."""
    fn()  # warm-up: imports, decoder plugin discovery
    wall = cpu = float("inf")
    value = 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        value = fn()
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return wall, cpu, value


def _warm(root: Path) -> tuple[int, int]:
    """Read every file once (page cache); returns (files, bytes)."""
    n = size = 0
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as fh:
                size += len(fh.read())
            n += 1
    return n, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=20, help="synthetic studies to generate (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="benchmark this data root instead of synthesising one")
    parser.add_argument("--out", type=Path, help="where to synthesise (default: a temporary folder)")
    parser.add_argument("--workers", type=int, default=1, help="header-scan processes for spine_kp (default 1)")
    parser.add_argument("--repeat", type=int, default=3, help="time each method this many times, keep the best")
    parser.add_argument("--skip-simpleitk", action="store_true", help="only the pydicom baseline")
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    with tempfile.TemporaryDirectory(prefix="bench_ingest_") as tmp:
        root = args.data
        if root is None:
            from spine_kp.synth import make_dataset

            root = args.out or Path(tmp) / "synth"
            t0 = time.perf_counter()
            make_dataset(root, args.studies, args.seed)
            print(f"synthesised {args.studies} studies in {time.perf_counter() - t0:.1f} s under {root}")
        files, size = _warm(root)
        print(f"data: {root}  {files} files, {size / 2**20:.1f} MiB")

        rows = [("spine_kp scan + middle slice", *_timed(lambda: ours(root, args.workers), args.repeat))]
        rows.append(("baseline: pydicom, every slice", *_timed(lambda: baseline_pydicom(root), args.repeat)))
        if not args.skip_simpleitk:
            rows.append(("baseline: SimpleITK series reader", *_timed(lambda: baseline_simpleitk(root), args.repeat)))

    _, wall0, cpu0, _ = rows[0]
    header = ("method", "wall s", "cpu s", "studies", "studies/s", "ratio wall", "ratio cpu")
    print("{:34s} {:>7s} {:>7s} {:>7s} {:>9s} {:>10s} {:>9s}".format(*header))
    for i, (name, wall, cpu, n) in enumerate(rows):
        ratios = f"{wall / wall0:9.1f}x {cpu / cpu0:8.1f}x" if i else ""
        print(f"{name:34s} {wall:7.3f} {cpu:7.3f} {n:7d} {n / wall:9.1f} {ratios}")
    note = " (cpu s counts this process only: compare wall)" if args.workers > 1 else ""
    print(f"workers={args.workers}{note}; ratio = baseline time / spine_kp time (goal >= 10x)")


if __name__ == "__main__":
    main()
