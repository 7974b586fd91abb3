"""Name -> builder registries (a leaf module: it imports nothing from spine_kp).

Pattern from timm's ``_registry.py``: a dict plus a decorator. Builders register themselves where they are
defined; ``Registry.get`` fails with the list of valid names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entry:
    """A registered builder and its descriptive metadata (family, source, ...)."""

    name: str
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    """A named collection of builders.

    Args:
        kind: what the registry holds ("backbone", "decoder"), used in error messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str | None = None, **meta: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@BACKBONES.register("resnet34", family="ResNet", source="timm")``."""

        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            key = name or fn.__name__
            if key in self._entries:
                raise KeyError(f"{self.kind} {key!r} registered twice")
            self._entries[key] = Entry(key, fn, dict(meta))
            return fn

        return deco

    def add(self, name: str, builder: Callable[..., Any], **meta: Any) -> None:
        """Register without a decorator (for builders generated in a loop)."""
        self.register(name, **meta)(builder)

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())


BACKBONES = Registry("backbone")
DECODERS = Registry("decoder")
