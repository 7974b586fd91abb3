"""Grades of phantom studies: realistic, imbalanced sampling and the appearance each grade label gets.

The table below is phantom data, not project logic: for each schema kind it maps a grade label to how often
it occurs and which :class:`~spine_kp.io.phantom_anatomy.DiscLook` / ``VertebraLook`` numbers draw it.
Landmark names, kinds, label sets and their order always come from the :class:`~spine_kp.schema.Schema`; a
schema label missing from the table is never sampled (it would have no visible correlate), and a kind missing
from the table is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from spine_kp.io.phantom_anatomy import DiscLook, VertebraLook
from spine_kp.schema import Schema


@dataclass(frozen=True)
class GradeLook:
    """Occurrence and appearance of one grade label.

    Attributes:
        prior: probability per landmark at an average level (scaled up caudally, where degeneration is commoner).
        group: labels sharing a group exclude each other (e.g. one contour change per disc).
        normal: the label given when no other label is drawn.
        follows: drawn twice as often when another abnormal label is present (degeneration accompanies
            herniation; bony change accompanies a degenerated neighbouring disc).
        look: look field -> (low, high) uniform range; int fields draw an integer in [low, high].
    """

    prior: float = 0.0
    group: str | None = None
    normal: bool = False
    follows: bool = False
    look: dict[str, tuple[float, float]] = field(default_factory=dict)


GRADE_LOOKS: dict[str, dict[str, GradeLook]] = {
    "vertebra": {
        "v1": GradeLook(normal=True),
        "v2": GradeLook(0.15, follows=True, look={"osteophyte": (2.5, 6.0), "irregularity": (0.4, 1.0),
                                                 "modic": (4.0, 9.0), "modic_type": (1, 2)}),
    },
    "disc": {
        "v1": GradeLook(normal=True),
        "v2": GradeLook(0.16, group="signal", follows=True, look={"degeneration": (0.65, 1.0)}),
        "v3": GradeLook(0.10, group="contour", look={"bulge": (1.8, 3.0)}),
        "v4": GradeLook(0.05, group="contour", look={"bulge": (2.0, 3.2), "asymmetry": (0.75, 0.95)}),
        "v5": GradeLook(0.08, group="contour", look={"protrusion": (4.0, 6.5)}),
        "v6": GradeLook(0.03, group="contour", look={"protrusion": (7.0, 10.0), "migration": (4.0, 9.0)}),
        "v7": GradeLook(0.05, group="endplate", look={"schmorl": (3.5, 6.0)}),
    },
}  # fmt: skip


def level_factor(position: int, count: int) -> float:
    """Pathology is rarer at the top of the lumbar spine and commoner at L4-S1: 0.5 .. 1.7."""
    return 0.5 + 1.2 * position / max(count - 1, 1)


def _check_kinds(schema: Schema) -> None:
    for k in schema.kinds:
        if k.name not in GRADE_LOOKS:
            raise ValueError(f"synth: no phantom appearance for kind {k.name!r}; known kinds {sorted(GRADE_LOOKS)}")
        table = GRADE_LOOKS[k.name]
        if not any(table.get(g, GradeLook()).normal for g in k.grades):
            raise ValueError(f"synth: kind {k.name!r} has no grade the phantom draws as normal")


def _draw(rng: np.random.Generator, schema: Schema, kind: str, factor: float, boost: bool) -> tuple[str, ...]:
    spec = schema.kind(kind)
    table = GRADE_LOOKS[kind]
    known = [g for g in spec.grades if g in table]
    normal = [g for g in known if table[g].normal]
    abnormal = [g for g in known if not table[g].normal and table[g].prior > 0]

    def p(g: str, chosen: list[str]) -> float:
        look = table[g]
        return min(look.prior * factor * (2.0 if look.follows and (chosen or boost) else 1.0), 0.95)

    if not spec.multi_label:
        probs = [p(g, []) for g in abnormal]
        u = rng.random()
        for g, q in zip(abnormal, probs):
            if u < q:
                return (g,)
            u -= q
        return (normal[0],)
    chosen: list[str] = []
    groups: dict[str | None, list[str]] = {}
    for g in sorted(abnormal, key=lambda g: table[g].follows):  # followers last: they see the others
        groups.setdefault(table[g].group or g, []).append(g)
    for members in groups.values():
        u = rng.random()
        for g in members:
            q = p(g, chosen)
            if u < q:
                chosen.append(g)
                break
            u -= q
    if not chosen:
        return (normal[0],)
    return tuple(g for g in spec.grades if g in chosen)  # schema order


def _abnormal(schema: Schema, name: str, labels: tuple[str, ...]) -> bool:
    table = GRADE_LOOKS[schema.kind_of(name)]
    return any(not table.get(g, GradeLook()).normal for g in labels)


def sample_grades(rng: np.random.Generator, schema: Schema) -> dict[str, tuple[str, ...]]:
    """Grade labels per schema landmark (schema order within each landmark's label tuple).

    Discs (identification with '-', SPEC section 2) are drawn first; a vertebra next to an abnormal disc is
    likelier to be degenerative (``GradeLook.follows``).
    """
    _check_kinds(schema)
    out: dict[str, tuple[str, ...]] = {}
    names = sorted(schema.landmarks, key=lambda n: "-" not in n)  # discs first
    for name in names:
        kind = schema.kind_of(name)
        same = schema.landmarks_of_kind(kind)
        factor = level_factor(same.index(name), len(same))
        boost = "-" not in name and any(name in n.split("-") and _abnormal(schema, n, out[n]) for n in out if "-" in n)
        out[name] = _draw(rng, schema, kind, factor, boost)
    return {n: out[n] for n in schema.landmarks}


def looks_for(
    rng: np.random.Generator, schema: Schema, grades: dict[str, tuple[str, ...]]
) -> tuple[dict[str, DiscLook], dict[str, VertebraLook]]:
    """Phantom appearance of every graded landmark: normal variation plus each label's look ranges."""
    discs: dict[str, DiscLook] = {}
    bodies: dict[str, VertebraLook] = {}
    streams = dict(zip(schema.landmarks, rng.spawn(len(schema.landmarks))))  # one stream per landmark
    for name, labels in grades.items():
        rng = streams[name]
        table = GRADE_LOOKS[schema.kind_of(name)]
        if "-" in name:
            look: DiscLook | VertebraLook = DiscLook(
                degeneration=float(rng.uniform(0.0, 0.12)), bulge=float(rng.uniform(0.2, 0.8))
            )
        else:
            look = VertebraLook()
        types = {f.name: f.type for f in fields(look)}
        for label in labels:
            for key, (lo, hi) in table[label].look.items():
                if key not in types:
                    raise ValueError(f"synth: grade {label!r} sets unknown look field {key!r} on {name}")
                value = (
                    int(rng.integers(int(lo), int(hi) + 1))
                    if types[key] in (int, "int")
                    else float(rng.uniform(lo, hi))
                )
                look = replace(look, **{key: value})
        if isinstance(look, DiscLook):
            discs[name] = look
        else:
            bodies[name] = look
    return discs, bodies
