"""Shared pieces of the fuzz suite: a small phantom data root, file mutations that undo themselves, a numpy predictor.

A plain module (not conftest.py) with a name no other test folder uses, so the fuzz tests can import it.

The data root holds three phantom studies written by :mod:`spine_kp.synth` (64 rows, sagittal series only):

* ``native``: T2 and STIR sagittal, uncompressed (explicit VR little endian);
* ``rle``: T2 and STIR sagittal, RLE compressed (the pylibjpeg RLE decoder, SimpleITK as fallback);
* ``good``: T2 sagittal only, never mutated: every property checks it is still scanned and predicted.

Hypothesis examples mutate files in place and :func:`mutated` puts the original bytes back, so one root serves
every example of a module (copying it per example would cost more than the scan).
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from hypothesis import HealthCheck, settings
from pydicom.datadict import dictionary_VR, tag_for_keyword

from spine_kp.codec.heatmap import HeatmapCodec
from spine_kp.inference.card import ModelCard, Preprocessing
from spine_kp.inference.slice_predictor import SlicePredictor
from spine_kp.inference.trained_labels import TrainedLabels
from spine_kp.io.dicom import ScanResult
from spine_kp.predict.runner import PredictRun
from spine_kp.schema import Schema, load_schema
from spine_kp.synth import SynthOptions, make_study, write_study

SCHEMA = load_schema()
INPUT = (32, 32)


def fuzz_settings(examples: int) -> settings:
    """Reproducible CI settings: fixed seed, no example database, no deadline (file I/O on a shared machine)."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


@dataclass(frozen=True)
class PhantomStudy:
    """One written phantom study: UID, folder and its T2 sagittal files in position order."""

    name: str
    study_uid: str
    folder: Path
    t2_files: tuple[Path, ...]
    t2_middle_uid: str


class Phantoms(dict[str, PhantomStudy]):
    """The studies of :func:`write_phantom_root` by name, and their ``root``; short repr for hypothesis reports."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def __repr__(self) -> str:
        return f"Phantoms({self.root})"


def write_phantom_root(root: Path) -> Phantoms:
    """Write the three studies of the module docstring under ``root``."""
    out = Phantoms(root)
    for index, (name, roles, syntax) in enumerate(
        [("native", ("t2_sag", "stir_sag"), "explicit"), ("rle", ("t2_sag", "stir_sag"), "rle"),
         ("good", ("t2_sag",), "explicit")]
    ):  # fmt: skip
        study = make_study(11, index, options=SynthOptions(size=64, axial=False, tricky=False))
        keep = tuple(dataclasses.replace(s, transfer_syntax=syntax) for s in study.series if s.role in roles)
        study = dataclasses.replace(study, series=keep, folder=name)
        files = write_study(study, root)
        t2 = study.get("t2_sag")
        by_uid = {}
        for path in files:
            by_uid[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
        ordered = tuple(by_uid[u] for u in t2.sop_uids)  # SynthSeries keeps position order
        out[name] = PhantomStudy(name, study.study_uid, root / name, ordered, t2.sop_uids[(len(ordered) - 1) // 2])
    return out


@contextmanager
def mutated(paths: list[Path], change: Callable[[bytes], bytes]) -> Iterator[None]:
    """Replace each file's bytes by ``change(bytes)``, and put the original bytes back afterwards whatever happens."""
    saved = {p: p.read_bytes() for p in paths}
    try:
        for p, data in saved.items():
            p.write_bytes(change(data))
        yield
    finally:
        for p, data in saved.items():
            p.write_bytes(data)


_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"}
_PIXEL_DATA = 0x7FE00010


def _elements(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, start, end) of the top-level elements of a phantom file (explicit VR little endian, no sequences),
    file meta included; the pixel data runs to the end of the file (encapsulated or not)."""
    pos, out = 132, []
    while pos < len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        tag = group << 16 | element
        if data[pos + 4 : pos + 6].decode() in _LONG_VRS:
            length, value = struct.unpack_from("<I", data, pos + 8)[0], pos + 12
        else:
            length, value = struct.unpack_from("<H", data, pos + 6)[0], pos + 8
        end = len(data) if tag == _PIXEL_DATA else value + length
        out.append((tag, pos, end))
        pos = end
    return out


def encode_element(keyword: str, value: bytes | int | str) -> bytes:
    """One explicit VR little endian element holding exactly ``value`` (int: as US; str: as text), whatever its VR
    allows: pydicom refuses to write a DS of "abc", a broken writer does not."""
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    vr = dictionary_VR(tag)
    if isinstance(value, int):
        value = struct.pack("<H", value)
    elif isinstance(value, str):
        value = value.encode("latin-1")
    if len(value) % 2:
        value += b"\x00" if vr in _LONG_VRS or vr in ("UI", "US") else b" "
    head = struct.pack("<HH2s", tag >> 16, tag & 0xFFFF, vr.encode())
    if vr in _LONG_VRS:
        return head + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def set_tags(edits: dict[str, bytes | int | str | None]) -> Callable[[bytes], bytes]:
    """A change of a file's bytes setting (or, for None, deleting) top-level elements by keyword, by splicing (ten
    times faster than a pydicom read and write, which would be most of an example's time)."""

    def change(data: bytes) -> bytes:
        for keyword, value in edits.items():
            tag = tag_for_keyword(keyword)
            elements = _elements(data)
            start = next((a for t, a, _ in elements if t >= tag), len(data))  # kept in tag order
            end = next((b for t, _, b in elements if t == tag), start)
            data = data[:start] + (b"" if value is None else encode_element(keyword, value)) + data[end:]
        return data

    return change


def all_files(root: Path) -> set[str]:
    out = set()
    for folder, _, files in os.walk(root):
        out.update(os.path.join(folder, f) for f in files)
    return out


def accounted_files(result: ScanResult) -> set[str]:
    """Every file the scan put somewhere: an image of a series, a scout, or a skipped file."""
    out = {s.path for s in result.skipped}
    for study in result.studies.values():
        for series in study.series:
            out.update(i.path for i in (*series.instances, *series.scouts))
    return out


class ImageNet:
    """A network in numpy: one Gaussian per landmark down the image centre, scaled by ``1 + 0 * mean(image)``.

    The scale is 1 for any finite input and NaN as soon as one input value is not finite, so unusable pixels that
    got this far would show in the predictions; every batch it sees is kept in ``seen`` for the tests to check.
    """

    def __init__(self, schema: Schema, codec: HeatmapCodec) -> None:
        h, w = codec.input_size[0] // codec.stride, codec.input_size[1] // codec.stride
        k = schema.num_landmarks
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        rows = np.linspace(2, h - 3, k, dtype=np.float32)
        self.base = np.exp(-((xx[None] - w / 2) ** 2 + (yy[None] - rows[:, None, None]) ** 2) / 2.0)  # (K, h, w)
        self.schema = schema
        self.seen: list[np.ndarray] = []

    def run(self, images: Any, mirrored: bool = False) -> tuple[np.ndarray, Any]:
        images = np.asarray(images)
        self.seen.append(images)
        scale = 1.0 + 0.0 * images.mean(axis=(1, 2, 3))  # (B,)
        return (self.base[None] * scale[:, None, None, None]).astype(np.float32), images

    def grade(self, features: Any, points: np.ndarray) -> dict[str, np.ndarray]:
        b = points.shape[0]
        return {
            k.name: np.zeros((b, len(self.schema.landmarks_of_kind(k.name)), len(k.grades)), np.float32)
            for k in self.schema.kinds
        }


class TinyPredictor(SlicePredictor):
    """A :class:`SlicePredictor` around :class:`ImageNet`: the whole prediction path (preprocessing at 1.6 mm per
    input pixel, level-order decoding, grading, records) without torch or a checkpoint."""

    def __init__(self) -> None:
        codec = HeatmapCodec(INPUT, stride=2, sigma=1.5)
        card = ModelCard(SCHEMA, codec, TrainedLabels.all(SCHEMA), Preprocessing(target_spacing=1.6))
        super().__init__(card)
        self.net = ImageNet(SCHEMA, codec)

    @property
    def network(self) -> ImageNet:
        return self.net


def check_run(run: PredictRun, result: ScanResult, root: Path, predictor: TinyPredictor) -> None:
    """What every prediction run must satisfy, whatever was done to the files.

    * each scanned study is either predicted or listed as failed with its folder and a one-line reason;
    * no unusable image reached the network: every input it saw, every prediction's pixels and coordinates are
      finite, spacing is positive and finite, and the pixels have the Rows x Columns of their series.
    """
    predicted = {p.slice.study_uid for p in run.predictions}
    failed = {f.study for f in run.failures}
    assert predicted | failed == set(result.studies) and not predicted & failed
    for f in run.failures:
        assert f.reason and "\n" not in f.reason, f.reason
        assert Path(f.folder).is_relative_to(root), f
    for images in predictor.net.seen:
        assert np.isfinite(images).all()
    for p in run.predictions:
        s = p.slice
        series = next(x for x in result.studies[s.study_uid].series if x.series_uid == s.series_uid)
        assert s.pixels.shape == (series.rows, series.cols)
        assert np.isfinite(s.pixels).all()
        assert all(np.isfinite(v) and v > 0 for v in s.spacing), s.spacing
        assert np.isfinite(p.coords).all() and np.isfinite(p.peaks).all()
