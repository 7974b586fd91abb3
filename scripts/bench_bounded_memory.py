"""Peak memory of ``spine-kp inspect`` (and ``predict``) on a normal data root vs the same root plus hostile files.

The hostile files, in a folder of their own beside the normal studies:
    * ``bomb.dcm``: a deflated-syntax slice whose pixel data inflates to ``--bomb-gb`` GB of zeros (~1 MB on disk
      per GB), for a header promising 64 x 64 x 16 bits;
    * ``j2k_huge.dcm``: a JPEG 2000 frame whose codestream claims 40000 x 40000 pixels, header 64 x 64;
    * ``rle_half_rows``: an RLE series whose headers say half the real Rows.

Each command runs in a child process whose own peak RSS is read with ``os.wait4`` (forked from a small launcher, so
the figure is the command's own). Usage::

    python scripts/bench_bounded_memory.py                          # inspect only, synthesised root
    python scripts/bench_bounded_memory.py --checkpoint best.ckpt   # predict too
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

MiB = 1 << 20


#: Runs ``argv[2:]`` and writes ``[exit status, ru_maxrss]`` of that child alone to ``argv[1]``. Linux keeps a
#: process's peak RSS across fork and exec, so a child forked straight from this script (numpy and pydicom imported)
#: would report at least this script's size; forked from this small launcher it starts from the launcher's ~10 MB.
LAUNCHER = """
import json, os, subprocess, sys
p = subprocess.Popen(sys.argv[2:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
with open(sys.argv[1], "w") as fh:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss], fh)
"""


def peak_rss(args: list[str]) -> tuple[float, int, str]:
    """(peak RSS in MiB, exit status, last stderr line) of one child process (through :data:`LAUNCHER`)."""
    import json

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "usage.json"
        done = subprocess.run([sys.executable, "-c", LAUNCHER, str(out), *args], stderr=subprocess.PIPE, text=True)
        code, maxrss = json.loads(out.read_text())
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    lines = done.stderr.strip().splitlines()
    return maxrss * scale / MiB, code, lines[-1] if lines else ""


def _series(folder: Path, syntax: str, n: int = 3) -> list[Path]:
    from spine_kp.synth.dicom_write import SeriesGeometry, SeriesMeta, write_series

    meta = SeriesMeta(generate_uid(), generate_uid(), 1, "T2_TSE_SAG", None, 100.0, 3000.0)
    positions = np.array([[-4.0 * i, 0.0, 0.0] for i in range(n)])
    geometry = SeriesGeometry((0.0, 1.0, 0.0, 0.0, 0.0, -1.0), positions, (0.5, 0.5), 4.0)
    pixels = np.random.default_rng(0).uniform(0, 1000, (n, 64, 64))
    return [p for p, _ in write_series(folder, pixels, geometry, meta, transfer_syntax=syntax)]


def write_bomb(source: Path, target: Path, gigabytes: float) -> None:
    """A deflated copy of ``source`` whose pixel data element holds ``gigabytes`` GB of zeros."""
    from spine_kp.io.inflate import body_start, inflate

    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(target, enforce_file_format=True)
    with open(target, "rb") as fh:
        _, start = body_start(fh)
        fh.seek(start)
        body, _ = inflate(fh, 1 << 30)
    meta = target.read_bytes()[:start]
    at = body.index(b"\xe0\x7f\x10\x00OW")
    blocks = max(2, int(gigabytes * 1024))
    header = body[:at] + b"\xe0\x7f\x10\x00OW\x00\x00" + (blocks * MiB - at - 12).to_bytes(4, "little")
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = c.compress(header + bytes(MiB - len(header))) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)  # history-free: the same bytes every MiB
    target.write_bytes(meta + first + block * (blocks - 1) + c.flush())


def write_hostile(folder: Path, gigabytes: float) -> None:
    """The hostile files of the module docstring, under ``folder``."""
    plain = _series(folder / "plain", "explicit", n=1)[0]
    write_bomb(plain, folder / "bomb.dcm", gigabytes)
    plain.unlink()
    (folder / "plain").rmdir()
    j2k = _series(folder / "j2k", "jpeg2000", n=1)[0]
    data = bytearray(j2k.read_bytes())
    at = data.index(b"\xff\x4f\xff\x51")
    data[at + 8 : at + 16] = (40000).to_bytes(4, "big") * 2  # Xsiz, Ysiz
    (folder / "j2k_huge.dcm").write_bytes(bytes(data))
    shutil.rmtree(folder / "j2k")
    for path in _series(folder / "rle_half_rows", "rle"):
        ds = pydicom.dcmread(path)
        ds.Rows = 32
        ds.save_as(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="a normal data root (default: synthesise --studies studies)")
    parser.add_argument("--studies", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="sagittal matrix of the synthesised studies")
    parser.add_argument("--bomb-gb", type=float, default=3.0, help="inflated size of the deflate bomb, GB")
    parser.add_argument("--checkpoint", help="also measure `predict --checkpoint CKPT`")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_bounded_") as tmp:
        tmp_path = Path(tmp)
        normal = args.data
        if normal is None:
            from spine_kp.synth import make_dataset

            make_dataset(tmp_path / "synth", args.studies, seed=0, size=args.size, axial=False)
            normal = tmp_path / "synth" / "studies"
        hostile = tmp_path / "hostile_root"
        shutil.copytree(normal, hostile / "normal")
        write_hostile(hostile / "hostile", args.bomb_gb)
        on_disk = sum(f.stat().st_size for f in (hostile / "hostile").rglob("*") if f.is_file())
        print(f"hostile files: {on_disk / MiB:.1f} MiB on disk, the bomb inflating to {args.bomb_gb:g} GB")

        commands = {"inspect": lambda root: [sys.executable, "-m", "spine_kp", "inspect", str(root)]}
        if args.checkpoint:
            commands["predict"] = lambda root: [
                sys.executable, "-m", "spine_kp", "predict", str(root), "--checkpoint", args.checkpoint,
                "-o", str(tmp_path / f"pred_{root.name}.json"), "--quiet", "--device", "cpu",
            ]  # fmt: skip
        print(f"{'command':8s} {'normal MiB':>11s} {'hostile MiB':>12s} {'ratio':>6s}  last stderr line (hostile)")
        for name, command in commands.items():
            base, _, _ = peak_rss(command(normal))
            peak, status, last = peak_rss(command(hostile))
            print(f"{name:8s} {base:11.0f} {peak:12.0f} {peak / base:6.2f}  exit {status}: {last}")


if __name__ == "__main__":
    main()
