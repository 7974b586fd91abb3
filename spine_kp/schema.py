"""Landmark set and grade labels, loaded from a YAML config (SPEC section 2).

The schema is data: every landmark name, kind and grade label comes from a file such as
``spine_kp/configs/schema/default.yaml``. Code asks the schema; it never spells a landmark name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_SCHEMA = CONFIG_DIR / "schema" / "default.yaml"


class SchemaError(ValueError):
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
    """

    name: str
    grades: tuple[str, ...]
    descriptions: tuple[str, ...]
    multi_label: bool


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

    @cached_property
    def classes(self) -> tuple[tuple[str, str], ...]:
        """Evaluation classes (kind, grade) in a stable order: vertebra/v1, vertebra/v2, disc/v1, ..."""
        return tuple((k.name, g) for k in self.kinds for g in k.grades)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (stored in checkpoints; ``Schema.from_dict`` reads it back)."""
        return {
            "name": self.name,
            "kinds": {
                k.name: {"multi_label": k.multi_label, "grades": dict(zip(k.grades, k.descriptions))}
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
                kinds.append(
                    KindSpec(
                        name=str(kname),
                        grades=tuple(str(g) for g in grades),
                        descriptions=tuple(str(d) for d in grades.values()),
                        multi_label=bool(spec.get("multi_label", False)),
                    )
                )
            names = tuple(str(lm["name"]) for lm in data["landmarks"])
            lkinds = tuple(str(lm["kind"]) for lm in data["landmarks"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise SchemaError(f"{source}: malformed schema ({exc!r})") from None
        return cls(
            name=str(data.get("name", Path(source).stem)), landmarks=names, landmark_kinds=lkinds, kinds=tuple(kinds)
        )


def load_schema(path: str | Path | None = None) -> Schema:
    """Load a schema YAML (default: the packaged lumbar T12-S1 schema).

    Args:
        path: a YAML file, or a bare name of a file in ``spine_kp/configs/schema/`` (``"default"``).
    """
    if path is None:
        p = DEFAULT_SCHEMA
    else:
        p = Path(path)
        if not p.exists() and not p.suffix:
            p = CONFIG_DIR / "schema" / f"{path}.yaml"
    if not p.exists():
        raise SchemaError(f"schema file {p} does not exist")
    with open(p, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise SchemaError(f"{p}: expected a mapping at top level")
    return Schema.from_dict(data, source=str(p))
