"""The one YAML reader of spine_kp (configs, schemas, ``--section.key VALUE`` overrides) and how a name finds its file.

* Safe: PyYAML's ``SafeLoader`` builds plain data only (no Python objects).
* Strict: a mapping that repeats a key is refused, naming the key and both lines. PyYAML would keep the last one
  without a word, so ``lr`` written twice trains with whichever came last. A merge (``<<: *base``) may still be
  overridden by the keys written beside it, as YAML means.
* One line: a syntax error (a tab, an unclosed bracket) or text that is not UTF-8 becomes one error of the caller's
  class naming the file, line and column, never a traceback.

Names (:func:`resolve_yaml`): a ``--config`` or ``--schema`` value that contains a folder separator or ends in
``.yaml`` / ``.yml`` is a path; any other word is the name of a packaged file, whatever the working folder holds (a
folder called ``tianchi`` beside you does not hide the packaged ``tianchi`` schema).

A leaf module: PyYAML only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

#: suffixes that make a name a path
YAML_SUFFIXES = (".yaml", ".yml")
_MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a mapping with the same key twice (see module docstring)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.MappingNode):
            first: dict[Any, yaml.Mark] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE_TAG:  # "<<: *base": the keys beside it override the merged ones
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    seen = first.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error names it below
                    continue
                if seen is not None:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen.line + 1})", key_node.start_mark
                    )
                first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _describe(exc: yaml.YAMLError) -> str:
    """``line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow sequence, line 1)``."""
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"not valid YAML ({exc})"
    mark = exc.problem_mark or exc.context_mark
    problem = exc.problem or exc.context or "not valid YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = ""
    if exc.problem and exc.context:
        line = f", line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        context = f" ({exc.context}{line})"
    return f"{where}{problem}{context}"


def parse_yaml(text: str, source: str, error: type[Exception]) -> Any:
    """Parse YAML text strictly (see module docstring).

    Args:
        text: the YAML document.
        source: what to name in the message (a file, ``--optim.lr``).
        error: the exception class raised, with one line ``"<source>: line L, column C: <problem>"``.
    """
    try:
        return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise error(f"{source}: {_describe(exc)}") from None
    except RecursionError:  # "[[[[..." 10^5 deep: PyYAML's scanner recurses once per level
        raise error(f"{source}: nested too deeply to be a config (a few levels are all spine_kp reads)") from None


def read_yaml(path: str | Path, error: type[Exception]) -> Any:
    """Read and parse one YAML file (None for an empty file, or one holding only comments).

    Raises:
        error: the file is not UTF-8 text or not valid YAML, or repeats a key (one line naming the file).
        OSError: the file cannot be read (the CLI names user-given paths).
    """
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_yaml(text, str(p), error)


def is_path_name(name: str | Path) -> bool:
    """True when ``name`` is a path (it has a folder separator or a YAML suffix), False for a packaged name."""
    text = os.fspath(name)
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(s in text for s in separators) or text.lower().endswith(YAML_SUFFIXES)


def resolve_yaml(name: str | Path, folder: Path, what: str, error: type[Exception]) -> Path:
    """The YAML file a ``--config`` / ``--schema`` value names (see module docstring for the rule).

    Args:
        name: a path (``configs/mine.yaml``, ``./tianchi.yaml``) or a packaged name (``tianchi``).
        folder: where the packaged files are (``<name>.yaml``).
        what: ``"config"`` or ``"schema"``, for the message.
        error: the exception class raised when the file is missing or a folder.
    """
    text = os.fspath(name)
    packaged = sorted(p.stem for p in folder.glob("*.yaml"))
    listing = f"packaged {what}s: {', '.join(packaged)}"
    if is_path_name(text):
        p = Path(text)
        if p.is_dir():
            raise error(f"{what} {p} is a folder, not a YAML file; {listing}")
        if not p.is_file():
            raise error(f"{what} file {p} does not exist; {listing}")
        return p
    p = folder / f"{text}.yaml"
    if text and p.is_file():
        return p
    raise error(f"unknown {what} {text!r}: not a packaged name ({listing}); give a file as a path: ./{text}.yaml")


__all__ = ["YAML_SUFFIXES", "StrictLoader", "is_path_name", "parse_yaml", "read_yaml", "resolve_yaml"]
