"""Predictions for the review tests, made from the phantom ground truth of ``synth_root`` (no model).

Every point is moved by :data:`SHIFT` pixels and scored 0.9, except one landmark per study (:data:`WEAK`) scored from
``scores``, so the least-certain order is known in advance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

SHIFT = (1.5, -1.0)
WEAK = "L4-L5"
SCORES = (0.6, 0.2, 0.8, 0.4, 0.5)  # study k of annotations.json: the score of its WEAK landmark


def make_predictions(
    synth_root: Path,
    path: Path,
    scores: tuple[float, ...] = SCORES,
    extras: dict[int, dict[str, Any]] | None = None,
    drop: dict[int, str] | None = None,
) -> Path:
    """Write predictions to ``path``; returns it.

    Args:
        synth_root: the ``synth_root`` fixture (``annotations.json`` + ``studies/``).
        path: the file to write.
        scores: the WEAK landmark's score per study, in file order.
        extras: study index -> extra fields added to each of its points (``{"flipShiftMm": 9.0}``).
        drop: study index -> an identification left out of its predictions.
    """
    records = json.loads((synth_root / "annotations.json").read_text())
    for k, rec in enumerate(records):
        rec["schema"] = "lumbar_t12_s1"
        for entry in rec["data"]:
            for block in entry["annotation"]:
                points = []
                for p in block["data"]["point"]:
                    ident = p["tag"]["identification"]
                    if drop and drop.get(k) == ident:
                        continue
                    p["coord"] = [p["coord"][0] + SHIFT[0], p["coord"][1] + SHIFT[1]]
                    p["score"] = scores[k] if ident == WEAK else 0.9
                    p.update((extras or {}).get(k, {}))
                    points.append(p)
                block["data"]["point"] = points
    path.write_text(json.dumps(records))
    return path


def study_uids(synth_root: Path) -> list[str]:
    """The study UIDs of ``annotations.json``, in file order."""
    return [r["studyUid"] for r in json.loads((synth_root / "annotations.json").read_text())]


def tree_digest(*paths: Path) -> dict[str, str]:
    """SHA-256 of every file under the given files and folders, by path."""
    out = {}
    for top in paths:
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        out.update({str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
    return out
