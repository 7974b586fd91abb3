"""The append-only journal of a review: every accepted change, on disk before the server answers.

``REVIEWED.journal.jsonl`` lies beside ``--out`` (:func:`journal_path`). One JSON object a line:

- line 1, the header: ``{"predictions": ABSOLUTE PATH, "sha256": DIGEST OF THE PREDICTIONS FILE}``; a journal made
  from another predictions file is refused (its edits would land on other predictions);
- a study: ``{"study": UID, "version": N, "state": ..., "landmarks": [...], "time": ISO 8601}``, the full state of
  the study after a change, so replaying keeps the last line of each study;
- the cursor: ``{"cursor": {"uid": ..., "filter": {...}}, "time": ...}``, where the user was.

Each line is written with one ``write``, flushed and fsynced. A server killed in the middle of a write leaves a last
line without its newline: :func:`read_journal` ignores it (a warning says so) and :meth:`Journal.open` cuts it off,
so the next line starts clean. A broken line before the last is not a torn write but a damaged file: it is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from spine_kp.errors import UserError

SUFFIX = ".journal.jsonl"


class JournalError(UserError, ValueError):
    """A journal that cannot be replayed: damaged, or made from another predictions file."""


def journal_path(out: str | Path) -> Path:
    """``REVIEWED.json`` -> ``REVIEWED.journal.jsonl`` (beside it)."""
    p = Path(out)
    return p.with_name(p.stem + SUFFIX)


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def now() -> str:
    """The time of a journal line: UTC, ISO 8601, seconds."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Replay:
    """What a journal holds.

    Attributes:
        entries: the lines after the header, in order.
        length: bytes of the file up to the end of the last complete line (where appending continues).
        warnings: lines for stderr (a torn last line).
    """

    entries: list[dict[str, Any]] = field(default_factory=list)
    length: int = 0
    warnings: list[str] = field(default_factory=list)


def _header(obj: dict[str, Any], path: Path, predictions: Path, digest: str) -> None:
    if not (isinstance(obj.get("predictions"), str) and isinstance(obj.get("sha256"), str)):
        raise JournalError(f"{path}: line 1 is not a review journal header; move the file away or pass another --out")
    if obj["sha256"] != digest:
        raise JournalError(
            f"{path}: this journal was made from another predictions file ({obj['predictions']}), not from "
            f"{predictions} (or that file changed since); move the journal away or pass another --out"
        )


def read_journal(path: str | Path, predictions: str | Path, digest: str) -> Replay:
    """Read a journal (none yet: an empty :class:`Replay`).

    Args:
        path: the journal.
        predictions: the predictions file of this review (for the message).
        digest: its SHA-256 (:func:`file_digest`), which the header must name.

    Raises:
        JournalError: a broken line before the last, a first line that is no header, or another predictions file.
    """
    path = Path(path)
    if not path.exists():
        return Replay()
    data = path.read_bytes()
    replay = Replay()
    start = 0
    number = 0
    while start < len(data):
        number += 1
        end = data.find(b"\n", start)
        try:
            obj = json.loads(data[start : len(data) if end < 0 else end])
        except ValueError:  # not JSON, or not UTF-8
            obj = None
        if end < 0:  # no newline: the write was cut off, whatever it holds
            replay.warnings.append(f"{path}: line {number} was cut off (the server stopped while writing it): ignored")
            break
        if not isinstance(obj, dict):
            raise JournalError(f"{path}: line {number} is not a journal entry; the file is damaged: move it away")
        if number == 1:
            _header(obj, path, Path(predictions), digest)
        else:
            replay.entries.append(obj)
        replay.length = start = end + 1
    return replay


class Journal:
    """An open journal: :meth:`append` writes one line durably. Not thread-safe: the session holds its lock."""

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._fh = handle

    @classmethod
    def open(cls, path: str | Path, predictions: str | Path, digest: str, replay: Replay) -> Journal:
        """Open for appending after what :func:`read_journal` accepted (a torn last line is cut off); a new journal
        starts with its header."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            os.truncate(path, replay.length)
        handle = open(path, "ab")
        journal = cls(path, handle)
        if replay.length == 0:
            journal.append({"predictions": str(Path(predictions).resolve()), "sha256": digest})
        return journal

    def append(self, entry: dict[str, Any]) -> None:
        """Write ``entry`` as one line, then flush and fsync: on disk before the caller answers."""
        # ASCII escapes: a UID holding a lone surrogate still makes one valid line
        self._fh.write(json.dumps(entry, allow_nan=False).encode("ascii") + b"\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()
