"""Human-readable output of an :class:`EvaluationResult`: text/markdown tables, JSON, PR-curve, error and reliability
plots.

matplotlib is imported only when plotting, and through its object API (``Figure``), so no global backend state
is touched. Every file is written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from spine_kp.calibration.metrics import Reliability
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.io.atomic import atomic_output, atomic_write_text
from spine_kp.io.text import escape_unencodable

if TYPE_CHECKING:
    from matplotlib.axes import Axes

UNDEFINED = "-"
MAX_LISTED = 20  # studies named in the tables before "... and N more"


def _num(v: float | None, digits: int = 3) -> str:
    return UNDEFINED if v is None else f"{v:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def _studies(label: str, uids: Sequence[str]) -> str:
    shown = ", ".join(uids[:MAX_LISTED])
    more = f" ... and {len(uids) - MAX_LISTED} more" if len(uids) > MAX_LISTED else ""
    return f"{label} ({len(uids)}): {shown}{more}"


def _calibration_lines(result: EvaluationResult, markdown: bool) -> list[str]:
    if not result.calibration:
        return []
    rows = [[c.name, str(c.n), _num(c.ece, 4), _num(c.brier, 4)] for c in result.calibration]
    head = "## " if markdown else ""
    return [
        "",
        f"{head}Calibration of the scores (every counted point and class at r = {result.radius:g} mm: score vs TP;"
        f" ECE over {result.calibration[0].counts.size} equal-width bins)",
        "",
        _table(["kind", "points", "ECE", "Brier"], rows, markdown),
    ]


def _data_check_lines(result: EvaluationResult, markdown: bool) -> list[str]:
    """Counts of both files' findings against the data root's images, then the first findings of each file."""
    checks = result.data_checks
    if checks is None:
        return []
    rows = [
        [name, str(len(c.outside)), str(len(c.beyond)), str(len(c.not_found))]
        for name, c in (("annotations", checks.annotations), ("predictions", checks.predictions))
    ]
    head = "## " if markdown else ""
    out = [
        "",
        f"{head}Checks against the data root (counted, no score changed): {checks.count} finding(s)",
        "",
        _table(
            ["file", "points outside their image", "zIndex beyond the series", "images not in data"],
            rows,
            markdown,
        ),
    ]
    for name, c in (("annotations", checks.annotations), ("predictions", checks.predictions)):
        if c.problems:
            more = len(c.problems) - MAX_LISTED
            out += ["", f"{name}:", "", *(f"- {line}" for line in c.problems[:MAX_LISTED])]
            out += [f"- ... and {more} more"] if more > 0 else []
    return out


def format_result(result: EvaluationResult, markdown: bool = False) -> str:
    """The per-class table, mAP, the two F1 figures at 6 mm, the localization and calibration tables, and the checks
    against the data root (when one was given) as text."""
    r = result
    cls_rows = [
        [
            c.name,
            str(c.n_gt),
            str(c.tp),
            str(c.fp),
            str(c.fn),
            str(c.ignored),
            _num(c.precision),
            _num(c.recall),
            _num(c.ap),
        ]
        for c in r.classes
    ]
    loc = r.localization
    loc_rows = [
        [
            s.identification,
            str(s.count),
            str(s.never_predicted),
            _num(s.mean, 2),
            _num(s.median, 2),
            _num(s.p95, 2),
            _num(s.within_radius),
        ]
        for s in (*loc.per_identification, loc.overall)
    ]
    head = "## " if markdown else ""
    out = [
        f"{head}Grading (r = {r.radius:g} mm, {'same identification only' if r.match_level else 'any identification'},"
        f" {r.n_studies} studies{f', schema {r.schema}' if r.schema else ''})",
        "",
        _table(["class", "GT", "TP", "FP", "FN", "ignored", "precision", "recall", "AP"], cls_rows, markdown),
        "",
        f"mAP over {len(r.defined_classes)} classes with ground truth: {_num(r.map, 4)}"
        + (f" (undefined, left out: {', '.join(r.undefined_classes)})" if r.undefined_classes else ""),
        f"support-weighted F1 at {r.f1_radius:g} mm, one prediction per landmark (competition): {_num(r.f1_6mm, 4)}",
        *(
            [
                f"baseline macro F1 at {r.baseline.radius:g} mm (rules of the competition baseline: top grade of one"
                f" prediction per identification, {len(r.baseline.classes)} classes): {_num(r.baseline.macro_f1, 4)}"
            ]
            if r.baseline is not None
            else []
        ),
        "",
        f"{head}Localization (best-scored prediction of the same identification)",
        "",
        _table(
            ["identification", "n", "never predicted", "mean mm", "median mm", "p95 mm", f"<= {r.radius:g} mm"],
            loc_rows,
            markdown,
        ),
        *_calibration_lines(r, markdown),
        *_data_check_lines(r, markdown),
    ]
    if r.missing_studies:
        out += ["", _studies("studies without predictions (all ground truth counted FN)", r.missing_studies)]
    if r.unknown_studies:
        out += ["", _studies("predicted studies not in the ground truth (ignored)", r.unknown_studies)]
    out += ["", f"{UNDEFINED} = undefined (zero denominator, or no ground truth for AP)"]
    return "\n".join(out) + "\n"


def to_json(result: EvaluationResult) -> str:
    """``result.to_dict()`` as JSON text (undefined values are null)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


def _save(fig: object, path: Path) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)  # type: ignore[attr-defined]


#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("metrics.json", "report.md", "pr_curves.png", "errors.png", "reliability.png")


def plot_pr_curves(result: EvaluationResult, path: str | Path) -> Path:
    """One panel per class: raw operating points and the interpolated precision envelope AP integrates."""
    from matplotlib.figure import Figure

    n = len(result.classes)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(3.2 * cols, 3.0 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, c in zip(axes, result.classes):
        ax.set_title(f"{c.name}  AP {_num(c.ap)}", fontsize=9)
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
    ax.set_title(f"{rel.name}: ECE {_num(rel.ece)}, Brier {_num(rel.brier)}, {rel.n} points", fontsize=9)
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


def write_report(result: EvaluationResult, out_dir: str | Path) -> dict[str, Path]:
    """Write ``metrics.json``, ``report.md``, ``pr_curves.png``, ``errors.png`` and ``reliability.png`` into
    ``out_dir`` (atomically).

    Returns:
        file name -> path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = "# spine_kp evaluation\n\n" + format_result(result, markdown=True)
    md += "\n![precision-recall curves](pr_curves.png)\n\n![localization errors](errors.png)\n"
    md += "\n![reliability of the scores](reliability.png)\n"
    return {
        "metrics.json": atomic_write_text(out / "metrics.json", to_json(result)),
        "report.md": atomic_write_text(out / "report.md", escape_unencodable(md)),  # a UID may hold a lone surrogate
        "pr_curves.png": plot_pr_curves(result, out / "pr_curves.png"),
        "errors.png": plot_errors(result, out / "errors.png"),
        "reliability.png": plot_reliability(result, out / "reliability.png"),
    }
