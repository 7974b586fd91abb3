"""Grades of phantom studies: realistic, imbalanced sampling and the appearance each grade meaning gets.

The table below is phantom data, not project logic: for each schema kind it maps a grade *meaning* (a key of
:data:`spine_kp.schema.MEANINGS`, never a label such as "v5") to how often it occurs and which
:class:`~spine_kp.synth.anatomy.DiscLook` / ``VertebraLook`` numbers draw it. Landmark names, kinds, label
sets, their order and each label's meaning always come from the :class:`~spine_kp.schema.Schema`. A grade whose
meaning the table cannot draw on its kind (or that declares no meaning) is an error naming it, as is a kind
missing from the table: a label without a visible correlate would teach the network noise.

A meaning the vocabulary leaves open is drawn as follows: ``herniation`` (type not given) is drawn as the
intravertebral kind, with the Schmorl's-node look, so that it stays distinguishable from ``protrusion`` and
``extrusion`` in a schema that names those too (the default one).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np

from spine_kp.schema import MEANINGS, Schema
from spine_kp.synth.anatomy import DiscLook, VertebraLook


@dataclass(frozen=True)
class GradeLook:
    """Occurrence and appearance of one grade meaning.

    Attributes:
        prior: probability per landmark at an average level (scaled up caudally, where degeneration is commoner).
        group: meanings sharing a group exclude each other (e.g. one contour change per disc).
        normal: the meaning given when no other is drawn.
        follows: drawn twice as often when another abnormal grade is present (degeneration accompanies
            herniation; bony change accompanies a degenerated neighbouring disc; Schmorl's nodes are commoner in
            degenerated, bulging discs).
        look: look field -> (low, high) uniform range; int fields draw an integer in [low, high].
    """

    prior: float = 0.0
    group: str | None = None
    normal: bool = False
    follows: bool = False
    look: dict[str, tuple[float, float]] = field(default_factory=dict)


GRADE_LOOKS: dict[str, dict[str, GradeLook]] = {
    "vertebra": {
        "normal": GradeLook(normal=True),
        "degeneration": GradeLook(0.15, follows=True, look={"osteophyte": (2.5, 6.0), "irregularity": (0.4, 1.0),
                                                           "modic": (4.0, 9.0), "modic_type": (1, 2)}),
    },
    "disc": {
        "normal": GradeLook(normal=True),
        "degeneration": GradeLook(0.16, group="signal", follows=True, look={"degeneration": (0.65, 1.0)}),
        "bulge": GradeLook(0.18, group="contour", look={"bulge": (1.8, 3.2)}),
        "diffuse_bulge": GradeLook(0.10, group="contour", look={"bulge": (1.8, 3.0)}),
        "asymmetric_bulge": GradeLook(0.05, group="contour", look={"bulge": (2.0, 3.2), "asymmetry": (0.75, 0.95)}),
        "protrusion": GradeLook(0.08, group="contour", look={"protrusion": (4.0, 6.5)}),
        "extrusion": GradeLook(0.03, group="contour", look={"protrusion": (7.0, 10.0), "migration": (4.0, 9.0)}),
        "herniation": GradeLook(0.05, group="endplate", look={"schmorl": (3.5, 6.0)}),  # intravertebral: docstring
        "schmorl_node": GradeLook(0.08, group="endplate", follows=True, look={"schmorl": (3.5, 6.0)}),
    },
}  # fmt: skip


def level_factor(position: int, count: int) -> float:
    """Pathology is rarer at the top of the lumbar spine and commoner at L4-S1: 0.5 .. 1.7."""
    return 0.5 + 1.2 * position / max(count - 1, 1)


def grade_looks(schema: Schema, kind: str) -> dict[str, GradeLook]:
    """Each grade label of ``kind`` -> the look of its meaning, in schema order.

    Raises:
        ValueError: the phantom draws no such kind, a grade declares no meaning or one the phantom cannot draw on
            this kind (the message names schema, kind, grade and meaning), or no grade means ``normal``.
    """
    if kind not in GRADE_LOOKS:
        raise ValueError(f"synth: no phantom appearance for kind {kind!r}; known kinds {sorted(GRADE_LOOKS)}")
    table = GRADE_LOOKS[kind]
    spec = schema.kind(kind)
    out: dict[str, GradeLook] = {}
    for grade, meaning in zip(spec.grades, spec.meanings):
        where = f"synth: schema {schema.name!r}, kind {kind!r}, grade {grade!r}"
        if meaning is None:
            raise ValueError(f"{where} declares no meaning; the phantom draws grades by meaning ({sorted(MEANINGS)})")
        if meaning not in table:
            raise ValueError(
                f"{where}: the phantom cannot draw meaning {meaning!r} on a {kind}; it draws {sorted(table)}"
            )
        out[grade] = table[meaning]
    if not any(look.normal for look in out.values()):
        raise ValueError(f"synth: kind {kind!r} of schema {schema.name!r} has no grade meaning 'normal'")
    return out


def _check_kinds(schema: Schema) -> None:
    for k in schema.kinds:
        grade_looks(schema, k.name)


def _draw(rng: np.random.Generator, schema: Schema, kind: str, factor: float, boost: bool) -> tuple[str, ...]:
    spec = schema.kind(kind)
    table = grade_looks(schema, kind)  # grade label -> look of its meaning
    known = list(table)
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
    table = grade_looks(schema, schema.kind_of(name))
    return any(not table[g].normal for g in labels)


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
        kind = schema.kind_of(name)
        table = grade_looks(schema, kind)
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
                    meaning = schema.grade_meaning(kind, label)
                    raise ValueError(f"synth: grade {label!r} ({meaning}) sets unknown look field {key!r} on {name}")
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
