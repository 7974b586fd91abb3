"""Guards run before a command writes anything: no output replaces an input or another output of the same command,
and a reused output folder is counted.

Paths are compared as the same file, not as the same text: ``./a.json``, ``a.json``, a symlink to it and a hard link
all collide (``os.path.samefile`` when both exist, ``Path.resolve`` otherwise).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from itertools import combinations
from pathlib import Path

from spine_kp.errors import UserError

PathLike = str | os.PathLike[str]


class OutputClashError(UserError, ValueError):
    """Two outputs of one command name the same path, or an output names one of its inputs."""


def same_path(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` are the same file or folder (or would be, once created)."""
    pa, pb = Path(a), Path(b)
    if pa.exists() and pb.exists():
        return os.path.samefile(pa, pb)
    return pa.resolve() == pb.resolve()


def refuse_same_paths(outputs: Mapping[str, PathLike | None], inputs: Mapping[str, PathLike | None]) -> None:
    """Raise before any work when an output would replace an input or another output.

    Args:
        outputs: what the command writes, keyed by the flag that names it (e.g. ``{"-o": "pred.json", "--csv":
            "pred.csv", "the errors file of -o": "pred.errors.json"}``); None entries are ignored.
        inputs: what it reads, keyed the same way (e.g. ``{"--checkpoint": "best.ckpt"}``).

    Raises:
        OutputClashError: one line naming both flags and the path.
    """
    outs = [(flag, path) for flag, path in outputs.items() if path is not None and os.fspath(path)]
    ins = [(flag, path) for flag, path in inputs.items() if path is not None and os.fspath(path)]
    for (flag, path), (other, other_path) in combinations(outs, 2):
        if same_path(path, other_path):
            raise OutputClashError(
                f"{flag} and {other} both name {os.fspath(path)}: one would overwrite the other; "
                "give each output its own path"
            )
    for flag, path in outs:
        for other, in_path in ins:
            if same_path(path, in_path):
                raise OutputClashError(
                    f"{flag} {os.fspath(path)} is the {other} input and would be overwritten: choose another path"
                )


def files_from_before(folder: PathLike, will_write: Collection[str]) -> int:
    """How many files in ``folder`` this run will not overwrite (0 when it does not exist yet).

    Args:
        folder: an output folder that may hold files from an earlier run.
        will_write: the names (not paths) of the files this run writes there.
    """
    try:
        with os.scandir(folder) as entries:
            return sum(1 for e in entries if not e.is_dir() and e.name not in will_write)
    except (FileNotFoundError, NotADirectoryError):
        return 0
