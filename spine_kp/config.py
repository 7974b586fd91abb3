"""Typed configuration: YAML -> nested frozen dataclasses, once, with strict keys (nanoGPT's GPTConfig idea).

* An unknown key is an error naming the file and the dotted key (``train.yaml: unknown key 'model.backbon'``).
* Overrides use dotted keys, ``--model.backbone efficientnet_b0``; values are parsed as YAML scalars.
* ``to_dict`` gives plain data for checkpoints; ``from_dict`` rebuilds the same object.

A leaf module: it knows dataclasses and YAML, nothing of the project but the leaf :mod:`spine_kp.errors`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from spine_kp.errors import UserError

T = TypeVar("T")


class ConfigError(UserError, ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


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
    out = yaml.safe_load(yaml.safe_dump(data)) or {}
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
        node[parts[-1]] = yaml.safe_load(raw) if isinstance(raw, str) else raw
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
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    return data
