"""Phantom lumbar MRI studies in memory: series volumes, DICOM geometry/tags, label maps and annotations.

:func:`make_study` builds study ``index`` of a data set with seed ``seed``: a T2 sagittal (11-17 slices), a
T1 sagittal and a fat-suppressed T2 (STIR) sagittal sharing its slice positions, and T2 axial blocks through
the lowest discs, plus the study's tricky cases. Everything is drawn from generators seeded by
``(seed, index)``, so a study is byte-identical across runs and independent of how many studies are made.
Landmarks are the schema's, placed at the exact centre of the drawn structure on the annotated slice.
:func:`~spine_kp.io.synth_write.make_dataset` writes studies as DICOM folders plus ``annotations.json``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydicom.uid import generate_uid

from spine_kp.io.dicom_write import SeriesGeometry, SeriesMeta
from spine_kp.io.phantom import BiasField, Pose, acquire, make_textures, nearest_index, render_plane, tissue_signals
from spine_kp.io.phantom_anatomy import Anatomy, sample_anatomy
from spine_kp.io.synth_grades import looks_for, sample_grades
from spine_kp.io.synth_layout import CORONAL, SAGITTAL, Stack, fit_in_view, landmark_point, rotation
from spine_kp.io.synth_plan import SeriesPlan, StudyPlan, sample_plan
from spine_kp.schema import Schema, load_schema
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SAGITTAL_ROLES = ("t2_sag", "t1_sag", "stir_sag")


@dataclass(frozen=True)
class SynthOptions:
    """Knobs of the phantom data set.

    Attributes:
        size: rows of the sagittal images (256..512 typical; smaller for tests); None draws 384/448/512.
        axial: add the T2 axial blocks.
        tricky: add the tricky cases (see ``synth_plan.TRICKY_KINDS``).
        empty_grade_rate: share of annotated points written with an empty grade ("ignore" in evaluation).
    """

    size: int | None = None
    axial: bool = True
    tricky: bool = True
    empty_grade_rate: float = 0.0


@dataclass(eq=False)
class SynthSeries:
    """One stack of a series as it will be written.

    Attributes:
        role: "t2_sag", "t1_sag", "stir_sag", "t2_ax" (one per axial block) or "scout".
        pixels: (N, H, W) float32 real-world values exactly as stored (rescale applied), in position order.
        geometry: orientation, (N, 3) positions (ascending along the normal), spacing, thickness.
        meta: identity and acquisition tags; blocks of one series share it.
        sop_uids: SOPInstanceUID per slice; instance_numbers: InstanceNumber per slice.
        transfer_syntax: name accepted by ``dicom_write.write_series``.
        labels: (N, H, W) int16 structure labels (index into ``SynthStudy.label_names``), sagittal only.
    """

    role: str
    pixels: np.ndarray
    geometry: SeriesGeometry
    meta: SeriesMeta
    sop_uids: tuple[str, ...]
    instance_numbers: tuple[int, ...]
    transfer_syntax: str = "explicit"
    labels: np.ndarray | None = None


@dataclass(eq=False)
class SynthStudy:
    """A phantom study in memory, with its ground truth."""

    index: int
    seed: int
    study_uid: str
    folder: str
    series: tuple[SynthSeries, ...]
    record: StudyRecord
    grades: dict[str, tuple[str, ...]]
    label_names: tuple[str, ...]
    annotated_index: int
    plan: StudyPlan
    anatomy: Anatomy
    pose: Pose

    def get(self, role: str) -> SynthSeries:
        """First stack with this role."""
        for s in self.series:
            if s.role == role:
                return s
        raise KeyError(f"study {self.index} has no {role!r} series; it has {[s.role for s in self.series]}")

    def label_id(self, name: str) -> int:
        """Label value of structure ``name`` in ``SynthSeries.labels``."""
        return self.label_names.index(name)


def _uid(seed: int, index: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=[f"spine_kp-synth:{seed}:{index}", *[str(p) for p in parts]])


def _meta(plan: StudyPlan, sp: SeriesPlan, study_uid: str, series_uid: str, index: int) -> SeriesMeta:
    seq = sp.sequence
    return SeriesMeta(
        study_uid=study_uid,
        series_uid=series_uid,
        series_number=sp.series_number,
        series_description=sp.description,
        protocol_name=sp.protocol,
        echo_time=round(seq.te, 2),
        repetition_time=round(seq.tr, 1),
        inversion_time=None if seq.ti is None else round(seq.ti, 1),
        patient_id=f"ANON{index:05d}",
        study_date=plan.study_date,
        bits_stored=sp.bits,
        rescale_slope=sp.slope,
        rescale_intercept=sp.intercept,
    )


def quantize(vol: np.ndarray, sp: SeriesPlan, ref: float | None = None) -> np.ndarray:
    """(N, H, W) magnitudes -> real-world values that the series' integer encoding represents exactly.

    ``ref`` (default: the 99.9th percentile, i.e. the brightest tissue) maps to ``sp.stored_max``; stored
    values are clipped to the BitsStored range and the returned values are ``stored * slope + intercept``.
    """
    if ref is None:
        ref = brightest(vol)
    stored = np.clip(np.rint(vol * (sp.stored_max / ref)), 0, 2**sp.bits - 1)
    return (stored * sp.slope + sp.intercept).astype(np.float32)


def brightest(vol: np.ndarray) -> float:
    """99.9th percentile of a (subsampled) volume: the reference for the integer scaling of a series."""
    step = max(1, int(math.sqrt(vol.size / 200_000)))
    return float(np.percentile(vol[:, ::step, ::step], 99.9)) or 1.0


def _sagittal_stacks(plan: StudyPlan, pose: Pose, anatomy: Anatomy, schema: Schema) -> dict[str, Stack]:
    """Slice stacks of the sagittal series: same slices and field of view, each with its own matrix."""
    oblique = rotation(2, plan.oblique[0]) @ rotation(1, plan.oblique[1])
    row_dir, col_dir = oblique @ SAGITTAL[0], oblique @ SAGITTAL[1]
    t2 = plan.series["t2_sag"]
    h, w = t2.shape
    sr = plan.fov / h
    sc = sr * plan.aniso  # square pixels unless the protocol is anisotropic
    middle = (plan.n_sag - 1) // 2
    centre = pose.to_patient(np.array([plan.midline_offset, 0.0, 0.0]))
    stack = Stack.around(centre, row_dir, col_dir, plan.n_sag, middle, plan.gap, (sr, sc), (h, w), plan.thickness)
    points = [landmark_point(anatomy, pose, stack, middle, n) for n in schema.landmarks]
    stack = fit_in_view(stack, middle, points, 0.08, plan.placement)
    out = {"t2_sag": stack}
    for role in ("t1_sag", "stir_sag"):
        hh, ww = plan.series[role].shape
        sp = (sr * h / hh, sc * w / ww)
        # same field of view (pixel edges aligned): move the top-left pixel centre by the half-pixel change
        move = (sp[0] - sr) / 2 * col_dir + (sp[1] - sc) / 2 * row_dir
        out[role] = Stack(row_dir, col_dir, stack.positions + move, sp, (hh, ww), plan.thickness)
    return out


def _render_stack(
    stack: Stack,
    pose: Pose,
    anatomy: Anatomy,
    plans: list[SeriesPlan],
    render_shape: tuple[int, int],
    lateral: float | None,
    label_ids: dict[str, int],
    bias: BiasField,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C, h, w) noise-free signal of every contrast in ``plans`` and (N, h, w) labels on the render grid."""
    n = len(stack.positions)
    signals = tissue_signals([p.sequence for p in plans], rng)
    px = stack.spacing[0] * stack.shape[0] / render_shape[0]
    gap = float(np.linalg.norm(stack.positions[-1] - stack.positions[0]) / max(n - 1, 1)) if n > 1 else 1e3
    tex = make_textures(rng, n, render_shape, px, gap if lateral is not None else 1e3)
    imgs = np.empty((n, len(plans), *render_shape), dtype=np.float32)
    labels = np.empty((n, *render_shape), dtype=np.int16)
    for j in range(n):
        imgs[j], labels[j] = render_plane(stack.grid(pose, j, render_shape, lateral), anatomy, signals, tex[j],
                                          label_ids, bias)  # fmt: skip
    return imgs, labels


def _render_shape(stack: Stack, acq_px: float, cap: tuple[int, int]) -> tuple[int, int]:
    h = min(cap[0], max(16, int(round(stack.spacing[0] * stack.shape[0] / acq_px))))
    w = min(cap[1], max(16, int(round(stack.spacing[1] * stack.shape[1] / acq_px))))
    return h, w


def _acquired(imgs: np.ndarray, c: int, sp: SeriesPlan, signals_ref: float, rng: np.random.Generator,
              shape: tuple[int, int], scale_ref: float | None = None) -> np.ndarray:  # fmt: skip
    vol = acquire(imgs[:, c], np.float32(signals_ref / sp.snr), rng, shape)
    return quantize(vol, sp, scale_ref)


def make_study(seed: int, index: int, *, schema: Schema | None = None, options: SynthOptions | None = None) -> SynthStudy:
    """Build phantom study ``index`` of the data set seeded ``seed``, entirely in memory.

    Args:
        seed: data-set seed.
        index: study number; its randomness comes from ``(seed, index)`` only.
        schema: landmark schema (default: the packaged one); every landmark must be a drawn structure.
        options: size and content knobs.

    Returns:
        The study: series (pixels as stored, geometry, tags, UIDs, label maps), annotation record, grades.

    Raises:
        ValueError: the schema names a landmark or kind the phantom cannot draw.
    """
    schema = schema or load_schema()
    options = options or SynthOptions()
    r_grade, r_anat, r_plan, r_render, r_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(index)]).spawn(5)
    )
    grades = sample_grades(r_grade, schema)
    disc_looks, vertebra_looks = looks_for(r_grade, schema, grades)
    anatomy = sample_anatomy(r_anat, disc_looks, vertebra_looks)
    drawn = anatomy.names()
    for name in schema.landmarks:
        if name not in drawn:
            raise ValueError(f"synth: schema landmark {name!r} is not drawn by the phantom (it draws {drawn})")
    plan = sample_plan(r_plan, index, options.size, options.tricky)
    pose = Pose.make(plan.roll, plan.coronal_tilt, plan.offset)
    label_names = ("", *schema.landmarks, *[n for n in drawn if n not in schema.landmarks])
    label_ids = {n: i for i, n in enumerate(label_names) if n}
    study_uid = _uid(seed, index, "study")
    bias = BiasField(*plan.bias, phase=float(r_render.uniform(0.0, 2 * math.pi)))

    # sagittal series: one render for the three contrasts, then each series' noise and matrix
    stacks = _sagittal_stacks(plan, pose, anatomy, schema)
    plans = [plan.series[r] for r in SAGITTAL_ROLES]
    cap = tuple(min(stacks[r].shape[k] for r in SAGITTAL_ROLES) for k in (0, 1))
    rshape = _render_shape(stacks["t2_sag"], plan.acq_px, cap)  # type: ignore[arg-type]
    imgs, labels = _render_stack(stacks["t2_sag"], pose, anatomy, plans, rshape, plan.thickness, label_ids, bias,
                                 r_render)  # fmt: skip
    refs = tissue_signals([p.sequence for p in plans])
    series: list[SynthSeries] = []
    uids = {role: _uid(seed, index, "series", role) for role in (*SAGITTAL_ROLES, "t2_ax")}
    for c, role in enumerate(SAGITTAL_ROLES):
        st, sp = stacks[role], plan.series[role]
        ref = float(max(refs["csf"][c], refs["fat"][c]))
        pixels = _acquired(imgs, c, sp, ref, r_noise, st.shape)
        ri, ci = nearest_index(rshape[0], st.shape[0]), nearest_index(rshape[1], st.shape[1])
        n = len(st.positions)
        reverse = ("reversed_instance_numbers" in plan.tricky) if role == "t2_sag" else bool(r_plan.random() < 0.3)
        numbers = tuple(range(n, 0, -1)) if reverse else tuple(range(1, n + 1))
        series.append(
            SynthSeries(
                role=role,
                pixels=pixels,
                geometry=SeriesGeometry(st.orientation, st.positions, st.spacing, plan.thickness),
                meta=_meta(plan, sp, study_uid, uids[role], index),
                sop_uids=tuple(_uid(seed, index, "sop", role, j) for j in range(n)),
                instance_numbers=numbers,
                transfer_syntax=sp.transfer_syntax,
                labels=labels[:, ri][:, :, ci],
            )
        )
    t2 = series[0]
    if "scout_in_series" in plan.tricky:
        series.append(_scout(seed, index, plan, pose, anatomy, t2, label_ids, bias, r_render, r_noise))
    if options.axial:
        series.extend(_axial(seed, index, plan, pose, anatomy, study_uid, uids["t2_ax"], bias, r_render, r_noise))

    n = len(stacks["t2_sag"].positions)
    annotated = int(np.clip((n - 1) // 2 + plan.annotated_shift, 0, n - 1))
    record = _record(schema, anatomy, pose, stacks["t2_sag"], annotated, t2, grades, plan, options, r_plan)
    return SynthStudy(
        index=index,
        seed=seed,
        study_uid=study_uid,
        folder=f"study{index:04d}",
        series=tuple(series),
        record=record,
        grades=grades,
        label_names=label_names,
        annotated_index=annotated,
        plan=plan,
        anatomy=anatomy,
        pose=pose,
    )


def _record(
    schema: Schema,
    anatomy: Anatomy,
    pose: Pose,
    stack: Stack,
    j: int,
    t2: SynthSeries,
    grades: dict[str, tuple[str, ...]],
    plan: StudyPlan,
    options: SynthOptions,
    rng: np.random.Generator,
) -> StudyRecord:
    """Annotation of the T2 sagittal slice ``j``: every landmark at its structure's centre on that slice."""
    points = []
    for name in schema.landmarks:
        x, y = stack.to_pixel(j, landmark_point(anatomy, pose, stack, j, name))
        labels = grades[name]
        if options.empty_grade_rate > 0 and rng.random() < options.empty_grade_rate:
            labels = ()
        points.append(Point(name, schema.kind_of(name), (round(x, 3), round(y, 3)), labels, z_index=j))
    image = ImageAnnotation(
        series_uid=t2.meta.series_uid,
        instance_uid=t2.sop_uids[j],
        points=tuple(points),
        annotator=plan.annotator,
        pixel_spacing=(float(stack.spacing[0]), float(stack.spacing[1])),
    )
    return StudyRecord(study_uid=t2.meta.study_uid, images=(image,))


def _scout(
    seed: int, index: int, plan: StudyPlan, pose: Pose, anatomy: Anatomy, t2: SynthSeries,
    label_ids: dict[str, int], bias: BiasField, r_render: np.random.Generator, r_noise: np.random.Generator,
) -> SynthSeries:  # fmt: skip
    """A coronal localiser filed inside the T2 sagittal series (same SeriesInstanceUID and description)."""
    size = max(64, t2.pixels.shape[1] // 2)
    sp = 420.0 / size
    centre = pose.to_patient(np.zeros(3))
    stack = Stack.around(centre, CORONAL[0], CORONAL[1], 1, 0, 1.0, (sp, sp), (size, size), 8.0)
    t2p = plan.series["t2_sag"]
    rshape = _render_shape(stack, 2.0, (size, size))
    imgs, _ = _render_stack(stack, pose, anatomy, [t2p], rshape, None, label_ids, bias, r_render)
    ref = float(tissue_signals([t2p.sequence])["csf"][0])
    pixels = _acquired(imgs, 0, t2p, ref, r_noise, (size, size))
    n = len(t2.sop_uids)
    return SynthSeries(
        role="scout",
        pixels=pixels,
        geometry=SeriesGeometry(stack.orientation, stack.positions, (sp, sp), 8.0),
        meta=t2.meta,
        sop_uids=(_uid(seed, index, "sop", "scout"),),
        instance_numbers=(n + 1,),
        transfer_syntax=t2.transfer_syntax,
    )


def _axial(
    seed: int, index: int, plan: StudyPlan, pose: Pose, anatomy: Anatomy, study_uid: str, series_uid: str,
    bias: BiasField, r_render: np.random.Generator, r_noise: np.random.Generator,
) -> list[SynthSeries]:  # fmt: skip
    """T2 axial blocks of three slices, each angled along one of the three lowest discs (one series)."""
    sp = plan.series["t2_ax"]
    rows = sp.shape[0]
    fov = float(r_render.uniform(180.0, 220.0))
    spacing = (fov / rows, fov / rows)
    meta = _meta(plan, sp, study_uid, series_uid, index)
    ref = float(tissue_signals([sp.sequence])["csf"][0])
    ex = np.array([1.0, 0.0, 0.0])
    out: list[SynthSeries] = []
    number = 1
    scale_ref = None
    for b, disc in enumerate([d for d in anatomy.discs if not d.fused][-3:]):
        normal = pose.matrix @ np.array([0.0, *disc.frame.up])
        normal /= np.linalg.norm(normal)
        row = ex - (ex @ normal) * normal
        row /= np.linalg.norm(row)
        col = np.cross(normal, row)
        centre = pose.to_patient(np.array([0.0, *disc.frame.point(0.6 * disc.half_depth, 0.0)]))
        stack = Stack.around(centre, row, col, 3, 1, 4.5, spacing, sp.shape, 4.0)
        rshape = _render_shape(stack, plan.acq_px, sp.shape)
        imgs, _ = _render_stack(stack, pose, anatomy, [sp], rshape, None, {}, bias, r_render)
        vol = acquire(imgs[:, 0], np.float32(ref / sp.snr), r_noise, sp.shape)
        scale_ref = scale_ref or brightest(vol)  # one integer scaling for the whole series
        pixels = quantize(vol, sp, scale_ref)
        out.append(
            SynthSeries(
                role="t2_ax",
                pixels=pixels,
                geometry=SeriesGeometry(stack.orientation, stack.positions, spacing, 4.0),
                meta=meta,
                sop_uids=tuple(_uid(seed, index, "sop", "t2_ax", b, j) for j in range(3)),
                instance_numbers=tuple(range(number, number + 3)),
                transfer_syntax=sp.transfer_syntax,
            )
        )
        number += 3
    return out
