"""Phantom lumbar MRI studies in memory: series volumes, DICOM geometry/tags, label maps and annotations.

:func:`make_study` builds study ``index`` of a data set with seed ``seed``: a T2 sagittal (11-17 slices), a
T1 sagittal and a fat-suppressed T2 (STIR) sagittal sharing its slice positions, and T2 axial blocks through
the lowest discs, plus the study's tricky cases. Everything is drawn from generators seeded by
``(seed, index)``, so a study is byte-identical across runs and independent of how many studies are made.
Landmarks are the schema's, placed at the exact centre of the drawn structure on the annotated slice.
:func:`~spine_kp.synth.write.make_dataset` writes studies as DICOM folders plus ``annotations.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from spine_kp.schema import Schema, load_schema
from spine_kp.synth.acquire import NoisePool, acquired, axial, render_planes, render_shape, scout
from spine_kp.synth.anatomy import Anatomy
from spine_kp.synth.dicom_write import SeriesGeometry
from spine_kp.synth.grades import looks_for, sample_grades
from spine_kp.synth.layout import SAGITTAL, Stack, fit_in_view, landmark_point, rotation
from spine_kp.synth.phantom import BiasField, Pose, nearest_index, tissue_signals
from spine_kp.synth.plan import StudyPlan, randomize_plan, sample_plan
from spine_kp.synth.sample import sample_anatomy
from spine_kp.synth.study_types import SynthOptions, SynthSeries, SynthStudy, series_meta, synth_uid
from spine_kp.types import ImageAnnotation, Point, StudyRecord

SAGITTAL_ROLES = ("t2_sag", "t1_sag", "stir_sag")


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


def make_study(
    seed: int,
    index: int,
    *,
    schema: Schema | None = None,
    options: SynthOptions | None = None,
    grades: Mapping[str, Sequence[str]] | None = None,
) -> SynthStudy:
    """Build phantom study ``index`` of the data set seeded ``seed``, entirely in memory.

    Long on purpose: its random draws happen in one fixed order that pins every default phantom byte for byte
    (tests/synth); split into helpers, that order would be hard to see.

    Args:
        seed: data-set seed.
        index: study number; its randomness comes from ``(seed, index)`` only.
        schema: landmark schema (default: the packaged one); every landmark must be a drawn structure.
        options: size and content knobs.
        grades: force the grade labels of some landmarks (e.g. ``{"L4-L5": ("v6",)}``). Protocol, noise and
            the other structures' looks stay those of ``(seed, index)``; only the forced structures change
            (and, as in reality, a thinner degenerated disc moves the levels below it).

    Returns:
        The study: series (pixels as stored, geometry, tags, UIDs, label maps), annotation record, grades.

    Raises:
        ValueError: the schema names a landmark or kind the phantom cannot draw, or ``grades`` names an unknown
            landmark or label.
    """
    schema = schema or load_schema()
    options = options or SynthOptions()
    grades_arg = grades
    r_grade, r_anat, r_plan, r_render, r_noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(index)]).spawn(5)
    )
    grades = sample_grades(r_grade, schema)
    for name, labels in dict(grades_arg or {}).items():
        if not schema.has(name):
            raise ValueError(f"synth: grades names unknown landmark {name!r}; schema has {schema.landmarks}")
        bad = [g for g in labels if g not in schema.grades_of(name)]
        if bad:
            raise ValueError(f"synth: grades for {name!r} has unknown label(s) {bad}; valid {schema.grades_of(name)}")
        grades[name] = tuple(g for g in schema.grades_of(name) if g in labels)
    disc_looks, vertebra_looks = looks_for(r_grade, schema, grades)
    anatomy = sample_anatomy(r_anat, disc_looks, vertebra_looks)
    drawn = anatomy.names()
    for name in schema.landmarks:
        if name not in drawn:
            raise ValueError(f"synth: schema landmark {name!r} is not drawn by the phantom (it draws {drawn})")
    plan = sample_plan(r_plan, index, options.size, options.tricky)
    if options.randomize:
        plan = randomize_plan(r_plan, plan)
    pose = Pose.make(plan.roll, plan.coronal_tilt, plan.offset)
    label_names = ("", *schema.landmarks, *[n for n in drawn if n not in schema.landmarks])
    label_ids = {n: i for i, n in enumerate(label_names) if n}
    study_uid = synth_uid(seed, index, "study")
    bias = BiasField(*plan.bias, phase=float(r_render.uniform(0.0, 2 * math.pi)))

    # sagittal series: one render for the three contrasts, then each series' noise and matrix
    stacks = _sagittal_stacks(plan, pose, anatomy, schema)
    plans = [plan.series[r] for r in SAGITTAL_ROLES]
    cap = tuple(min(stacks[r].shape[k] for r in SAGITTAL_ROLES) for k in (0, 1))
    rshape = render_shape(stacks["t2_sag"], plan.acq_px, cap)  # type: ignore[arg-type]
    t2_stack = stacks["t2_sag"]
    grids = [t2_stack.grid(pose, j, rshape, plan.thickness) for j in range(len(t2_stack.positions))]
    imgs, labels = render_planes(grids, anatomy, plans, plan.gap, label_ids, bias, r_render)
    noise = NoisePool(r_noise, (imgs.shape[0], *imgs.shape[2:]))
    refs = tissue_signals([p.sequence for p in plans])
    series: list[SynthSeries] = []
    uids = {role: synth_uid(seed, index, "series", role) for role in (*SAGITTAL_ROLES, "t2_ax")}
    for c, role in enumerate(SAGITTAL_ROLES):
        st, sp = stacks[role], plan.series[role]
        ref = float(max(refs["csf"][c], refs["fat"][c]))
        pixels = acquired(imgs, c, sp, ref, noise, st.shape)
        ri, ci = nearest_index(rshape[0], st.shape[0]), nearest_index(rshape[1], st.shape[1])
        n = len(st.positions)
        reverse = ("reversed_instance_numbers" in plan.tricky) if role == "t2_sag" else bool(r_plan.random() < 0.3)
        numbers = tuple(range(n, 0, -1)) if reverse else tuple(range(1, n + 1))
        series.append(
            SynthSeries(
                role=role,
                pixels=pixels,
                geometry=SeriesGeometry(st.orientation, st.positions, st.spacing, plan.thickness),
                meta=series_meta(plan, sp, study_uid, uids[role], index),
                sop_uids=tuple(synth_uid(seed, index, "sop", role, j) for j in range(n)),
                instance_numbers=numbers,
                transfer_syntax=sp.transfer_syntax,
                labels=labels[:, ri][:, :, ci],
            )
        )
    t2 = series[0]
    if "scout_in_series" in plan.tricky:
        series.append(scout(seed, index, plan, pose, anatomy, t2, label_ids, bias, r_render, r_noise))
    if options.axial:
        series.extend(axial(seed, index, plan, pose, anatomy, study_uid, uids["t2_ax"], bias, r_render, r_noise))

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
