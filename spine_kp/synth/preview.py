"""Preview montage of a phantom data set: annotated T2 slices with landmarks and grades, T1/STIR of study 0."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spine_kp.io.atomic import atomic_output
from spine_kp.schema import Schema, load_schema
from spine_kp.types import StudyRecord

# one colour per kind, in the order kinds first appear
_COLOURS = ("#ff5050", "#40d0ff", "#ffd040", "#80ff80")


def _window(img: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(img[::2, ::2], (1.0, 99.5))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def save_preview(
    path: Path,
    records: Sequence[StudyRecord],
    previews: Sequence[dict[str, np.ndarray] | None],
    schema: Schema | None = None,
) -> Path:
    """Save a PNG montage.

    Args:
        path: PNG to write (atomically).
        records: annotation record per study.
        previews: per study None or {"t2": (H, W) annotated T2 slice, optional "t1_sag"/"stir_sag": (H, W)}.
        schema: the records' schema (default: packaged); grades whose meaning is not ``normal`` are highlighted.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    schema = schema or load_schema()
    panels: list[tuple[str, np.ndarray, StudyRecord | None]] = []
    for i, (rec, prev) in enumerate(zip(records, previews)):
        if prev is not None and "t2" in prev:
            z = rec.primary.points[0].z_index if rec.primary and rec.primary.points else None
            panels.append((f"study {i}: T2 sag, z={z}", prev["t2"], rec))
    first = previews[0] if previews else None
    for role, title in (("t1_sag", "T1 sag"), ("stir_sag", "STIR sag")):
        if first is not None and role in first:
            panels.append((f"study 0: {title} (middle)", first[role], None))
    cols = min(5, max(1, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 4.0 * rows), squeeze=False)
    kinds: list[str] = []
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (title, img, rec) in zip(axes.ravel(), panels):
        lo, hi = _window(img)
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear")
        ax.set_title(title, fontsize=8)
        if rec is None or rec.primary is None:
            continue
        for p in rec.primary.points:
            if p.kind not in kinds:
                kinds.append(p.kind)
            colour = _COLOURS[kinds.index(p.kind) % len(_COLOURS)]
            abnormal = any(schema.grade_meaning(p.kind, g) != "normal" for g in p.grades)
            ax.plot(*p.coord, "o", ms=3, color=colour)
            ax.text(p.coord[0] + 0.03 * img.shape[1], p.coord[1], f"{p.identification} {','.join(p.grades)}",
                    fontsize=5.5, color="#ffff60" if abnormal else "white",
                    fontweight="bold" if abnormal else "normal")  # fmt: skip
    fig.suptitle("spine_kp phantom: landmarks (dots by kind), grades (yellow = abnormal)", fontsize=9)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return Path(path)
