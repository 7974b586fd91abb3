"""Rendering and acquisition of phantom series: render grids, noise, integer scaling, axial blocks, scout.

The sagittal series share one render (three contrasts at once) on an ~1 mm acquisition grid; each series then
gets Rician noise, windowed-sinc interpolation to its own matrix and the integer scaling of its encoding.
"""

from __future__ import annotations

import math

import numpy as np

from spine_kp.synth.anatomy import Anatomy
from spine_kp.synth.canvas import PlaneGrid
from spine_kp.synth.dicom_write import SeriesGeometry
from spine_kp.synth.layout import CORONAL, Stack
from spine_kp.synth.phantom import BiasField, Pose, acquire, make_textures, render_plane, tissue_signals
from spine_kp.synth.plan import SeriesPlan, StudyPlan
from spine_kp.synth.study_types import SynthSeries, series_meta, synth_uid


def quantize(vol: np.ndarray, sp: SeriesPlan, ref: float | None = None) -> np.ndarray:
    """(N, H, W) magnitudes -> real-world values that the series' integer encoding represents exactly.

    ``ref`` (default: the 99.9th percentile, i.e. the brightest tissue) maps to ``sp.stored_max``; stored
    values are clipped to the BitsStored range and the returned values are ``stored * slope + intercept``.
    """
    if ref is None:
        ref = brightest(vol)
    out = np.multiply(vol, np.float32(sp.stored_max / ref), dtype=np.float32)
    np.rint(out, out=out)
    np.clip(out, 0, 2**sp.bits - 1, out=out)  # stored integers
    if sp.slope != 1.0:
        out *= np.float32(sp.slope)
    if sp.intercept != 0.0:
        out += np.float32(sp.intercept)
    return out


def brightest(vol: np.ndarray) -> float:
    """99.9th percentile of a (subsampled) volume: the reference for the integer scaling of a series."""
    step = max(1, int(math.sqrt(vol.size / 50_000)))
    return float(np.percentile(vol[:, ::step, ::step], 99.9)) or 1.0


def render_planes(
    grids: list[PlaneGrid],
    anatomy: Anatomy,
    plans: list[SeriesPlan],
    gap: float,
    label_ids: dict[str, int],
    bias: BiasField,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, h, w) noise-free signal of every contrast in ``plans`` and (N, h, w) labels on render grids."""
    n, shape = len(grids), grids[0].shape
    signals = tissue_signals([p.sequence for p in plans], rng)
    tex = make_textures(rng, n, shape, grids[0].px, gap)
    imgs = np.empty((n, len(plans), *shape), dtype=np.float32)
    labels = np.empty((n, *shape), dtype=np.int16)
    for j, grid in enumerate(grids):
        imgs[j], labels[j] = render_plane(grid, anatomy, signals, tex[j], label_ids, bias)
    return imgs, labels


def render_shape(stack: Stack, acq_px: tuple[float, float], cap: tuple[int, int]) -> tuple[int, int]:
    """Acquisition (render) matrix: the field of view at ``acq_px`` (row, col mm), never finer than ``cap``."""
    h = min(cap[0], max(16, int(round(stack.spacing[0] * stack.shape[0] / acq_px[0]))))
    w = min(cap[1], max(16, int(round(stack.spacing[1] * stack.shape[1] / acq_px[1]))))
    return h, w


class NoisePool:
    """One pair of standard normal fields per render stack; each series reads it at its own random shift.

    Drawing fresh normals for every contrast costs more than the rest of the acquisition; circularly shifted
    copies are just as uncorrelated to the eye and to any model looking at one series at a time.
    """

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...]) -> None:
        self.rng = rng
        self.fields = (rng.standard_normal(shape, dtype=np.float32), rng.standard_normal(shape, dtype=np.float32))

    def draw(self) -> tuple[np.ndarray, np.ndarray]:
        shift = (int(self.rng.integers(self.fields[0].shape[1])), int(self.rng.integers(self.fields[0].shape[2])))
        return tuple(np.roll(f, shift, axis=(1, 2)) for f in self.fields)  # type: ignore[return-value]


def acquired(imgs: np.ndarray, c: int, sp: SeriesPlan, signal_ref: float, noise: NoisePool,
              shape: tuple[int, int], scale_ref: float | None = None) -> np.ndarray:  # fmt: skip
    """Contrast ``c`` of (N, C, h, w) renders -> (N, H, W) series pixels as stored (noise at SNR, matrix, scaling)."""
    vol = acquire(imgs[:, c], signal_ref / sp.snr, noise.draw(), shape)
    return quantize(vol, sp, scale_ref)


def scout(
    seed: int, index: int, plan: StudyPlan, pose: Pose, anatomy: Anatomy, t2: SynthSeries,
    label_ids: dict[str, int], bias: BiasField, r_render: np.random.Generator, r_noise: np.random.Generator,
) -> SynthSeries:  # fmt: skip
    """A coronal localiser filed inside the T2 sagittal series (same SeriesInstanceUID and description)."""
    size = max(64, t2.pixels.shape[1] // 2)
    sp = 420.0 / size
    centre = pose.to_patient(np.zeros(3))
    stack = Stack.around(centre, CORONAL[0], CORONAL[1], 1, 0, 1.0, (sp, sp), (size, size), 8.0)
    t2p = plan.series["t2_sag"]
    rshape = render_shape(stack, (2.0, 2.0), (size, size))
    imgs, _ = render_planes([stack.grid(pose, 0, rshape)], anatomy, [t2p], 1e3, label_ids, bias, r_render)
    ref = float(tissue_signals([t2p.sequence])["csf"][0])
    pixels = acquired(imgs, 0, t2p, ref, NoisePool(r_noise, (1, *rshape)), (size, size))
    n = len(t2.sop_uids)
    return SynthSeries(
        role="scout",
        pixels=pixels,
        geometry=SeriesGeometry(stack.orientation, stack.positions, (sp, sp), 8.0),
        meta=t2.meta,
        sop_uids=(synth_uid(seed, index, "sop", "scout"),),
        instance_numbers=(n + 1,),
        transfer_syntax=t2.transfer_syntax,
    )


def axial(
    seed: int, index: int, plan: StudyPlan, pose: Pose, anatomy: Anatomy, study_uid: str, series_uid: str,
    bias: BiasField, r_render: np.random.Generator, r_noise: np.random.Generator,
) -> list[SynthSeries]:  # fmt: skip
    """T2 axial blocks of three slices, each angled along one of the two lowest discs (one series)."""
    sp = plan.series["t2_ax"]
    rows = sp.shape[0]
    fov = float(r_render.uniform(180.0, 220.0))
    spacing = (fov / rows, fov / rows)
    meta = series_meta(plan, sp, study_uid, series_uid, index)
    ref = float(tissue_signals([sp.sequence])["csf"][0])
    ex = np.array([1.0, 0.0, 0.0])
    stacks = []
    for disc in [d for d in anatomy.discs if not d.fused][-2:]:
        normal = pose.matrix @ np.array([0.0, *disc.frame.up])
        normal /= np.linalg.norm(normal)
        row = ex - (ex @ normal) * normal
        row /= np.linalg.norm(row)
        col = np.cross(normal, row)
        centre = pose.to_patient(np.array([0.0, *disc.frame.point(0.6 * disc.half_depth, 0.0)]))
        stacks.append(Stack.around(centre, row, col, 3, 1, 4.5, spacing, sp.shape, 4.0))
    # axial images are distractors for the loader: a coarse acquisition grid keeps them cheap
    rshape = render_shape(stacks[0], (1.6, 1.6), sp.shape)
    grids = [st.grid(pose, j, rshape) for st in stacks for j in range(3)]
    imgs, _ = render_planes(grids, anatomy, [sp], 1e3, {}, bias, r_render)
    noise = NoisePool(r_noise, (imgs.shape[0], *rshape))
    vol = acquire(imgs[:, 0], ref / sp.snr, noise.draw(), sp.shape)
    pixels = quantize(vol, sp)  # one integer scaling for the whole series
    out: list[SynthSeries] = []
    for b, stack in enumerate(stacks):
        out.append(
            SynthSeries(
                role="t2_ax",
                pixels=pixels[3 * b : 3 * b + 3],
                geometry=SeriesGeometry(stack.orientation, stack.positions, spacing, 4.0),
                meta=meta,
                sop_uids=tuple(synth_uid(seed, index, "sop", "t2_ax", b, j) for j in range(3)),
                instance_numbers=tuple(range(3 * b + 1, 3 * b + 4)),
                transfer_syntax=sp.transfer_syntax,
            )
        )
    return out
