"""Two small phantom data sets whose label sets differ, like the two real development sets of one joint model.

* ``a``: every landmark but the T12 vertebra, with grades (the Tianchi set annotates no T12 body);
* ``b``: only L1-L5 and the discs L1-L2..L4-L5, every grade empty (the water-fat set).

Shared by tests/data and tests/engine (importable because tests/conftest.py puts tests/ on the path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from spine_kp.schema import load_schema

SCHEMA = load_schema()
TIANCHI_LIKE = frozenset(SCHEMA.landmarks) - {"T12"}
WATER_FAT_LIKE = frozenset(("L1", "L1-L2", "L2", "L2-L3", "L3", "L3-L4", "L4", "L4-L5", "L5"))


@dataclass(frozen=True)
class Source:
    """One phantom data set: its study root, annotation file, the landmarks it annotates and its study UIDs."""

    root: Path
    annotations: Path
    landmarks: frozenset[str]
    study_uids: frozenset[str]
    graded: bool

    def args(self) -> list[str]:
        """``--data ROOT --annotations GT.json`` for ``spine-kp train``."""
        return ["--data", str(self.root), "--annotations", str(self.annotations)]


def keep_landmarks(path: Path, keep: frozenset[str], grades: bool) -> frozenset[str]:
    """Rewrite annotation file ``path`` to keep only the points of ``keep`` (grades emptied unless ``grades``).

    Returns:
        The study UIDs of the file.
    """
    records = json.loads(path.read_text())
    for rec in records:
        for image in rec["data"]:
            for ann in image["annotation"]:
                points = [p for p in ann["data"]["point"] if p["tag"]["identification"] in keep]
                for p in points if not grades else ():
                    for kind in ("vertebra", "disc"):
                        if kind in p["tag"]:
                            p["tag"][kind] = ""
                ann["data"]["point"] = points
    path.write_text(json.dumps(records))
    return frozenset(r["studyUid"] for r in records)


def make_two_sources(out: Path, n_studies: int = 4) -> tuple[Source, Source]:
    """Write the two data sets under ``out/a`` and ``out/b`` (different seeds, so different studies)."""
    from spine_kp.synth import make_dataset

    sources = []
    for name, seed, keep, graded in (("a", 11, TIANCHI_LIKE, True), ("b", 12, WATER_FAT_LIKE, False)):
        make_dataset(out / name, n_studies=n_studies, seed=seed, size=128, axial=False)
        uids = keep_landmarks(out / name / "annotations.json", keep, graded)
        sources.append(Source(out / name / "studies", out / name / "annotations.json", keep, uids, graded))
    return sources[0], sources[1]
