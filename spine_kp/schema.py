"""Landmark set and grade labels, loaded from a YAML config (SPEC section 2).

The schema is data: every landmark name, kind and grade label comes from a file such as
``spine_kp/configs/schema/default.yaml``. Code asks the schema; it never spells a landmark name or a grade label.

Each grade label declares what it means, chosen from the fixed vocabulary :data:`MEANINGS`, so code that must
know what a grade looks like (the phantom generator) asks for its meaning, never for its label::

    kinds:
      disc:
        multi_label: true
        grades:
          v1: {meaning: normal}
          v2: {meaning: bulge, description: bulge}

``description`` is optional (default: the meaning with spaces). A grade given as plain text (``v1: normal``, the
older format, also in older checkpoints) is a description only: it loads, with no meaning (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from spine_kp.errors import UserError
from spine_kp.yaml_files import read_yaml, resolve_yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_SCHEMA = CONFIG_DIR / "schema" / "default.yaml"

# The grade meanings a schema may declare: name -> what a grade of that meaning reports. Fixed on purpose: a meaning
# is a promise about the image that code (the phantom generator) can keep; a new one needs code that draws it.
MEANINGS: dict[str, str] = {
    "normal": "no finding",
    "degeneration": "degenerative change of the structure: a disc dark on T2 (desiccated) and thinner; a vertebra "
    "with osteophytes, irregular endplates and Modic marrow change",
    "bulge": "disc tissue beyond the vertebral margins, diffuse or not further specified",
    "diffuse_bulge": "symmetric, circumferential bulge",
    "asymmetric_bulge": "bulge larger on one side",
    "protrusion": "focal herniation: disc material past the posterior margin, narrower than its base",
    "extrusion": "herniation reaching further than its base, the fragment migrating along the canal",
    "herniation": "displaced disc material, type not specified (in a schema that also names protrusion and "
    "extrusion: the intravertebral kind)",
    "schmorl_node": "Schmorl's node: disc material pushed through an endplate into the vertebral body",
}


class SchemaError(UserError, ValueError):
    """A schema file is malformed."""


@dataclass(frozen=True)
class KindSpec:
    """One landmark kind (e.g. vertebra, disc) and its grade labels.

    Attributes:
        name: kind name, also the tag key in the competition JSON ("vertebra", "disc").
        grades: grade labels in channel order ("v1", "v2", ...).
        descriptions: human-readable text per grade label.
        multi_label: whether a landmark of this kind may carry several grades at once (sigmoid head) or
            exactly one (softmax head).
        meanings: per grade label, a key of :data:`MEANINGS`, or None where the schema declares none (older
            schema files and checkpoints); ``()`` means none declared for any grade.
    """

    name: str
    grades: tuple[str, ...]
    descriptions: tuple[str, ...]
    multi_label: bool
    meanings: tuple[str | None, ...] = ()

    def __post_init__(self) -> None:
        if not self.meanings:
            object.__setattr__(self, "meanings", (None,) * len(self.grades))
        if not len(self.grades) == len(self.descriptions) == len(self.meanings):
            raise SchemaError(f"kind {self.name!r}: grades, descriptions and meanings differ in length")
        bad = [m for m in self.meanings if m is not None and m not in MEANINGS]
        if bad:
            raise SchemaError(f"kind {self.name!r}: unknown grade meaning(s) {bad}; known: {sorted(MEANINGS)}")

    def meaning(self, grade: str) -> str | None:
        """Meaning (a key of :data:`MEANINGS`) of one grade label, None if the schema declares none."""
        try:
            return self.meanings[self.grades.index(grade)]
        except ValueError:
            raise KeyError(f"unknown grade {grade!r} of kind {self.name!r}; valid {self.grades}") from None


@dataclass(frozen=True)
class Schema:
    """The landmark set: names in cranio-caudal order, each with a kind, plus each kind's grade labels."""

    name: str
    landmarks: tuple[str, ...]
    landmark_kinds: tuple[str, ...]
    kinds: tuple[KindSpec, ...]

    def __post_init__(self) -> None:
        if len(self.landmarks) != len(self.landmark_kinds):
            raise SchemaError("landmarks and landmark_kinds differ in length")
        if len(set(self.landmarks)) != len(self.landmarks):
            raise SchemaError(f"schema {self.name!r}: duplicate landmark names")
        known = {k.name for k in self.kinds}
        for lm, kind in zip(self.landmarks, self.landmark_kinds):
            if kind not in known:
                raise SchemaError(f"schema {self.name!r}: landmark {lm!r} has unknown kind {kind!r}")

    # ----------------------------------------------------------------- lookups
    @property
    def num_landmarks(self) -> int:
        return len(self.landmarks)

    @cached_property
    def _index(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.landmarks)}

    @cached_property
    def _kind_by_name(self) -> dict[str, KindSpec]:
        return {k.name: k for k in self.kinds}

    def index(self, identification: str) -> int:
        """Channel index of a landmark; raises KeyError naming the valid names."""
        try:
            return self._index[identification]
        except KeyError:
            raise KeyError(f"unknown landmark {identification!r}; schema {self.name!r} has {self.landmarks}") from None

    def has(self, identification: str) -> bool:
        return identification in self._index

    def kind_of(self, identification: str) -> str:
        """Kind name ("vertebra" / "disc") of a landmark of this schema."""
        return self.landmark_kinds[self.index(identification)]

    def kind(self, name: str) -> KindSpec:
        try:
            return self._kind_by_name[name]
        except KeyError:
            raise KeyError(f"unknown kind {name!r}; schema {self.name!r} has {list(self._kind_by_name)}") from None

    def landmarks_of_kind(self, kind: str) -> tuple[str, ...]:
        return tuple(lm for lm, k in zip(self.landmarks, self.landmark_kinds) if k == kind)

    def grades_of(self, identification: str) -> tuple[str, ...]:
        return self.kind(self.kind_of(identification)).grades

    def grade_meaning(self, kind: str, grade: str) -> str | None:
        """Meaning of grade ``grade`` of kind ``kind`` (a key of :data:`MEANINGS`; None if undeclared)."""
        return self.kind(kind).meaning(grade)

    @cached_property
    def classes(self) -> tuple[tuple[str, str], ...]:
        """Evaluation classes (kind, grade) in a stable order: vertebra/v1, vertebra/v2, disc/v1, ..."""
        return tuple((k.name, g) for k in self.kinds for g in k.grades)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (stored in checkpoints; ``Schema.from_dict`` reads it back)."""
        return {
            "name": self.name,
            "kinds": {
                k.name: {
                    "multi_label": k.multi_label,
                    "grades": {
                        g: d if m is None else {"meaning": m, "description": d}
                        for g, d, m in zip(k.grades, k.descriptions, k.meanings)
                    },
                }
                for k in self.kinds
            },
            "landmarks": [{"name": n, "kind": k} for n, k in zip(self.landmarks, self.landmark_kinds)],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Schema:
        """Build from the YAML structure; errors name ``source`` and the offending field."""
        try:
            unknown = set(data) - {"name", "kinds", "landmarks"}
            if unknown:
                raise SchemaError(f"{source}: unknown key(s) {sorted(unknown)}")
            kinds = []
            for kname, spec in data["kinds"].items():
                grades = spec["grades"]
                if not grades:
                    raise SchemaError(f"{source}: kind {kname!r} has no grades")
                parsed = [_grade(v, f"{source}: kinds.{kname}.grades.{g}") for g, v in grades.items()]
                kinds.append(
                    KindSpec(
                        name=str(kname),
                        grades=tuple(str(g) for g in grades),
                        descriptions=tuple(d for d, _ in parsed),
                        multi_label=bool(spec.get("multi_label", False)),
                        meanings=tuple(m for _, m in parsed),
                    )
                )
            names = tuple(str(lm["name"]) for lm in data["landmarks"])
            lkinds = tuple(str(lm["kind"]) for lm in data["landmarks"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(f"{source}: malformed schema ({exc!r})") from None
        return cls(
            name=str(data.get("name", Path(source).stem)), landmarks=names, landmark_kinds=lkinds, kinds=tuple(kinds)
        )


def _grade(value: Any, where: str) -> tuple[str, str | None]:
    """(description, meaning) of one grade entry: ``{meaning: m[, description: d]}`` or a plain description."""
    if not isinstance(value, dict):
        return str(value), None  # older format: description only
    unknown = set(value) - {"meaning", "description"}
    if unknown:
        raise SchemaError(f"{where}: unknown key(s) {sorted(unknown)}; a grade has 'meaning' and 'description'")
    if "meaning" not in value:
        raise SchemaError(f"{where}: no 'meaning'; give one of {sorted(MEANINGS)}")
    meaning = value["meaning"]
    if meaning not in MEANINGS:
        raise SchemaError(f"{where}.meaning: unknown meaning {meaning!r}; known meanings: {sorted(MEANINGS)}")
    return str(value.get("description", str(meaning).replace("_", " "))), str(meaning)


def packaged_schemas() -> tuple[str, ...]:
    """Names of the schema files shipped in ``spine_kp/configs/schema/`` (``load_schema`` accepts them bare)."""
    return tuple(sorted(p.stem for p in (CONFIG_DIR / "schema").glob("*.yaml")))


def packaged_schema(name: str) -> Schema | None:
    """The packaged schema whose file stem (``"default"``) or declared ``name`` (``"lumbar_t12_s1"``) is ``name``.

    Only the files in ``spine_kp/configs/schema/`` are considered, never a path, so a name read from an untrusted file
    (the ``"schema"`` field of a prediction record) cannot make anything else load. None when no packaged schema has
    that name.
    """
    for stem in packaged_schemas():
        schema = load_schema(CONFIG_DIR / "schema" / f"{stem}.yaml")
        if name in (stem, schema.name):
            return schema
    return None


def load_schema(path: str | Path | None = None) -> Schema:
    """Load a schema YAML (default: the packaged lumbar T12-S1 schema).

    Args:
        path: a YAML file, or a packaged name (``"default"``, ``"tianchi"``; see :func:`packaged_schemas`). A value
            with a folder separator or a ``.yaml`` / ``.yml`` suffix is a path, any other a packaged name, whatever
            the working folder holds (:func:`spine_kp.yaml_files.resolve_yaml`).

    Raises:
        SchemaError: no such file or packaged name; the file is empty, not valid YAML, repeats a key, or is not a
            schema (one line naming the file).
    """
    p = DEFAULT_SCHEMA if path is None else resolve_yaml(path, CONFIG_DIR / "schema", "schema", SchemaError)
    data = read_yaml(p, SchemaError)
    if data is None:
        raise SchemaError(f"{p}: the schema file is empty")
    if not isinstance(data, dict):
        raise SchemaError(f"{p}: expected a mapping at top level")
    return Schema.from_dict(data, source=str(p))
