"""Overlay PNGs: the predicted slice with landmarks, identifications, grades and scores drawn legibly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spine_kp.inference.records import chosen_grades
from spine_kp.inference.slice_predictor import SlicePrediction
from spine_kp.io.atomic import atomic_output
from spine_kp.io.names import study_file_stems
from spine_kp.schema import Schema

_KIND_COLOURS = ("#ffcc00", "#00e5ff", "#ff5cf0", "#7dff6b")


def overlay_label(pred: SlicePrediction, schema: Schema, name: str) -> str | None:
    """The text drawn beside landmark ``name``: its confident grades (the most probable; for a multi-label kind also
    every grade with p >= 0.5), its best score, and ``+N alt`` when the record also carries N alternative grades
    (``top_k_grades``); None when the record has no point of it."""
    points = [p for p in pred.record.points if p.identification == name]
    if not points:
        return None
    best = max(points, key=lambda p: p.score or 0.0)
    kind = schema.kind_of(name)
    spec = schema.kind(kind)
    row = pred.grade_probs[kind][schema.landmarks_of_kind(kind).index(name)]
    confident = [spec.grades[i] for i in chosen_grades(row, spec.multi_label) if row[i] > 0]  # none: ungraded
    alternatives = len({g for p in points for g in p.grades} - set(confident))
    text = " ".join([name, *(["/".join(confident)] if confident else []), f"{best.score:.2f}"])
    return text + (f" +{alternatives} alt" if alternatives else "")


def draw_overlay(pred: SlicePrediction, schema: Schema, path: str | Path, dpi: int = 110) -> Path:
    """Save one overlay PNG (atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = np.asarray(pred.slice.pixels, dtype=np.float32)
    lo, hi = np.percentile(img, (0.5, 99.5))
    h, w = img.shape
    fig = plt.figure(figsize=(max(4.0, 7.0 * w / h), 7.0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    colours = {k.name: _KIND_COLOURS[i % len(_KIND_COLOURS)] for i, k in enumerate(schema.kinds)}
    for k, name in enumerate(schema.landmarks):
        label = overlay_label(pred, schema, name)
        if label is None:
            continue
        x, y = (float(v) for v in pred.coords[k])
        colour = colours[schema.landmark_kinds[k]]
        ax.plot(x, y, "+", color=colour, markersize=12, markeredgewidth=2)
        ax.text(
            x + w * 0.03,
            y,
            label,
            color=colour,
            fontsize=9,
            va="center",
            bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.5, "edgecolor": "none"},
        )
    s = pred.slice
    ax.text(
        4,
        8,
        f"{s.study_uid[-24:]}  z={s.z_index}/{s.num_slices}  {s.series_description}",
        color="white",
        fontsize=8,
        va="top",
        bbox={"facecolor": "black", "alpha": 0.55, "pad": 1.5, "edgecolor": "none"},
    )
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.axis("off")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)
    return Path(path)


def overlay_names(predictions: Sequence[SlicePrediction]) -> dict[str, str]:
    """Study UID -> the overlay's file name, ``<stem>.png`` (:mod:`spine_kp.io.names`: distinct per study)."""
    stems = study_file_stems(p.slice.study_uid for p in predictions)
    return {uid: f"{stem}.png" for uid, stem in stems.items()}


def write_overlays(predictions: Sequence[SlicePrediction], schema: Schema, out_dir: str | Path) -> list[Path]:
    """One ``<study uid>.png`` per study in ``out_dir`` (see :func:`overlay_names`); returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = overlay_names(predictions)
    return [draw_overlay(pred, schema, out / names[pred.slice.study_uid]) for pred in predictions]
