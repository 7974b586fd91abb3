"""Text from untrusted files, made safe to print and to write: what an encoding cannot hold becomes an escape.

JSON may carry a lone surrogate (``"\\ud800"``) in any string, e.g. a ``studyUid``; Python decodes it, but no UTF-8
stream or file can encode it, and printing it ends in ``UnicodeEncodeError``. Messages and outputs pass such text
through :func:`escape_unencodable`, so the character shows as the escape ``\\ud800`` instead of a traceback.

A leaf module: it imports nothing of the project.
"""

from __future__ import annotations

import codecs
from typing import TextIO


def escape_unencodable(text: str, encoding: str = "utf-8") -> str:
    """``text`` with every character ``encoding`` cannot encode written as a backslash escape (``\\ud800``).

    Text that encodes is returned unchanged; an unknown encoding name counts as UTF-8.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    try:
        text.encode(encoding)
        return text
    except UnicodeEncodeError:
        return text.encode(encoding, "backslashreplace").decode(encoding)


def write_escaped(stream: TextIO, text: str) -> None:
    """Write ``text`` to ``stream`` (e.g. ``sys.stdout``), escaping what the stream's encoding cannot hold."""
    stream.write(escape_unencodable(text, getattr(stream, "encoding", None) or "utf-8"))
