"""Human-readable output of an :class:`EvaluationResult` in one folder: the tables as markdown
(:mod:`spine_kp.evaluation.tables`), JSON, and the PR-curve, error and reliability plots
(:mod:`spine_kp.evaluation.plots`). Every file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

from spine_kp.evaluation.plots import plot_errors, plot_pr_curves, plot_reliability
from spine_kp.evaluation.result import EvaluationResult
from spine_kp.evaluation.tables import format_result
from spine_kp.io.atomic import atomic_write_text
from spine_kp.io.text import escape_unencodable


def to_json(result: EvaluationResult) -> str:
    """``result.to_dict()`` as JSON text (undefined values are null)."""
    return json.dumps(result.to_dict(), indent=2, allow_nan=False) + "\n"


#: The files :func:`write_report` writes into its folder.
REPORT_FILES = ("metrics.json", "report.md", "pr_curves.png", "errors.png", "reliability.png")


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


__all__ = ["REPORT_FILES", "to_json", "write_report"]
