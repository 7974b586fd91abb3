"""An :class:`~spine_kp.evaluation.result.EvaluationResult` as text or markdown tables: overall and per-class
figures, levels, calibration, data checks, and the studies behind them. Undefined values print as :data:`UNDEFINED`.
"""

from __future__ import annotations

from collections.abc import Sequence

from spine_kp.evaluation.result import EvaluationResult

UNDEFINED = "-"
MAX_LISTED = 20  # studies named in the tables before "... and N more"


def format_number(v: float | None, digits: int = 3) -> str:
    """``v`` with ``digits`` decimals; :data:`UNDEFINED` for None (a zero denominator, or no ground truth)."""
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


def _localization_lines(result: EvaluationResult, markdown: bool) -> list[str]:
    """Localization error per identification and overall: counts, never predicted, mean/median/p95, within r."""
    loc = result.localization
    rows = [
        [
            s.identification,
            str(s.count),
            str(s.never_predicted),
            format_number(s.mean, 2),
            format_number(s.median, 2),
            format_number(s.p95, 2),
            format_number(s.within_radius),
        ]
        for s in (*loc.per_identification, loc.overall)
    ]
    head = "## " if markdown else ""
    return [
        "",
        f"{head}Localization (best-scored prediction of the same identification)",
        "",
        _table(
            ["identification", "n", "never predicted", "mean mm", "median mm", "p95 mm", f"<= {result.radius:g} mm"],
            rows,
            markdown,
        ),
    ]


def _calibration_lines(result: EvaluationResult, markdown: bool) -> list[str]:
    if not result.calibration:
        return []
    rows = [[c.name, str(c.n), format_number(c.ece, 4), format_number(c.brier, 4)] for c in result.calibration]
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
            format_number(c.precision),
            format_number(c.recall),
            format_number(c.ap),
        ]
        for c in r.classes
    ]
    head = "## " if markdown else ""
    out = [
        f"{head}Grading (r = {r.radius:g} mm, {'same identification only' if r.match_level else 'any identification'},"
        f" {r.n_studies} studies{f', schema {r.schema}' if r.schema else ''})",
        "",
        _table(["class", "GT", "TP", "FP", "FN", "ignored", "precision", "recall", "AP"], cls_rows, markdown),
        "",
        f"mAP over {len(r.defined_classes)} classes with ground truth: {format_number(r.map, 4)}"
        + (f" (undefined, left out: {', '.join(r.undefined_classes)})" if r.undefined_classes else ""),
        f"support-weighted F1 at {r.f1_radius:g} mm, one prediction per landmark (competition): "
        f"{format_number(r.f1_6mm, 4)}",
        *(
            [
                f"baseline macro F1 at {r.baseline.radius:g} mm (rules of the competition baseline: top grade of one"
                f" prediction per identification, {len(r.baseline.classes)} classes): "
                f"{format_number(r.baseline.macro_f1, 4)}"
            ]
            if r.baseline is not None
            else []
        ),
        *_localization_lines(r, markdown),
        *_calibration_lines(r, markdown),
        *_data_check_lines(r, markdown),
    ]
    if r.missing_studies:
        out += ["", _studies("studies without predictions (all ground truth counted FN)", r.missing_studies)]
    if r.unknown_studies:
        out += ["", _studies("predicted studies not in the ground truth (ignored)", r.unknown_studies)]
    out += ["", f"{UNDEFINED} = undefined (zero denominator, or no ground truth for AP)"]
    return "\n".join(out) + "\n"


__all__ = ["MAX_LISTED", "UNDEFINED", "format_number", "format_result"]
