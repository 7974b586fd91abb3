"""Typed configuration: YAML -> nested frozen dataclasses, once, with strict keys (nanoGPT's GPTConfig idea).

* An unknown key is an error naming the file and the dotted key (``train.yaml: unknown key 'model.backbon'``).
* Overrides use dotted keys, ``--model.backbone efficientnet_b0``; values are parsed as YAML scalars.
* ``to_dict`` gives plain data for checkpoints; ``from_dict`` rebuilds the same object.
* Numeric ranges live next to the fields they constrain: ``lr: float = bounded(1e-3, gt=0)``. A dataclass with bounded
  fields calls :func:`check_bounds` in its ``__post_init__``, so a value out of range fails at load time, before any
  data is read, as one line naming the dotted key (``train.yaml: 'optim.lr' must be > 0, got -1.0``); cross-field
  rules raise :class:`BoundsError` naming the key the same way. A new setting with a range is one edit.
* YAML is read by :mod:`spine_kp.yaml_files`: duplicate keys and syntax errors are one line naming file and line.

A leaf module: it knows dataclasses and YAML, nothing of the project but the leaves :mod:`spine_kp.errors` and
:mod:`spine_kp.yaml_files`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from spine_kp.errors import UserError
from spine_kp.yaml_files import parse_yaml, read_yaml

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


#: ``dataclasses.field`` metadata key of a field's :class:`Bounds`
BOUNDS = "spine_kp.bounds"


class BoundsError(ValueError):
    """A config value outside its range; ``key`` is the field (dotted below the dataclass), ``reason`` the rest."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"'{key}' {reason}")
        self.key = key
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Bounds:
    """The range of a numeric field (of each number, for a list): finite, and ``> gt``, ``>= ge``, ``< lt``, ``<= le``.

    ``allow`` lists values accepted besides the range (``-1`` for Lightning's "all devices").
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    allow: tuple[Any, ...] = ()

    def __str__(self) -> str:
        limits = ((">", self.gt), (">=", self.ge), ("<", self.lt), ("<=", self.le))
        text = " and ".join(f"{op} {_number(v)}" for op, v in limits if v is not None)
        return f"{text} (or {', '.join(map(str, self.allow))})" if self.allow else text

    def within(self, x: float) -> bool:
        """Whether one number is finite and inside the limits."""
        return (
            math.isfinite(x)
            and (self.gt is None or x > self.gt)
            and (self.ge is None or x >= self.ge)
            and (self.lt is None or x < self.lt)
            and (self.le is None or x <= self.le)
        )

    def violation(self, value: Any) -> str | None:
        """Why ``value`` is out of range (``"must be > 0, got -1.0"``); None when it is within, or not a number."""
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v in self.allow:
                continue
            try:
                x = float(v)
            except OverflowError:  # an int beyond any float: out of every range
                x = math.inf
            if not self.within(x):
                return f"must be {'' if math.isfinite(x) else 'a finite number '}{self}, got {value!r}"
        return None


def _number(v: float) -> str:
    """``4294967295`` rather than ``4.29497e+09``; ``0.5`` rather than ``0.500000``."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e15 else f"{v:g}"


def bounded(
    default: Any = dataclasses.MISSING,
    *,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    allow: tuple[Any, ...] = (),
) -> Any:
    """A dataclass field with a range (see :class:`Bounds`): ``lr: float = bounded(1e-3, gt=0)``."""
    return dataclasses.field(default=default, metadata={BOUNDS: Bounds(gt, ge, lt, le, allow)})


def check_bounds(obj: Any) -> None:
    """Raise :class:`BoundsError` for the first field of dataclass ``obj`` outside its :func:`bounded` range.

    Called from ``__post_init__``, so a config built in code is checked like one loaded from YAML.
    """
    for f in dataclasses.fields(obj):
        bounds = f.metadata.get(BOUNDS)
        value = getattr(obj, f.name)
        if bounds is not None and value is not None:
            reason = bounds.violation(value)
            if reason is not None:
                raise BoundsError(f.name, reason)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(tp: Any, value: Any, where: str, source: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` (dataclasses recursively; scalars checked loosely)."""
    origin = typing.get_origin(tp)
    if _is_dataclass_type(tp):
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return from_dict(tp, value, source=source, prefix=where + ".")
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _convert(args[0], value, where, source)
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) == len(value):
            return tuple(_convert(a, v, where, source) for a, v in zip(args, value))
        inner = args[0] if args else Any
        seq = [_convert(inner, v, where, source) for v in value]
        return tuple(seq) if origin is tuple else seq
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "3e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{source}: '{where}' must be an integer, got {value!r}")
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], source: str = "<config>", prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys raise :class:`ConfigError` naming them."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (valid: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _convert(hints[k], v, prefix + k, source) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except BoundsError as exc:  # name the dotted key from the top: 'optim.lr', 'data.input_size'
        raise ConfigError(f"{source}: '{prefix}{exc.key}' {exc.reason}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'}: {exc}") from None


def to_dict(obj: Any) -> Any:
    """Plain data (dicts, lists, scalars) for a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict[str, Any], overrides: dict[str, str], source: str = "<overrides>") -> dict[str, Any]:
    """Return a copy of ``data`` with dotted-key overrides applied (values parsed as YAML scalars)."""
    out = copy.deepcopy(data)
    for key, raw in overrides.items():
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source}: '{key}': '{part}' is not a section")
            node = nxt
        node[parts[-1]] = parse_yaml(raw, f"{source}: --{key}", ConfigError) if isinstance(raw, str) else raw
    return out


def parse_override_args(args: list[str]) -> dict[str, str]:
    """Turn ``["--model.backbone", "x", "--optim.lr=1e-3"]`` into ``{"model.backbone": "x", "optim.lr": "1e-3"}``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise ConfigError(f"unexpected argument {arg!r}; overrides look like --section.key VALUE")
        key = arg[2:]
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            if i + 1 >= len(args):
                raise ConfigError(f"override --{key} has no value")
            i += 1
            value = args[i]
        out[key] = value
        i += 1
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file: a YAML mapping (duplicate keys, syntax errors and an empty file are one error line)."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    data = read_yaml(p, ConfigError)
    if data is None:  # an empty file (or only comments) is a mistake, not "all defaults": say so
        raise ConfigError(f"{p}: the config file is empty; write the settings to change, or {{}} for the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data
