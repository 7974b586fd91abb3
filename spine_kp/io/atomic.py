"""Atomic file output: write to a temporary file beside the target, then rename onto it.

A reader never sees a half-written file, and an interrupted run leaves no partial output behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    On any exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # name the folder that cannot be written, not the temporary file
        raise type(exc)(exc.errno, exc.strerror, str(target.parent)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(path: str | Path, folder: bool = False) -> None:
    """Fail now, before long work, with the OSError that writing ``path`` later would raise.

    Args:
        path: an output file (or, with ``folder``, an output folder) that need not exist yet.
        folder: ``path`` is a folder to create or fill.

    Raises:
        NotADirectoryError: ``path`` (as a folder) or a folder above it is a regular file.
        IsADirectoryError: the output file ``path`` is an existing folder.
        PermissionError: the nearest existing folder may not be written (not detected when running as root).
    """
    target = Path(path)
    if target.exists():
        if folder and not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(target))
        if not folder and target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
    existing = next((p for p in (target, *target.parents) if p.exists()), Path("."))
    if existing == target and not folder:
        existing = target.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(existing))
