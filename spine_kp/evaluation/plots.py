"""Figures of an :class:`~spine_kp.evaluation.result.EvaluationResult`: PR curves, localization errors, reliability.

matplotlib is imported only when plotting, and through its object API (``Figure``), so no global backend state
is touched. Every PNG is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spine_kp.calibration.metrics import Reliability
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.evaluation.tables import format_number
from spine_kp.io.atomic import atomic_output

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _save(fig: object, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)  # type: ignore[attr-defined]


def plot_pr_curves(result: EvaluationResult, path: str | Path) -> Path:
    """One panel per class: raw operating points and the interpolated precision envelope AP integrates."""
    from matplotlib.figure import Figure

    n = len(result.classes)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, c in zip(axes, result.classes):
        ax.set_title(f"{c.name}  AP {format_number(c.ap)}", fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.tick_params(labelsize=7)
        recall, precision = result.curves.get(c.name, (np.zeros(0), np.zeros(0)))
        if not c.defined:
            ax.text(0.5, 0.5, "no ground truth\n(undefined)", ha="center", va="center", fontsize=8)
        elif recall.size == 0:
            ax.text(0.5, 0.5, f"no counted predictions\n({c.n_gt} ground truth)", ha="center", va="center", fontsize=8)
        elif c.tp == 0:
            ax.text(
                0.5, 0.5, f"no true positive\n({c.fp} FP, {c.n_gt} ground truth)", ha="center", va="center", fontsize=8
            )
        else:
            envelope = np.maximum.accumulate(precision[::-1])[::-1]
            ax.plot(recall, precision, ".", ms=3, alpha=0.5, color="tab:orange", label="operating points")
            ax.step(
                np.r_[0.0, recall], np.r_[envelope[0], envelope], where="pre", color="tab:blue", label="interpolated"
            )
            ax.legend(fontsize=6, loc="lower left")
    for ax in axes[n:]:
        ax.set_visible(False)
    _save(fig, Path(path))
    return Path(path)


def plot_errors(result: EvaluationResult, path: str | Path) -> Path:
    """Histogram of all localization errors and a box plot per identification (radius as a dashed line).

    Far outliers (a landmark predicted at the wrong end of the spine) would squash the useful range, so both panels
    stop at ``max(3 r, 1.5 * p95)``; errors beyond fall into the histogram's last bin and are counted in the titles.
    """
    from matplotlib.figure import Figure

    names = [n for n, e in result.errors.items() if np.isfinite(e).any()]
    found = [result.errors[n][np.isfinite(result.errors[n])] for n in names]
    fig = Figure(figsize=(11, 4), layout="constrained")
    ax_h, ax_b = fig.subplots(1, 2, width_ratios=[1, 1.6])
    r = result.radius
    never = result.localization.overall.never_predicted
    beyond = 0
    if found:
        all_e = np.concatenate(found)
        hi = max(3 * r, 1.5 * float(np.percentile(all_e, 95)))
        beyond = int((all_e > hi).sum())
        ax_h.hist(np.minimum(all_e, hi), bins=np.linspace(0, hi, 41), color="tab:blue")
        ax_h.set_xlim(0, hi)
        ax_b.boxplot(found, showfliers=True)
        ax_b.set_xticks(range(1, len(names) + 1), names)  # not boxplot(labels=...): renamed in matplotlib 3.9
        ax_b.set_ylim(0, hi)
    else:
        ax_h.text(0.5, 0.5, "no landmark predicted", ha="center", va="center", transform=ax_h.transAxes)
    ax_h.axvline(r, color="tab:red", ls="--", label=f"r = {r:g} mm")
    ax_h.set_title(f"localization error: {never} never predicted, {beyond} beyond the axis (last bin)", fontsize=9)
    ax_h.set_xlabel("error (mm)")
    ax_h.set_ylabel("landmarks")
    ax_h.legend(fontsize=8)
    ax_b.axhline(r, color="tab:red", ls="--")
    ax_b.set_title(f"error per identification ({beyond} beyond the axis not drawn)", fontsize=9)
    ax_b.set_ylabel("error (mm)")
    ax_b.tick_params(axis="x", labelrotation=45, labelsize=8)
    _save(fig, Path(path))
    return Path(path)


def _reliability_panel(ax: Axes, ax_n: Axes, rel: Reliability) -> None:
    """Top: share of TPs per score bin (bars), the bins' mean score (dots) and the diagonal; bottom: points per bin."""
    edges, used = rel.edges, rel.counts > 0
    width = np.diff(edges)
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfect")
    ax.bar(edges[:-1][used], rel.accuracy[used], width=width[used], align="edge", alpha=0.7, label="TP share")
    ax.plot(rel.confidence[used], rel.accuracy[used], "o", ms=3, color="tab:orange", label="mean score")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("share of TP", fontsize=8)
    ax.set_title(
        f"{rel.name}: ECE {format_number(rel.ece)}, Brier {format_number(rel.brier)}, {rel.n} points", fontsize=9
    )
    ax.tick_params(labelsize=7)
    if rel.n:
        ax.legend(fontsize=6, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no counted prediction", ha="center", va="center", fontsize=8)
    ax_n.bar(edges[:-1], rel.counts, width=width, align="edge", color="gray")
    ax_n.set_xlabel("score", fontsize=8)
    ax_n.set_ylabel("points", fontsize=8)
    ax_n.tick_params(labelsize=7)


def plot_reliability(result: EvaluationResult, path: str | Path) -> Path:
    """Reliability diagram per kind and for all points: share of TPs per score bin against the diagonal, and the
    number of points per bin below (see :mod:`spine_kp.calibration.metrics`)."""
    from matplotlib.figure import Figure

    rels = result.calibration
    fig = Figure(figsize=(3.4 * max(1, len(rels)), 4.6), layout="constrained")
    axes = fig.subplots(2, max(1, len(rels)), squeeze=False, height_ratios=[3, 1], sharex="col")
    for i, rel in enumerate(rels):
        _reliability_panel(axes[0, i], axes[1, i], rel)
    if not rels:
        axes[0, 0].text(0.5, 0.5, "no calibration figures", ha="center", va="center")
    _save(fig, Path(path))
    return Path(path)


__all__ = ["plot_errors", "plot_pr_curves", "plot_reliability"]
