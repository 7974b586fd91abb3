"""Probe ``spine-kp`` with hostile and careless inputs, each a real subprocess, and count what goes wrong.

Every case is built from files of this script's own, in one temporary folder: three 128-pixel phantom studies
(``spine_kp.synth.make_dataset``), a tiny untrained checkpoint made in code, and one ONNX export of it (``spine-kp
export``, when onnx and onnxruntime are installed). Each case runs ``python -m spine_kp ...`` in a child process with a
wall-clock timeout; the child's own peak RSS comes from ``os.wait4``. The outcome is classified against what the
case expects (an exit status, the text of the error or warning, a check of the files written) into these failure
kinds, all of which must be 0:

* ``payload ran``: the marker file that a crafted pickle writes when it is unpickled exists;
* ``traceback``: "Traceback" on stdout or stderr;
* ``silent overwrite``: a file that must not change (an input, a sibling output, the shared phantoms and checkpoint)
  changed (sha256 before and after);
* ``silently wrong``: exit 0 where a refusal was expected, the expected error or warning text missing, a refusal
  with no or several ``error:`` lines, or outputs that are wrong (e.g. two studies in one overlay file);
* ``memory``: the child's peak RSS above ``--rss-bound-mib`` (default 2048);
* ``other``: any other exit status (a crash, a timeout).

Cases run ``--jobs`` at a time; the shared inputs are hashed after every case, so with more than one job a change to
them is charged to the case that noticed it (rerun with ``--jobs 1`` to pin it down). A refusal's stderr lines that
are neither ``error:`` nor ``warning:`` are listed as a note (the contract wants exactly one ``error:`` line), not
counted as a failure kind. Cases that need what this machine lacks (onnxruntime, a tmpfs mount for a full disk)
are reported as ``not run``, never faked. Usage::

    nice -n 19 python scripts/probe_hostile.py                       # every case, 2 at a time
    python scripts/probe_hostile.py --only pickle,onnx --out probe.json
    python scripts/probe_hostile.py --list                           # the cases, without running them

Exit status 1 when any failure kind is non-zero. Not imported by spine_kp.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1 << 20
KINDS = ("payload ran", "traceback", "silent overwrite", "silently wrong", "memory", "other")
#: hard cap on a child's address space, only so that a defence that fails cannot take the machine down with it (a
#: memory failure still shows: the peak RSS is measured far below this)
ADDRESS_SPACE_CAP = 12 << 30
#: a tiny hourglass on 64 x 64 inputs (as tests/cli/test_user_errors.py): a training case that got past its check
#: would still end in seconds
TINY = [
    "--model.backbone", "none", "--model.decoder", "hourglass", "--model.output_stride", "4",
    "--model.decoder_channels", "8", "--model.decoder_kwargs", "{num_stacks: 2, depth: 2}",
    "--model.head_kwargs", "{hidden: 16, embed_dim: 4}", "--data.input_size", "[64, 64]", "--data.batch_size", "2",
    "--data.val_fraction", "0.4", "--data.augment.enabled", "false", "--trainer.progress_bar", "false",
    "--trainer.max_epochs", "1",
]  # fmt: skip
COLLIDING_UIDS = ("1.2.3/4", "1.2.3_4", "1.2.3 4")
TRAVERSAL_UIDS = ("../../escaped", "..", "1." * 150 + "9")
FORMULA_UIDS = ('=HYPERLINK("http://example.invalid","x")', "+1+1", "@SUM(1,2)")
FORMULA_SERIES = ("-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1")
REFUSED = "refused: it needs code to load"


# ----------------------------------------------------------------------------------------------------- the fixtures
@dataclass
class Env:
    """The shared inputs every case reads (never writes): phantoms, GT, checkpoint, run folder, export."""

    root: Path
    synth: Path
    ckpt: Path
    run_dir: Path
    preds: Path
    tianchi_ann: Path
    tianchi_preds: Path
    axial: Path
    onnx: Path | None = None
    why_no_onnx: str = ""
    can_mount: bool = False
    why_no_mount: str = ""

    @property
    def data(self) -> Path:
        return self.synth / "studies"

    @property
    def ann(self) -> Path:
        return self.synth / "annotations.json"

    def shared(self) -> list[Path]:
        """What no case may change."""
        paths = [self.synth, self.ckpt, self.run_dir, self.preds, self.tianchi_ann, self.tianchi_preds, self.axial]
        return paths + ([self.onnx] if self.onnx else [])

    def study(self, i: int) -> Path:
        return self.data / f"study{i:04d}"

    def uid(self, i: int) -> str:
        return json.loads(self.ann.read_text())[i]["studyUid"]


class Payload:
    """Unpickling this writes ``marker``: what a hostile checkpoint does instead of (or besides) holding weights."""

    def __init__(self, marker: Path, via: str = "exec") -> None:
        self.marker, self.via = marker, via

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if self.via == "system":
            return (os.system, (f"echo payload > {self.marker}",))
        return (exec, (f"open({str(self.marker)!r}, 'w').write('payload ran')",))


def tiny_checkpoint(path: Path) -> Path:
    """A valid predict checkpoint made without training (untrained tiny weights)."""
    import torch

    from spine_kp.config import from_dict, parse_override_args
    from spine_kp.engine.config import experiment_to_dict, load_experiment
    from spine_kp.models.net import ModelConfig, create_model
    from spine_kp.schema import load_schema

    config = experiment_to_dict(load_experiment("demo_cpu", parse_override_args(TINY)))
    schema = load_schema(None)
    torch.manual_seed(0)
    model = create_model(from_dict(ModelConfig, config["model"]), schema)
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"config": config, "schema": schema.to_dict()}, "state_dict": state}, path)
    return path


def poison(src: Path, dst: Path, marker: Path, via: str = "exec", legacy: bool = False) -> Path:
    """``src`` (a real checkpoint) plus an entry that runs a payload when unpickled; it would still predict."""
    import torch

    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["extra"] = Payload(marker, via)
    dst.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dst, _use_new_zipfile_serialization=not legacy)
    return dst


def scored(gt: Path, dst: Path, schema: str | None = None, score: bool = True) -> Path:
    """Perfect predictions: the ground truth with a score on every point (and the schema field predict writes);
    without ``score``, the ground truth naming ``schema``."""
    records = json.loads(gt.read_text())
    for rec in records:
        if schema:
            rec["schema"] = schema
        for entry in rec["data"]:
            for block in entry["annotation"]:
                for point in block["data"]["point"] if score else ():
                    point["score"] = 1.0
    dst.write_text(json.dumps(records))
    return dst


def run_cli(argv: Sequence[str], cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``spine-kp ARGV`` in a child process (for building fixtures)."""
    cmd = [sys.executable, "-m", "spine_kp", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=child_env())


def child_env() -> dict[str, str]:
    # one BLAS/OpenMP thread: tiny convolutions only thrash with more on a shared machine
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def make_env(root: Path, with_onnx: bool = True) -> Env:
    """Build the shared fixtures (about 10-30 s: the export runs the CLI)."""
    from spine_kp.schema import load_schema
    from spine_kp.synth import make_dataset

    make_dataset(root / "synth", n_studies=3, seed=7, size=128, axial=False)
    make_dataset(root / "tianchi", n_studies=2, seed=8, size=128, axial=False, schema=load_schema("tianchi"))
    make_dataset(root / "axial", n_studies=2, seed=3, size=64, axial=True)
    ckpt = tiny_checkpoint(root / "model" / "tiny.ckpt")
    run_dir = root / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run_dir / "checkpoints" / "best.ckpt")
    env = Env(
        root=root,
        synth=root / "synth",
        ckpt=ckpt,
        run_dir=run_dir,
        preds=scored(root / "synth" / "annotations.json", root / "preds.json"),
        tianchi_ann=root / "tianchi" / "annotations.json",
        tianchi_preds=scored(root / "tianchi" / "annotations.json", root / "tianchi_preds.json"),
        axial=root / "axial",
    )
    env.can_mount, env.why_no_mount = _try_mount(root / "mount_test")
    if not with_onnx:
        env.why_no_onnx = "not asked for (--only without onnx)"
        return env
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        env.why_no_onnx = f"onnx/onnxruntime not installed ({exc.name})"
        return env
    proc = run_cli(["export", str(ckpt), "--onnx", str(root / "model" / "tiny.onnx")])
    if proc.returncode == 0:
        env.onnx = root / "model" / "tiny.onnx"
    else:
        env.why_no_onnx = f"spine-kp export failed ({proc.returncode}): {proc.stderr.strip()[-300:]}"
    return env


def _try_mount(folder: Path) -> tuple[bool, str]:
    """Whether a tiny tmpfs can be mounted here (root in a sandbox that allows it)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                              text=True)  # fmt: skip
    except OSError as exc:  # no mount binary
        return False, f"mount: {exc}"
    if proc.returncode != 0:
        return False, f"mount -t tmpfs failed: {proc.stderr.strip() or proc.returncode}"
    subprocess.run(["umount", str(folder)], check=True)
    folder.rmdir()
    return True, ""


# ------------------------------------------------------------------------------------------------- building blocks
def rewrite_dicoms(folder: Path, change: Callable[[Any], None], images_only: bool = True) -> int:
    """Apply ``change(dataset)`` to every DICOM file under ``folder`` (with pixel data, unless ``images_only``)."""
    import pydicom

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    n = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # the phantoms' deliberate non-DICOM file
            continue
        if images_only and "PixelData" not in ds:
            continue
        change(ds)
        ds.save_as(path)
        n += 1
    return n


def copy_studies(env: Env, dst: Path, *indices: int) -> Path:
    for i in indices:
        shutil.copytree(env.study(i), dst / f"study{i:04d}")
    return dst


def relabel(root: Path, uids: Sequence[str], series: dict[str, str] | None = None) -> None:
    """Give study folder i of ``root`` the StudyInstanceUID ``uids[i]`` (and series old UID -> ``series[old]``)."""
    for i, folder in enumerate(sorted(p for p in root.iterdir() if p.is_dir())):

        def change(ds: Any, i: int = i) -> None:
            ds.StudyInstanceUID = uids[i]
            if series and ds.get("SeriesInstanceUID") in series:
                ds.SeriesInstanceUID = series[ds.SeriesInstanceUID]

        rewrite_dicoms(folder, change, images_only=False)


def write_bomb(source: Path, target: Path, gigabytes: float) -> None:
    """A deflated-syntax copy of ``source`` whose pixel data element inflates to ``gigabytes`` GB of zeros."""
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    pixels = ds.PixelData
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)  # deflated: the meta group, then the body deflated
    raw = buf.getvalue()
    meta_end = 132 + 12 + int.from_bytes(raw[140:144], "little")  # preamble, DICM, (0002,0000) UL group length
    body = zlib.decompress(raw[meta_end:], -zlib.MAX_WBITS)
    blocks = max(2, int(gigabytes * 1024))
    header = body + b"\xe0\x7f\x10\x00OW\x00\x00" + (blocks * MiB - len(body) - 12).to_bytes(4, "little")
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = c.compress(header + bytes(MiB - len(header))) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(MiB)) + c.flush(zlib.Z_FULL_FLUSH)  # history-free: the same bytes every MiB
    target.write_bytes(raw[:meta_end] + first + block * (blocks - 1) + c.flush())
    del pixels


def annotated_file(env: Env, i: int, root: Path) -> Path:
    """The file under ``root/studyNNNN`` that holds study i's annotated instance."""
    import pydicom

    uid = json.loads(env.ann.read_text())[i]["data"][0]["instanceUid"]
    for path in sorted((root / f"study{i:04d}").rglob("*")):
        try:
            if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID == uid:
                return path
        except Exception:
            continue
    raise FileNotFoundError(uid)


def edit_records(src: Path, dst: Path, change: Callable[[list[dict[str, Any]]], Any]) -> Path:
    records = json.loads(src.read_text())
    out = change(records)
    dst.write_text(json.dumps(records if out is None else out))
    return dst


def first_point(records: list[dict[str, Any]]) -> dict[str, Any]:
    return records[0]["data"][0]["annotation"][0]["data"]["point"][0]


# ------------------------------------------------------------------------------------------------------ the cases
@dataclass
class Plan:
    """One built case: the command line and what must hold after it ran.

    Attributes:
        argv: arguments after ``spine-kp``.
        codes: accepted exit statuses (a refusal is 2).
        text: substrings that must all appear in stdout, stderr or one of ``read``.
        protect: files or folders that must not change.
        check: extra check of the outputs; returns why they are wrong, or None.
        cwd: working folder of the child.
        read: files whose text joins the haystack of ``text`` (e.g. ``pred.errors.json``).
        unmount: tmpfs mounts to remove after the case.
    """

    argv: list[str]
    codes: tuple[int, ...] = (2,)
    text: tuple[str, ...] = ()
    protect: tuple[Path, ...] = ()
    check: Callable[[Result], str | None] | None = None
    cwd: Path | None = None
    read: tuple[Path, ...] = ()
    unmount: list[Path] = field(default_factory=list)


@dataclass
class Result:
    code: int
    out: str
    err: str
    rss_mib: float
    wall_s: float
    timed_out: bool


@dataclass
class Case:
    cls: str
    name: str
    build: Callable[[Env, Path], Plan]
    needs: str = ""  # "onnx" or "mount"


CASES: list[Case] = []


def case(cls: str, name: str, needs: str = "") -> Callable[[Callable[[Env, Path], Plan]], Callable[[Env, Path], Plan]]:
    def register(build: Callable[[Env, Path], Plan]) -> Callable[[Env, Path], Plan]:
        CASES.append(Case(cls, name, build, needs))
        return build

    return register


def predict(env: Env, d: Path, *extra: str, root: Path | None = None, ckpt: Path | None = None,
            out: Path | None = None) -> list[str]:  # fmt: skip
    model = (
        ["--onnx", str(ckpt)]
        if ckpt is not None and ckpt.suffix == ".onnx"
        else ["--checkpoint", str(ckpt or env.ckpt)]
    )
    return ["predict", str(root or env.data), *model, "-o", str(out or d / "pred.json"), "--quiet", "--device", "cpu",
            *extra]  # fmt: skip


def train(env: Env, d: Path, *extra: str, data: Path | None = None, ann: Path | None = None,
          out: Path | None = None) -> list[str]:  # fmt: skip
    return ["train", "--config", "demo_cpu", "--data", str(data or env.data), "--annotations", str(ann or env.ann),
            "--out", str(out or d / "run"), *TINY, *extra]  # fmt: skip


def evaluate(gt: Path, pred: Path, *extra: str) -> list[str]:
    return ["evaluate", "--annotations", str(gt), "--predictions", str(pred), *extra]


def records_in(path: Path) -> list[str]:
    try:
        return [r["studyUid"] for r in json.loads(path.read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        return []


# --- crafted pickles: every command that loads a torch file refuses it, and the payload never runs
def _pickle_case(name: str, make: Callable[[Env, Path], list[str]]) -> None:
    case("pickle", name)(lambda env, d: Plan(make(env, d), text=(REFUSED, "nothing in it was run")))


_pickle_case(
    "predict --checkpoint (exec payload in a real checkpoint)",
    lambda e, d: predict(e, d, ckpt=poison(e.ckpt, d / "evil.ckpt", d / "MARKER")),
)
_pickle_case(
    "predict --checkpoint (os.system payload)",
    lambda e, d: predict(e, d, ckpt=poison(e.ckpt, d / "evil.ckpt", d / "MARKER", via="system")),
)
_pickle_case(
    "predict --checkpoint (legacy non-zip format)",
    lambda e, d: predict(e, d, ckpt=poison(e.ckpt, d / "evil.pt", d / "MARKER", legacy=True)),
)
_pickle_case(
    "predict --checkpoint RUN_DIR (poisoned best.ckpt)",
    lambda e, d: predict(e, d, ckpt=poison(e.ckpt, d / "run/checkpoints/best.ckpt", d / "MARKER").parents[1]),
)
_pickle_case(
    "export", lambda e, d: ["export", str(poison(e.ckpt, d / "evil.ckpt", d / "MARKER")), "--onnx", str(d / "m.onnx")]
)
_pickle_case("train --init", lambda e, d: train(e, d, "--init", str(poison(e.ckpt, d / "evil.ckpt", d / "MARKER"))))
_pickle_case(
    "train --resume (poisoned last.ckpt)",
    lambda e, d: (poison(e.ckpt, d / "run/checkpoints/last.ckpt", d / "MARKER"), train(e, d, "--resume"))[1],
)
_pickle_case(
    "train --model.pretrained (poisoned backbone weights)",
    lambda e, d: _untiny(train(e, d, "--model.pretrained", str(_evil_weights(d)))),
)
_pickle_case(
    "ensemble member",
    lambda e, d: [
        "ensemble",
        "-o",
        str(d / "ens.ckpt"),
        str(e.ckpt),
        str(poison(e.ckpt, d / "evil.ckpt", d / "MARKER")),
    ],
)
_pickle_case("predict --checkpoint ensemble file (poisoned member)",
             lambda e, d: predict(e, d, ckpt=_evil_ensemble(e, d)))  # fmt: skip


def _untiny(argv: list[str]) -> list[str]:
    """``argv`` with demo_cpu's own model (a timm backbone to load ``model.pretrained`` into) instead of TINY's."""
    i = argv.index(TINY[0])
    return argv[:i] + argv[i + len(TINY) :]


def _evil_weights(d: Path) -> Path:
    import torch

    path = d / "backbone.pth"
    torch.save({"conv1.weight": torch.zeros(8, 1, 3, 3), "extra": Payload(d / "MARKER")}, path)
    return path


def _evil_ensemble(env: Env, d: Path) -> Path:
    """An ensemble file in the documented layout whose second member carries the payload."""
    import torch

    ckpt = torch.load(env.ckpt, map_location="cpu", weights_only=True)
    member = {"state_dict": ckpt["state_dict"], "hyper_parameters": ckpt["hyper_parameters"]}
    evil = {**member, "extra": Payload(d / "MARKER")}
    doc = {"spine_kp_ensemble": {"version": 1, "sources": ["a.ckpt", "b.ckpt"], "members": [member, evil]}}
    torch.save(doc, d / "ens.ckpt")
    return d / "ens.ckpt"


# --- decompression bombs and lying headers: skipped or failed with their reason, memory bounded
LIES: dict[str, tuple[Callable[[Any], None], str]] = {
    "Rows 0": (lambda ds: setattr(ds, "Rows", 0), "corrupt"),
    "Rows 1": (lambda ds: setattr(ds, "Rows", 1), "corrupt"),
    "Columns 0": (lambda ds: setattr(ds, "Columns", 0), "corrupt"),
    "half Rows": (lambda ds: setattr(ds, "Rows", ds.Rows // 2), "corrupt"),
    "BitsAllocated 12": (lambda ds: setattr(ds, "BitsAllocated", 12), "corrupt"),
    "PixelSpacing 1e-9": (lambda ds: setattr(ds, "PixelSpacing", [1e-9, 1e-9]), "outside the physical range"),
    "PixelSpacing 1e9": (lambda ds: setattr(ds, "PixelSpacing", [1e9, 1e9]), "outside the physical range"),
}


def lying_root(env: Env, d: Path, lie: str) -> Path:
    """study 0 with every image header telling ``lie``, beside an untouched study 1."""
    root = copy_studies(env, d / "data", 0, 1)
    rewrite_dicoms(root / "study0000", LIES[lie][0])
    return root


def bomb_root(env: Env, d: Path, gigabytes: float = 4.0) -> Path:
    """study 0 whose annotated slice is a deflate bomb (same UIDs), beside an untouched study 1."""
    root = copy_studies(env, d / "data", 0, 1)
    target = annotated_file(env, 0, root)
    write_bomb(target, target, gigabytes)
    return root


def not_listed_as_read(uid: str) -> Callable[[Result], str | None]:
    """inspect: the lying study is not shown as read (a read study's line starts with its UID)."""
    return lambda r: f"{uid} listed as read" if any(ln.startswith(uid) for ln in r.out.splitlines()) else None


def not_predicted(uid: str, path: Path, others: int = 1) -> Callable[[Result], str | None]:
    def check(r: Result) -> str | None:
        uids = records_in(path)
        if uid in uids:
            return f"{uid} was predicted from lying headers"
        return None if len(uids) == others else f"{len(uids)} records, {others} expected"

    return check


for _lie, (_, _reason) in LIES.items():
    case("dicom", f"inspect: {_lie} on every image")(
        lambda e, d, lie=_lie, reason=_reason: Plan(
            ["inspect", str(lying_root(e, d, lie))], codes=(0, 1), text=(reason,), check=not_listed_as_read(e.uid(0))
        )
    )
for _lie in ("Rows 0", "half Rows", "BitsAllocated 12", "PixelSpacing 1e9"):
    case("dicom", f"predict: {_lie} on every image")(
        lambda e, d, lie=_lie: Plan(
            predict(e, d, root=lying_root(e, d, lie)),
            codes=(0,),
            text=(LIES[lie][1],),
            read=(d / "pred.errors.json",),
            check=not_predicted(e.uid(0), d / "pred.json"),
        )
    )


@case("dicom", "inspect: deflate bomb (4 GB of zeros in 4 MB) as the annotated slice")
def _(env: Env, d: Path) -> Plan:
    return Plan(["inspect", "-v", str(bomb_root(env, d))], codes=(0,), text=("oversized",))


@case("dicom", "predict: deflate bomb as the annotated slice")
def _(env: Env, d: Path) -> Plan:
    return Plan(predict(env, d, root=bomb_root(env, d)), codes=(0,), text=("oversized",),
                read=(d / "pred.errors.json",))  # fmt: skip


@case("dicom", "evaluate --data: deflate bomb as the annotated slice")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: r[:2])
    pred = edit_records(env.preds, d / "pred.json", lambda r: r[:2])
    text = ("warning:", f"study {env.uid(0)}", "not checked")  # the bomb is no image: its points are counted
    return Plan(evaluate(gt, pred, "--data", str(bomb_root(env, d))), codes=(0,), text=text)


@case("dicom", "train: deflate bomb as the annotated slice")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: r[:2])
    return Plan(train(env, d, data=bomb_root(env, d), ann=gt), text=("cannot be loaded", env.uid(0)))


def intruder_root(env: Env, d: Path, beside: bool) -> Path:
    """Studies 0-2, plus a series of study 2 (own series and instance UIDs, study 2's StudyInstanceUID) copied into
    study 0: into the folder that holds all of study 0's images, or (``beside``) into a new folder next to it."""
    import pydicom
    from pydicom.uid import generate_uid

    root = copy_studies(env, d / "data", 0, 1, 2)
    images = [p.parent for p in (root / "study0000").rglob("*") if p.is_file() and p.suffix == ".dcm"]
    home = Path(os.path.commonpath(images)) if images else root / "study0000"
    target = (root / "study0000" if beside else home) / "intruder"
    target.mkdir()
    series = json.loads(env.ann.read_text())[2]["data"][0]["seriesUid"]
    for path in sorted((root / "study0002").rglob("*")):
        try:
            if path.is_file() and pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID == series:
                shutil.copy(path, target / path.name)
        except Exception:
            continue
    new_series = generate_uid()

    def another_series(ds: Any) -> None:
        ds.SeriesInstanceUID, ds.SOPInstanceUID = new_series, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    rewrite_dicoms(target, another_series)
    return root


@case("dicom", "inspect: another study's series inside a study's image folder")
def _(env: Env, d: Path) -> Plan:
    root = intruder_root(env, d, beside=False)
    return Plan(["inspect", str(root)], codes=(0,), text=("warning:", "foreign study", env.uid(2)))


@case("dicom", "inspect: another study's series in a new folder of a study (STUDY/intruder)")
def _(env: Env, d: Path) -> Plan:
    root = intruder_root(env, d, beside=True)
    return Plan(["inspect", str(root)], codes=(0,), text=("warning:", "foreign study", env.uid(2)))


# --- crafted ONNX metadata: one error line naming the field
def onnx_variant(env: Env, d: Path, change: Callable[[dict[str, Any]], Any], raw: str | None = None) -> Path:
    import onnx

    from spine_kp.inference.onnx_predictor import METADATA_KEY

    assert env.onnx is not None
    model = onnx.load(str(env.onnx))
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    if raw is not None:
        entry.value = raw
    else:
        meta = json.loads(entry.value)
        change(meta)
        entry.value = json.dumps(meta)
    path = d / "variant.onnx"
    onnx.save(model, str(path))
    return path


ONNX_VARIANTS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("neighbours 1e9", lambda m: m.update(neighbours=1e9), "metadata neighbours"),
    ("neighbours '1' (a string)", lambda m: m.update(neighbours="1"), "metadata neighbours"),
    ("temperature NaN", lambda m: m.update(temperatures={"disc": float("nan")}), "metadata temperatures.disc"),
    ("temperature 0", lambda m: m.update(temperatures={"vertebra": 0}), "metadata temperatures.vertebra"),
    ("target_spacing -1.6", lambda m: m.update(target_spacing=-1.6), "metadata target_spacing"),
    ("input_size ['64', 64]", lambda m: m.update(input_size=["64", 64]), "metadata input_size"),
    ("input_size [1e6, 1e6]", lambda m: m.update(input_size=[10**6, 10**6]), "metadata input_size"),
    ("schema a list", lambda m: m.update(schema=[1, 2]), "metadata schema"),
    ("codec.stride 0", lambda m: m["codec"].update(stride=0), "metadata codec"),
    ("percentiles [99, 1]", lambda m: m.update(percentiles=[99, 1]), "metadata percentiles"),
    ("format missing", lambda m: m.pop("format"), "ONNX format None"),
]
for _name, _change, _field in ONNX_VARIANTS:
    case("onnx", f"predict --onnx: {_name}", needs="onnx")(
        lambda e, d, change=_change, fld=_field: Plan(predict(e, d, ckpt=onnx_variant(e, d, change)), text=(fld,))
    )
for _name, _raw in (("not JSON", "{neighbours: 1"), ("a JSON list", "[1, 2]"), ("nested 10^5 deep", "[" * 100000)):
    case("onnx", f"predict --onnx: metadata {_name}", needs="onnx")(
        lambda e, d, raw=_raw: Plan(
            predict(e, d, ckpt=onnx_variant(e, d, lambda m: None, raw=raw)), text=("damaged spine_kp metadata",)
        )
    )


# --- colliding and path-like UIDs: one file per study, all inside the folder asked for
def distinct_outputs(
    folder: Path, suffix: str, n: int, json_path: Path, uids: Sequence[str]
) -> Callable[[Result], str | None]:
    """``n`` files ending in ``suffix`` in ``folder`` (one per study), and the predictions hold exactly ``uids``."""

    def check(r: Result) -> str | None:
        files = sorted(p.name for p in folder.glob(f"*{suffix}")) if folder.is_dir() else []
        if len(files) != n:
            return f"{len(files)} {suffix} file(s) for {n} studies: {files}"
        if sorted(records_in(json_path)) != sorted(uids):
            return f"predictions hold {records_in(json_path)}"
        return None

    return check


def uid_root(env: Env, d: Path, uids: Sequence[str]) -> Path:
    root = copy_studies(env, d / "data", 0, 1, 2)
    relabel(root, uids)
    return root


@case("uids", "predict --overlays: 1.2.3/4, 1.2.3_4, 1.2.3 4")
def _(env: Env, d: Path) -> Plan:
    argv = predict(env, d, "--overlays", str(d / "ov"), root=uid_root(env, d, COLLIDING_UIDS))
    return Plan(argv, codes=(0,), text=("(3 images)",),
                check=distinct_outputs(d / "ov", ".png", 3, d / "pred.json", COLLIDING_UIDS))  # fmt: skip


@case("uids", "predict --dicom-sr: 1.2.3/4, 1.2.3_4, 1.2.3 4")
def _(env: Env, d: Path) -> Plan:
    argv = predict(env, d, "--dicom-sr", str(d / "sr"), root=uid_root(env, d, COLLIDING_UIDS))
    return Plan(argv, codes=(0,), text=("(3 reports)",),
                check=distinct_outputs(d / "sr", ".dcm", 3, d / "pred.json", COLLIDING_UIDS))  # fmt: skip


@case("uids", "predict --overlays/--dicom-sr: ../../escaped, .., a 300-character UID")
def _(env: Env, d: Path) -> Plan:
    out = d / "deep" / "out"
    argv = predict(env, d, "--overlays", str(out), "--dicom-sr", str(out), root=uid_root(env, d, TRAVERSAL_UIDS))
    both = distinct_outputs(out, "", 6, d / "pred.json", TRAVERSAL_UIDS)

    def check(r: Result) -> str | None:
        strays = [p for p in d.rglob("*") if p.is_file() and p.suffix in (".png", ".dcm") and p.parent != out]
        strays = [p for p in strays if d / "data" not in p.parents]
        return f"written outside {out}: {strays}" if strays else both(r)

    return Plan(argv, codes=(0,), text=("(3 images)", "(3 reports)"), check=check)


# --- formula cells: neutralised in the CSV, kept as they are in the JSON
def neutral_csv(path: Path, expect: Sequence[str]) -> Callable[[Result], str | None]:
    def check(r: Result) -> str | None:
        try:
            rows = list(csv.reader(path.open(newline="")))
        except OSError as exc:
            return f"no CSV: {exc}"
        cells = [c for row in rows[1:] for c in row]
        live = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r") and not _is_number(c)]
        if live:
            return f"formula cell(s) left live: {live[:3]}"
        # a UID is read as DICOM stores it: pydicom strips the leading tab or CR, leaving "=1+1" to neutralise
        missing = [u for u in expect if "'" + u not in cells and "'" + u.strip() not in cells]
        return f"neutralised cell(s) missing: {missing}" if missing else None

    return check


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@case("formula", "predict --csv: StudyInstanceUIDs =HYPERLINK(...), +1+1, @SUM(1,2)")
def _(env: Env, d: Path) -> Plan:
    argv = predict(env, d, "--csv", str(d / "pred.csv"), root=uid_root(env, d, FORMULA_UIDS))
    cells = neutral_csv(d / "pred.csv", FORMULA_UIDS)

    def check(r: Result) -> str | None:  # the JSON keeps the UIDs as they are: it is data, not a spreadsheet
        kept = sorted(records_in(d / "pred.json")) == sorted(FORMULA_UIDS)
        return cells(r) or (None if kept else f"predictions hold {records_in(d / 'pred.json')}")

    return Plan(argv, codes=(0,), check=check)


@case("formula", "predict --csv: SeriesInstanceUIDs -2+3+cmd|..., tab=1+1, CR=1+1")
def _(env: Env, d: Path) -> Plan:
    root = copy_studies(env, d / "data", 0, 1, 2)
    annotated = [rec["data"][0]["seriesUid"] for rec in json.loads(env.ann.read_text())]
    relabel(root, [env.uid(i) for i in range(3)], series=dict(zip(annotated, FORMULA_SERIES)))
    argv = predict(env, d, "--csv", str(d / "pred.csv"), root=root)
    return Plan(argv, codes=(0,), check=neutral_csv(d / "pred.csv", FORMULA_SERIES))


# --- outputs aimed at inputs: refused before any work, the input unchanged
def gt_copy(env: Env, d: Path, name: str = "gt.json") -> Path:
    return Path(shutil.copy(env.ann, d / name))


@case("outputs", "predict -o = the ground-truth annotations")
def _(env: Env, d: Path) -> Plan:
    gt = gt_copy(env, d)
    return Plan(predict(env, d, out=gt), text=("without a score",), protect=(gt,))


@case("outputs", "predict -o = a symlink to the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = gt_copy(env, d)
    (d / "link.json").symlink_to(gt)
    return Plan(predict(env, d, out=d / "link.json"), text=("without a score",), protect=(gt,))


@case("outputs", "predict -o = a hard link to the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = gt_copy(env, d)
    os.link(gt, d / "hard.json")
    return Plan(predict(env, d, out=d / "hard.json"), text=("without a score",), protect=(gt,))


@case("outputs", "predict -o X --csv X")
def _(env: Env, d: Path) -> Plan:
    return Plan(predict(env, d, "--csv", str(d / "x.json"), out=d / "x.json"), text=("both name",))


@case("outputs", "predict -o ./x.json --csv x.json (relative, same file)")
def _(env: Env, d: Path) -> Plan:
    argv = predict(env, d, "--csv", "x.json")
    argv[argv.index("-o") + 1] = "./x.json"
    return Plan(argv, text=("both name",), cwd=d)


@case("outputs", "predict --csv = the errors file of -o")
def _(env: Env, d: Path) -> Plan:
    return Plan(predict(env, d, "--csv", str(d / "pred.errors.json")), text=("both name",))


@case("outputs", "predict --csv = the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = gt_copy(env, d)
    return Plan(predict(env, d, "--csv", str(gt)), text=("not a spine-kp prediction output",), protect=(gt,))


@case("outputs", "predict -o = the checkpoint")
def _(env: Env, d: Path) -> Plan:
    ckpt = Path(shutil.copy(env.ckpt, d / "model.ckpt"))
    return Plan(predict(env, d, ckpt=ckpt, out=ckpt), text=("--checkpoint input",), protect=(ckpt,))


@case("outputs", "predict -o = a DICOM slice of the data root")
def _(env: Env, d: Path) -> Plan:
    root = copy_studies(env, d / "data", 0)
    dcm = annotated_file(env, 0, root)
    return Plan(predict(env, d, root=root, out=dcm), text=("it is a DICOM file",), protect=(root,))


@case("outputs", "predict --dicom-sr = the data root")
def _(env: Env, d: Path) -> Plan:
    root = copy_studies(env, d / "data", 0)
    return Plan(predict(env, d, "--dicom-sr", str(root), root=root), text=("data root",), protect=(root,))


@case("outputs", "predict -o under /proc: fails before any study is read")
def _(env: Env, d: Path) -> Plan:
    check = lambda r: "predicted the batch first" if "predicted" in r.out else None  # noqa: E731
    return Plan(predict(env, d, out=Path("/proc/spine_kp_probe/pred.json")), text=("/proc",), check=check)


@case("outputs", "predict --overlays into a folder of another run's files (counted)")
def _(env: Env, d: Path) -> Plan:
    old = d / "ov" / "other-model-study.png"
    old.parent.mkdir()
    old.write_bytes(b"\x89PNG from before")
    argv = predict(env, d, "--overlays", str(d / "ov"))
    return Plan(argv, codes=(0,), text=("warning:", "holds 1 files from before"), protect=(old,))


@case("outputs", "export --onnx = the checkpoint")
def _(env: Env, d: Path) -> Plan:
    ckpt = Path(shutil.copy(env.ckpt, d / "model.ckpt"))
    return Plan(["export", str(ckpt), "--onnx", str(ckpt)], text=("checkpoint input",), protect=(ckpt,))


@case("outputs", "ensemble -o = one of its members")
def _(env: Env, d: Path) -> Plan:
    a, b = (Path(shutil.copy(env.ckpt, d / n)) for n in ("a.ckpt", "b.ckpt"))
    return Plan(["ensemble", "-o", str(a), str(a), str(b)], text=("member 1 input",), protect=(a, b))


@case("outputs", "evaluate --report DIR holding the predictions as metrics.json")
def _(env: Env, d: Path) -> Plan:
    pred = Path(shutil.copy(env.preds, d / "metrics.json"))
    return Plan(evaluate(env.ann, pred, "--report", str(d)), text=("metrics.json",), protect=(pred,))


@case("outputs", "evaluate --report DIR holding the ground truth as report.md")
def _(env: Env, d: Path) -> Plan:
    gt = Path(shutil.copy(env.ann, d / "report.md"))
    return Plan(evaluate(gt, env.preds, "--report", str(d)), text=("report.md",), protect=(gt,))


@case("outputs", "synth OUT over an existing OUT/annotations.json")
def _(env: Env, d: Path) -> Plan:
    (d / "out").mkdir()
    gt = Path(shutil.copy(env.ann, d / "out" / "annotations.json"))
    return Plan(["synth", str(d / "out"), "--studies", "1", "--size", "64"], text=("--overwrite",), protect=(gt,))


@case("outputs", "synth --overwrite with OUT/studies a symlink to real data")
def _(env: Env, d: Path) -> Plan:
    real = copy_studies(env, d / "real", 0)
    (d / "out").mkdir()
    (d / "out" / "studies").symlink_to(real, target_is_directory=True)
    argv = ["synth", str(d / "out"), "--studies", "1", "--size", "64", "--overwrite"]
    return Plan(argv, text=("is a symbolic link",), protect=(real,))


# --- wrong schema: an error unless the user names it
def same_studies(src: Path, like: Path, dst: Path, schema: str | None) -> Path:
    """``src``'s records carrying the study, series and instance UIDs of ``like``'s (record i of each, as many as
    both hold), and the ``schema`` field ``predict`` writes: another model's predictions for the same images."""
    target = json.loads(like.read_text())
    records = json.loads(src.read_text())[: len(target)]
    for rec, other in zip(records, target):
        rec["studyUid"] = other["studyUid"]
        rec["data"][0]["seriesUid"] = other["data"][0]["seriesUid"]
        rec["data"][0]["instanceUid"] = other["data"][0]["instanceUid"]
        if schema:
            rec["schema"] = schema
    dst.write_text(json.dumps(records))
    return dst


@case("schema", "evaluate: tianchi predictions (naming their schema) vs default GT of the same studies")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: r[:2])
    pred = same_studies(env.tianchi_preds, gt, d / "pred.json", "tianchi")
    return Plan(evaluate(gt, pred), text=("schema 'tianchi'",))


@case("schema", "evaluate: default predictions (naming lumbar_t12_s1) vs tianchi GT naming tianchi")
def _(env: Env, d: Path) -> Plan:
    gt = scored(env.tianchi_ann, d / "gt.json", schema="tianchi", score=False)
    pred = same_studies(env.preds, gt, d / "pred.json", "lumbar_t12_s1")
    return Plan(evaluate(gt, pred), text=("tianchi", "lumbar_t12_s1"))


@case("schema", "evaluate: tianchi GT and predictions, neither naming its schema")
def _(env: Env, d: Path) -> Plan:
    return Plan(evaluate(env.tianchi_ann, env.tianchi_preds), codes=(0,), text=("warning:", "'tianchi'", "--schema"))


@case("schema", "evaluate --schema default on files that name tianchi")
def _(env: Env, d: Path) -> Plan:
    gt = scored(env.tianchi_ann, d / "gt.json", schema="tianchi", score=False)
    pred = scored(env.tianchi_ann, d / "pred.json", schema="tianchi")
    return Plan(evaluate(gt, pred, "--schema", "default"), codes=(0,), text=("warning:", "tianchi"))


@case("schema", "evaluate: predictions naming schema tianchi, default labels")
def _(env: Env, d: Path) -> Plan:
    pred = scored(env.ann, d / "pred.json", schema="tianchi")
    return Plan(evaluate(env.ann, pred), text=("tianchi",))


@case("schema", "evaluate --schema tianchi in a folder holding a tianchi/ directory")
def _(env: Env, d: Path) -> Plan:
    (d / "tianchi").mkdir()
    argv = evaluate(env.tianchi_ann, env.tianchi_preds, "--schema", "tianchi", "--json")
    check = lambda r: None if _map(r) == 1.0 else f"perfect tianchi predictions scored mAP {_map(r)}"  # noqa: E731
    return Plan(argv, codes=(0,), cwd=d, check=check)


def _map(r: Result) -> float | None:
    try:
        doc = json.loads(r.out)
    except ValueError:
        return None
    return doc.get("map") if isinstance(doc, dict) else None


@case("schema", "evaluate --schema with a tab in the YAML")
def _(env: Env, d: Path) -> Plan:
    (d / "s.yaml").write_text("landmarks:\n\t- a\n")
    return Plan(evaluate(env.ann, env.preds, "--schema", str(d / "s.yaml")), text=("s.yaml: line 2",))


# --- duplicated and swapped files
@case("duplicates", "evaluate: the same study twice in the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: r + [r[0]])
    return Plan(evaluate(gt, env.preds), text=("appears again",))


@case("duplicates", "evaluate: the same study twice in the predictions")
def _(env: Env, d: Path) -> Plan:
    pred = edit_records(env.preds, d / "pred.json", lambda r: r + [r[1]])
    return Plan(evaluate(env.ann, pred), text=("appears again",))


@case("duplicates", "evaluate: --annotations and --predictions swapped")
def _(env: Env, d: Path) -> Plan:
    return Plan(evaluate(env.preds, env.ann), text=("look swapped",))


@case("duplicates", "evaluate: [] as annotations")
def _(env: Env, d: Path) -> Plan:
    (d / "gt.json").write_text("[]")
    return Plan(evaluate(d / "gt.json", env.preds), text=("holds no annotated point",))


@case("duplicates", "evaluate: records without points as annotations")
def _(env: Env, d: Path) -> Plan:
    def empty(records: list[dict[str, Any]]) -> None:
        for rec in records:
            for entry in rec["data"]:
                for block in entry["annotation"]:
                    block["data"]["point"] = []

    return Plan(evaluate(edit_records(env.ann, d / "gt.json", empty), env.preds), text=("holds no annotated point",))


@case("duplicates", "evaluate: a coordinate of 1e308 in the predictions")
def _(env: Env, d: Path) -> Plan:
    pred = edit_records(env.preds, d / "pred.json", lambda r: first_point(r).update(coord=[1e308, 5.0]))
    return Plan(evaluate(env.ann, pred), text=("pred.json: record 0",))


@case("duplicates", "evaluate: zIndex 2^63 in the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: first_point(r).update(zIndex=2**63))
    return Plan(evaluate(gt, env.preds), text=("gt.json: record 0", "zIndex"))


@case("duplicates", "evaluate: pixelSpacing 1e9 in the ground truth")
def _(env: Env, d: Path) -> Plan:
    gt = edit_records(env.ann, d / "gt.json", lambda r: r[0]["data"][0].update(pixelSpacing=[1e9, 1e9]))
    return Plan(evaluate(gt, env.preds), text=("gt.json: record 0", "pixelSpacing"))


@case("duplicates", "evaluate: a lone surrogate in a studyUid")
def _(env: Env, d: Path) -> Plan:
    def lone(records: list[dict[str, Any]]) -> None:
        records[0]["studyUid"] = "1.2.\ud800"

    gt = edit_records(env.ann, d / "gt.json", lone)  # json.dumps writes the surrogate as \ud800 (valid JSON text)
    return Plan(evaluate(gt, env.preds), codes=(0, 2), text=("\\ud800",))


@case("duplicates", "inspect: the same study folder twice in the data root")
def _(env: Env, d: Path) -> Plan:
    root = copy_studies(env, d / "data", 0, 1, 2)
    shutil.copytree(root / "study0000", root / "study0000_copy")
    return Plan(["inspect", str(root)], codes=(0, 1), text=(env.uid(0),), check=_no_double(env.uid(0)))


def _no_double(uid: str) -> Callable[[Result], str | None]:
    def check(r: Result) -> str | None:
        read = [ln for ln in r.out.splitlines() if ln.startswith(uid)]
        return f"{uid} read {len(read)} times" if len(read) > 1 else None

    return check


# --- full disk: one error line, the previous file intact
def full_disk(d: Path, plan_unmount: list[Path], keep: dict[str, bytes] | None = None, free: int = 0) -> Path:
    """A 64 KiB tmpfs at ``d/disk`` holding ``keep``, filled to ``free`` bytes; registered for unmounting."""
    disk = d / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True, capture_output=True)
    plan_unmount.append(disk)
    for name, data in (keep or {}).items():
        (disk / name).parent.mkdir(parents=True, exist_ok=True)
        (disk / name).write_bytes(data)
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:  # unbuffered: closing must not flush into the full disk again
        try:
            while True:
                fh.write(bytes(4096))
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - free))
    return disk


def disk_case(name: str, make: Callable[[Env, Path, list[Path]], tuple[list[str], tuple[Path, ...]]]) -> None:
    """A full-disk case: ``make(env, d, unmount)`` mounts its disk (``full_disk``) and returns (argv, protected)."""

    def build(env: Env, d: Path) -> Plan:
        unmount: list[Path] = []
        argv, protect = make(env, d, unmount)
        return Plan(argv, text=("No space left on device",), protect=protect, unmount=unmount)

    case("disk", name, needs="mount")(build)


def _disk_predict(env: Env, d: Path, um: list[Path], flag: str, free: int = 0) -> tuple[list[str], tuple[Path, ...]]:
    keep = {"pred.json": b"[]", "pred.csv": b"study,series,instance,zIndex\n"}
    disk = full_disk(d, um, keep, free)
    extra = {"-o": [], "--csv": ["--csv", str(disk / "pred.csv")], "--overlays": ["--overlays", str(disk / "ov")],
             "--dicom-sr": ["--dicom-sr", str(disk / "sr")]}[flag]  # fmt: skip
    return predict(env, d, *extra, out=disk / "pred.json"), (disk / "pred.json", disk / "pred.csv")


disk_case("predict -o (an earlier predictions file there)", lambda e, d, um: _disk_predict(e, d, um, "-o"))
disk_case(
    "predict --dicom-sr, the disk fills after the first report",
    lambda e, d, um: (_disk_predict(e, d, um, "--dicom-sr", free=16384)[0], ()),
)
disk_case("predict --csv (an earlier CSV there)", lambda e, d, um: _disk_predict(e, d, um, "--csv"))
disk_case("predict --overlays", lambda e, d, um: _disk_predict(e, d, um, "--overlays"))
disk_case("predict --dicom-sr", lambda e, d, um: _disk_predict(e, d, um, "--dicom-sr"))


def _disk_ensemble(env: Env, d: Path, um: list[Path]) -> tuple[list[str], tuple[Path, ...]]:
    disk = full_disk(d, um, {"ens.ckpt": b"previous ensemble"})
    b = Path(shutil.copy(env.ckpt, d / "b.ckpt"))
    return ["ensemble", "-o", str(disk / "ens.ckpt"), str(env.ckpt), str(b)], (disk / "ens.ckpt",)


def _disk_train(env: Env, d: Path, um: list[Path]) -> tuple[list[str], tuple[Path, ...]]:
    disk = full_disk(d, um, {"run/checkpoints/best.ckpt": b"previous best"})
    return train(env, d, out=disk / "run"), (disk / "run/checkpoints/best.ckpt",)


disk_case("ensemble -o (an earlier ensemble there)", _disk_ensemble)
disk_case("evaluate --report", lambda e, d, um: (evaluate(e.ann, e.preds, "--report", str(full_disk(d, um))), ()))
disk_case("synth OUT", lambda e, d, um: (["synth", str(full_disk(d, um) / "s"), "--studies", "1", "--size", "64"], ()))
disk_case("train --out (an earlier best.ckpt there)", _disk_train)


@case("disk", "export --onnx (an earlier export there)", needs="mount+onnx")
def _(env: Env, d: Path) -> Plan:
    unmount: list[Path] = []
    disk = full_disk(d, unmount, {"m.onnx": b"previous export"})
    argv = ["export", str(env.ckpt), "--onnx", str(disk / "m.onnx")]
    return Plan(argv, text=("No space left on device",), protect=(disk / "m.onnx",), unmount=unmount)


# --- bad config values: one error line before any data is read
for _flag, _value, _text in (
    ("--trainer.max_epochs", "-1", "'trainer.max_epochs' must be >= 1"),
    ("--optim.lr", "-1", "'optim.lr' must be > 0"),
    ("--optim.lr", "nan", "'optim.lr'"),
    ("--optim.lr", "inf", "'optim.lr'"),
    ("--data.input_size", "[0, 0]", "'data.input_size'"),
    ("--trainer.devices", "0", "'trainer.devices' must be"),
    ("--data.batch_size", "0", "'data.batch_size' must be >= 1"),
    ("--data.val_fraction", "1.5", "'data.val_fraction' must be > 0 and < 1"),
    ("--data.num_workers", "-3", "'data.num_workers'"),
):
    case("config", f"train {_flag} {_value}")(
        lambda e, d, flag=_flag, value=_value, text=_text: Plan(train(e, d, flag, value), text=(text,))
    )
for _name, _yaml, _text in (
    ("a tab", "optim:\n\tlr: 1\n", "c.yaml: line 2, column 1"),
    ("an unclosed bracket", "model: [1,\n", "c.yaml: line 2, column 1"),
    ("a duplicate key", "seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    ("nothing (empty file)", "", "c.yaml: the config file is empty"),
    ("a list at the top", "- seed\n", "c.yaml"),
    ("a 10^5-deep nesting", "[" * 100000, "c.yaml"),
):
    case("config", f"train --config holding {_name}")(
        lambda e, d, y=_yaml, text=_text: Plan(train(e, d, "--config", str(_write(d / "c.yaml", y))), text=(text,))
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@case("config", "train --data.input_size [100, 100] (demo_cpu's model: stride 32)")
def _(env: Env, d: Path) -> Plan:
    return Plan(
        _untiny(train(env, d, "--data.input_size", "[100, 100]")), text=("'data.input_size' must be multiples",)
    )


@case("config", "train --model.pretrained FILE with --model.backbone none")
def _(env: Env, d: Path) -> Plan:
    weights = _write(d / "w.pth", "not used")
    return Plan(train(env, d, "--model.pretrained", str(weights)), text=("pretrained",))


@case("config", "evaluate --schema holding a 10^5-deep nesting")
def _(env: Env, d: Path) -> Plan:
    schema = _write(d / "s.yaml", "[" * 100000)
    return Plan(evaluate(env.ann, env.preds, "--schema", str(schema)), text=("s.yaml",))


@case("config", "train --config /dev/zero")
def _(env: Env, d: Path) -> Plan:
    return Plan(train(env, d, "--config", "/dev/zero"), text=("/dev/zero",))


# --- careless use
@case("careless", "predict --checkpoint RUN_DIR (means its checkpoints/best.ckpt)")
def _(env: Env, d: Path) -> Plan:
    return Plan(predict(env, d, ckpt=env.run_dir), codes=(0,), check=lambda r: _n_records(d / "pred.json", 3))


def _n_records(path: Path, n: int) -> str | None:
    uids = records_in(path)
    return None if len(uids) == n else f"{len(uids)} records written, {n} expected"


@case("careless", "predict on a root of symlinked study folders only")
def _(env: Env, d: Path) -> Plan:
    (d / "links").mkdir()
    for i in range(3):
        (d / "links" / f"s{i}").symlink_to(env.study(i), target_is_directory=True)
    return Plan(predict(env, d, root=d / "links"), text=("3 symlinked folder(s) skipped",))


@case("careless", "inspect on a root of symlinked study folders only")
def _(env: Env, d: Path) -> Plan:
    (d / "links").mkdir()
    for i in range(3):
        (d / "links" / f"s{i}").symlink_to(env.study(i), target_is_directory=True)
    return Plan(["inspect", str(d / "links")], text=("3 symlinked folder(s) skipped",))


@case("careless", "train: --fold 7 of 10 leaves the validation split of 3 studies empty")
def _(env: Env, d: Path) -> Plan:
    argv = train(env, d, "--fold", "7", "--data.num_folds", "10")
    return Plan(argv, text=("the validation split is empty: 3 annotated studies",))


@case("careless", "train: an annotated image that is an axial slice")
def _(env: Env, d: Path) -> Plan:
    from spine_kp.io.dicom import scan

    studies = scan(env.axial / "studies").studies
    axial = {uid: se.instances[0].sop_instance_uid for uid, st in studies.items() for se in st.series
             if se.plane == "axial"}  # fmt: skip
    records = json.loads((env.axial / "annotations.json").read_text())
    rec = next(r for r in records if r["studyUid"] in axial)
    rec["data"][0]["instanceUid"] = axial[rec["studyUid"]]
    gt = d / "gt.json"
    gt.write_text(json.dumps(records))
    return Plan(train(env, d, data=env.axial / "studies", ann=gt), text=("not a sagittal slice",))


# ------------------------------------------------------------------------------------------------------- running
def fingerprint(paths: Sequence[Path]) -> dict[str, str]:
    """path -> sha256 (or 'missing', or 'link -> target') of every file under ``paths``; links are not followed."""
    out: dict[str, str] = {}

    def one(p: Path) -> None:
        if p.is_symlink():
            out[str(p)] = f"link -> {os.readlink(p)}"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_dir():
            for child in sorted(p.iterdir()):
                one(child)
        else:
            out[str(p)] = "missing"

    for path in paths:
        one(path)
    return out


#: Runs ``argv[2:]`` and writes ``[exit status, ru_maxrss]`` of that child alone to ``argv[1]``. Linux keeps a
#: process's peak RSS across fork and exec, so a child forked straight from this script (torch imported, ~0.9 GB)
#: would report at least that; forked from this small launcher it starts from the launcher's ~10 MB.
LAUNCHER = """
import json, os, resource, subprocess, sys
cap = int(os.environ.pop("PROBE_AS_CAP"))
resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
p = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(p.pid, 0)
p.returncode = os.waitstatus_to_exitcode(status)
with open(sys.argv[1], "w") as fh:
    json.dump([p.returncode, usage.ru_maxrss], fh)
"""


def spawn(argv: Sequence[str], cwd: Path | None, timeout: float, log: Path) -> Result:
    """Run ``spine-kp ARGV``; its own peak RSS from ``os.wait4``, killed (its process group) after ``timeout``."""
    cmd = [sys.executable, "-c", LAUNCHER, str(log / "usage.json"), sys.executable, "-m", "spine_kp", *argv]
    start = time.monotonic()
    with open(log / "stdout", "w+", errors="backslashreplace") as fo, open(log / "stderr", "w+") as fe:
        env = {**child_env(), "PROBE_AS_CAP": str(ADDRESS_SPACE_CAP)}
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=cwd, env=env,
                                start_new_session=True)  # fmt: skip
        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        proc.wait()
        timer.cancel()
        fo.seek(0)
        fe.seek(0)
        out = fo.read()
        err = fe.buffer.read().decode("utf-8", "backslashreplace")
    try:
        code, maxrss = json.loads((log / "usage.json").read_text())
    except (OSError, ValueError):  # killed before the launcher could write it
        code, maxrss = proc.returncode, 0
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return Result(code, out, err, maxrss * scale / MiB, time.monotonic() - start, timed_out.is_set())


@dataclass
class Row:
    cls: str
    name: str
    code: int | None
    rss_mib: float | None
    wall_s: float | None
    failures: list[str]
    detail: str
    not_run: str = ""
    argv: list[str] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        if self.not_run:
            return f"not run ({self.not_run})"
        text = "ok" if not self.failures else ", ".join(self.failures) + f": {self.detail}"
        if self.stray:
            text += f" [note: {len(self.stray)} stderr line(s) without error:/warning:, first {self.stray[0][:120]!r}]"
        return text


def stray_lines(r: Result) -> list[str]:
    """stderr lines of a refusal that are neither ``error:`` nor ``warning:`` (a note, not a failure kind: the
    contract wants one ``error:`` line for a refusal and ``warning:`` lines for what is counted)."""
    return [ln for ln in r.err.splitlines() if ln.strip() and not ln.startswith(("error: ", "warning: "))]


def classify(plan: Plan, r: Result, marker: Path, changed: list[str], bound_mib: float) -> tuple[list[str], str]:
    """The failure kinds of one case (empty: as expected) and a short reason."""
    kinds: list[str] = []
    why: list[str] = []
    if marker.exists():
        kinds.append("payload ran")
        why.append("the marker file exists")
    if "Traceback" in r.out + r.err:
        kinds.append("traceback")
        why.append(_last_line(r.err))
    if changed:
        kinds.append("silent overwrite")
        why.append(f"changed: {', '.join(changed[:3])}")
    if r.rss_mib > bound_mib:
        kinds.append("memory")
        why.append(f"peak RSS {r.rss_mib:.0f} MiB > {bound_mib:.0f} MiB")
    wrong: list[str] = []
    if r.timed_out:
        kinds.append("other")
        why.append(f"timed out after {r.wall_s:.0f} s")
    elif r.code not in plan.codes:
        if r.code == 0:
            wrong.append(f"exit 0, expected {plan.codes}")
        else:
            kinds.append("other")
            why.append(f"exit {r.code}, expected {plan.codes}: {_last_line(r.err)}")
    if not r.timed_out and r.code in plan.codes:
        haystack = r.out + r.err + "".join(_read(p) for p in plan.read)
        missing = [t for t in plan.text if t not in haystack]
        if missing:
            wrong.append(f"missing {missing!r}; got: {_last_line(r.err) or _last_line(r.out)}")
        if r.code == 2:
            errors = [ln for ln in r.err.splitlines() if ln.startswith("error: ")]
            if len(errors) != 1:
                wrong.append(f"{len(errors)} error lines: {errors[:3]}")
        if plan.check is not None and not wrong:
            bad = plan.check(r)
            if bad:
                wrong.append(bad)
    if wrong:
        kinds.append("silently wrong")
        why.extend(wrong)
    return kinds, "; ".join(why)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def run_case(env: Env, c: Case, index: int, args: argparse.Namespace, shared_before: dict[str, str]) -> Row:
    missing = [n for n in c.needs.split("+") if n and not _has(env, n)]
    if missing:
        reason = env.why_no_onnx if "onnx" in missing else env.why_no_mount
        return Row(c.cls, c.name, None, None, None, [], "", not_run=reason)
    d = env.root / "cases" / f"{index:03d}"
    d.mkdir(parents=True)
    marker = d / "MARKER"
    plan: Plan | None = None
    try:
        plan = c.build(env, d)
        protect = list(plan.protect)
        before = fingerprint(protect)
        log = d / "log"
        log.mkdir()
        r = spawn(plan.argv, plan.cwd, args.timeout, log)
        after = fingerprint(protect)
        changed = [p for p in before if after.get(p) != before[p]]
        shared_after = fingerprint(env.shared())
        changed += [p for p in shared_before if shared_after.get(p) != shared_before[p]]
        kinds, why = classify(plan, r, marker, changed, args.rss_bound_mib)
        stray = stray_lines(r) if r.code == 2 and "traceback" not in kinds else []
        return Row(c.cls, c.name, r.code, r.rss_mib, r.wall_s, kinds, why, argv=plan.argv, stray=stray)
    except Exception as exc:  # the probe's own setup broke: a failure of the probe, not counted as passing
        return Row(c.cls, c.name, None, None, None, ["other"], f"probe setup failed: {type(exc).__name__}: {exc}",
                   argv=plan.argv if plan else [])  # fmt: skip
    finally:
        for disk in plan.unmount if plan else []:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _has(env: Env, need: str) -> bool:
    return bool(env.onnx) if need == "onnx" else env.can_mount


def select(only: str | None, match: str | None, limit: int | None) -> list[Case]:
    """The cases of the classes in ``only`` whose name holds one of the comma-separated ``match`` texts."""
    unknown = set(only.split(",")) - {c.cls for c in CASES} if only else set()
    if unknown:
        raise SystemExit(f"error: --only {only}: unknown class(es) {sorted(unknown)}; see --list")
    chosen = [c for c in CASES if not only or c.cls in only.split(",")]
    texts = [t.lower() for t in match.split(",")] if match else []
    chosen = [c for c in chosen if not texts or any(t in c.name.lower() for t in texts)]
    return chosen[:limit] if limit else chosen


def summarise(rows: Sequence[Row]) -> dict[str, dict[str, int]]:
    """class -> {cases, run, not run, ok, <each failure kind>}; plus 'all'."""
    out: dict[str, dict[str, int]] = {}
    for key in [*dict.fromkeys(r.cls for r in rows), "all"]:
        mine = [r for r in rows if key in ("all", r.cls)]
        counts = {"cases": len(mine), "run": sum(not r.not_run for r in mine), "not run": sum(bool(r.not_run)
                  for r in mine), "ok": sum(not r.not_run and not r.failures for r in mine)}  # fmt: skip
        counts |= {k: sum(k in r.failures for r in mine) for k in KINDS}
        counts["stray stderr (note)"] = sum(bool(r.stray) for r in mine)
        out[key] = counts
    return out


def print_table(rows: Sequence[Row], summary: dict[str, dict[str, int]], bound: float) -> None:
    print(f"{'class':10s} {'case':78s} {'exit':>4s} {'MiB':>6s} {'s':>5s}  outcome")
    for r in rows:
        code = "-" if r.code is None else str(r.code)
        rss = "-" if r.rss_mib is None else f"{r.rss_mib:.0f}"
        wall = "-" if r.wall_s is None else f"{r.wall_s:.1f}"
        print(f"{r.cls:10s} {r.name[:78]:78s} {code:>4s} {rss:>6s} {wall:>5s}  {r.outcome}")
    print()
    heads = ["cases", "run", "not run", "ok", *KINDS, "stray stderr (note)"]
    print(f"{'class':10s} " + " ".join(f"{h:>{max(5, len(h))}s}" for h in heads))
    for cls, counts in summary.items():
        print(f"{cls:10s} " + " ".join(f"{counts[h]:{max(5, len(h))}d}" for h in heads))
    peak = max((r.rss_mib for r in rows if r.rss_mib is not None), default=0.0)
    print(f"\npeak RSS of any case: {peak:.0f} MiB (bound {bound:.0f} MiB)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="comma-separated classes to run (default: all)")
    parser.add_argument("--match", help="only cases whose name contains one of these comma-separated texts")
    parser.add_argument("--limit", type=int, help="at most this many cases (after --only/--match)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per case before it is killed")
    parser.add_argument("--rss-bound-mib", type=float, default=2048.0, help="largest accepted peak RSS of a case")
    parser.add_argument("--out", type=Path, help="also write the rows and the summary as JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    cases = select(args.only, args.match, args.limit)
    if args.list:
        for c in cases:
            print(f"{c.cls:10s} {c.name}" + (f"  [needs {c.needs}]" if c.needs else ""))
        print(f"{len(cases)} cases")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="probe_hostile_"))
    try:
        start = time.monotonic()
        env = make_env(tmp, with_onnx=any("onnx" in c.needs for c in cases))
        print(f"fixtures built in {time.monotonic() - start:.0f} s under {tmp}", file=sys.stderr)
        shared_before = fingerprint(env.shared())
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            rows = list(pool.map(lambda ic: run_case(env, ic[1], ic[0], args, shared_before), enumerate(cases)))
        summary = summarise(rows)
        print_table(rows, summary, args.rss_bound_mib)
        print(f"total {time.monotonic() - start:.0f} s", file=sys.stderr)
        if args.out:
            doc = {"rss_bound_mib": args.rss_bound_mib, "summary": summary,
                   "rows": [{"class": r.cls, "case": r.name, "exit": r.code, "peak_rss_mib": r.rss_mib,
                             "wall_s": r.wall_s, "failures": r.failures, "outcome": r.outcome, "argv": r.argv,
                             "stray_stderr": r.stray}
                            for r in rows]}  # fmt: skip
            args.out.write_text(json.dumps(doc, indent=2))
        return 1 if any(summary["all"][k] for k in KINDS) else 0
    finally:
        for mount in _mounts_under(tmp):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        if args.keep:
            print(f"kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _mounts_under(root: Path) -> Iterator[str]:
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return iter(())
    return iter(sorted((ln.split()[1] for ln in lines if ln.split()[1].startswith(str(root))), reverse=True))


if __name__ == "__main__":
    sys.exit(main())
