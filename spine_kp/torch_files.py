"""The one way spine_kp reads a torch file: as data, never as code.

``torch.load`` unpickles, and a pickle can call any function it names, so a crafted ``.ckpt`` or ``.pth`` would run
its payload the moment it is opened. Every torch file spine_kp reads (training checkpoints for ``predict``,
``export``, ``train --init`` and ``train --resume``, fold ensembles, and ``model.pretrained`` backbone weights) goes
through :func:`load_torch_file`, which uses PyTorch's weights-only unpickler: it rebuilds tensors, storages and plain
containers (dict, OrderedDict, list, tuple, str, int, float, bool, None) and, beyond those, only the types listed in
:data:`ALLOWED_GLOBALS`. Any other global in the file (a function, a class, ``os.system``...) stops the load before
anything of the file runs, and the file is refused with one :class:`UnsafeFileError` line naming it and what it
asked for.

``ALLOWED_GLOBALS`` is what a spine_kp checkpoint may hold besides those: numpy scalars and dtypes (metrics and
fitted constants that an older release stored without converting to ``float``). Constructing them runs no code of
the file's choosing.

Imports only torch, numpy and :mod:`spine_kp.errors` (a leaf).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spine_kp.errors import UserError


def _numpy_globals() -> list[Any]:
    """numpy's scalar constructor and the dtype classes its scalars pickle with (names differ across numpy 1/2)."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_)]
    return [scalar, np.dtype, *dtypes]


#: Types a spine_kp torch file may hold beyond tensors and plain containers (see module docstring).
ALLOWED_GLOBALS: tuple[Any, ...] = tuple(_numpy_globals())


class UnsafeFileError(UserError, ValueError):
    """A torch file that needs code (a global outside the allow-list) to load; nothing of it was run."""


@contextmanager
def allowed_globals() -> Iterator[None]:
    """Within: ``torch.load(..., weights_only=True)`` also accepts :data:`ALLOWED_GLOBALS` (and nothing else).

    For loaders that call ``torch.load`` themselves (Lightning's ``Trainer.fit(ckpt_path=..., weights_only=True)``).
    """
    with torch.serialization.safe_globals(list(ALLOWED_GLOBALS)):
        yield


def load_torch_file(path: str | Path, mmap: bool = False) -> Any:
    """Read a torch file as data (weights-only unpickling with :data:`ALLOWED_GLOBALS`).

    Args:
        path: a file written by ``torch.save``.
        mmap: map the tensors instead of reading them (falls back to reading for a legacy, non-zip file).

    Raises:
        UnsafeFileError: the file names a global outside the allow-list (nothing of it ran).
        pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError: not a readable torch file; callers turn
            these into their own one-line errors.
    """
    p = Path(path)
    with allowed_globals():
        try:
            if mmap:
                try:
                    return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
                except RuntimeError as exc:
                    if "mmap" not in str(exc) and "zipfile" not in str(exc):
                        raise
            return torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            names = _globals_asked(p, exc)
            if names:
                raise UnsafeFileError(f"{p}: refused: it needs code to load ({names}); {_GUARANTEE}") from None
            raise pickle.UnpicklingError(_reason(exc)) from None  # not a pickle at all: the caller says "unreadable"


_GUARANTEE = "a spine_kp file holds only tensors and plain data, and nothing in it was run"


def _globals_asked(path: Path, exc: Exception) -> str:
    """The globals outside the allow-list that the file names ('' when it names none: it is not a pickle at all)."""
    try:
        names = [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if not _allowed_name(g)]
    except Exception:  # a legacy (non-zip) file cannot be listed; read the name from the unpickler's message
        names = []
    if not names:
        found = re.search(r"(?:Unsupported global: GLOBAL|unsupported GLOBAL) ([\w.]+)", str(exc))
        names = [found.group(1).rstrip(".")] if found else []
    return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")


def _reason(exc: Exception) -> str:
    """torch's one-line cause from its long weights-only message (e.g. 'Unsupported operand 110')."""
    text = str(exc)
    tail = text.split("WeightsUnpickler error:", 1)[-1] if "WeightsUnpickler error:" in text else text
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip() and not ln.strip().startswith("Check the doc")]
    return lines[0] if lines else "not a pickle"


def _allowed_name(name: str) -> bool:
    return name in {f"{getattr(g, '__module__', '')}.{getattr(g, '__qualname__', '')}" for g in ALLOWED_GLOBALS}


__all__ = ["ALLOWED_GLOBALS", "UnsafeFileError", "allowed_globals", "load_torch_file"]
