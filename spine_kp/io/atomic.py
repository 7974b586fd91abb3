"""Atomic file output: write to a temporary file beside the target, then rename onto it.

A reader never sees a half-written file, and an interrupted run leaves no partial output behind. An OSError while
writing (a full disk, a read-only file system) names the target, not the temporary file, so the CLI reports it as one
``error:`` line about the path the user gave.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from spine_kp.errors import UserError


class OutputNotWritableError(UserError, OSError):
    """An output path whose folder cannot be created or written (e.g. under ``/proc``, or a read-only mount)."""


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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if _names_no_target(exc, tmp_path):  # a write into the open file (ENOSPC) carries no file name
            raise type(exc)(exc.errno, exc.strerror, str(target)) from exc  # type: ignore[union-attr]
        raise


def _names_no_target(exc: BaseException, tmp: Path) -> bool:
    """True for a builtin OSError with an errno whose file name is missing or is the temporary file."""
    return (
        isinstance(exc, OSError)
        and type(exc).__module__ == "builtins"  # a subclass may take other constructor arguments
        and exc.errno is not None
        and exc.filename in (None, str(tmp), tmp)
    )


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
        PermissionError: the nearest existing folder may not be written.
        OutputNotWritableError: creating the missing folders or a file in the output's folder fails (a pseudo file
            system such as ``/proc``, a read-only mount, also when running as root). The probe removes what it
            created, so nothing is left behind.
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
    _probe(target, target if folder else target.parent, existing)


def _probe(path: Path, folder: Path, existing: Path) -> None:
    """Create the missing folders down to ``folder`` and one empty file in it, then remove them again.

    ``os.access`` says yes to root everywhere, also under ``/proc`` or on a read-only mount: only trying tells.
    """
    missing = [p for p in (folder, *folder.parents) if p != existing and existing in p.parents]
    created: list[Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
        fd, tmp = tempfile.mkstemp(prefix=".spine_kp_probe.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else folder
        if isinstance(where, str) and where.startswith(str(folder) + os.sep):  # the probe file: name its folder
            where = folder
        raise OutputNotWritableError(
            f"{path}: cannot be written ({where}: {exc.strerror or exc}); choose another path"
        ) from exc
    finally:
        for d in reversed(created):
            with contextlib.suppress(OSError):
                d.rmdir()
