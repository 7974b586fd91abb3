"""File names for per-study outputs (overlay PNGs, DICOM SRs): safe on any file system and never shared by two studies.

A StudyInstanceUID is kept as the file stem when it is already a safe name: letters, digits, ``.``, ``-`` and ``_``
only, no leading or trailing dot, at most :data:`MAX_STEM` characters. Any other UID is sanitised (other characters
become ``_``, dots stripped from the ends, cut to length) and gets ``-`` plus the first 8 hex digits of the SHA-1 of
the original UID, so ``1.2.3/4``, ``1.2.3_4`` and ``1.2.3 4`` get three names. A kept UID never ends like a hashed
stem (one that does is hashed as well), so the two kinds cannot meet. Within one run, :func:`study_file_stems` also
separates stems that would still meet, by an 8-digit hash collision or on a case-insensitive file system (``A`` vs
``a``), by giving those the full 40-digit hash.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable

MAX_STEM = 120
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_LOOKS_HASHED = re.compile(r"-[0-9a-f]{8}(?:[0-9a-f]{32})?$", re.IGNORECASE)


def _sha1(uid: str) -> str:
    # surrogatepass: a UID read from a hostile file may hold a lone surrogate; it still needs a name
    return hashlib.sha1(uid.encode("utf-8", "surrogatepass")).hexdigest()


def _hashed(uid: str, digits: int) -> str:
    safe = _UNSAFE.sub("_", uid).strip(".")[: MAX_STEM - 1 - digits] or "study"
    return f"{safe}-{_sha1(uid)[:digits]}"


def study_file_stem(uid: str) -> str:
    """The file stem of one study's outputs: the UID itself when it is a safe name, else sanitised plus a hash."""
    if _UNSAFE.search(uid) or not uid.strip(".") or uid != uid.strip(".") or len(uid) > MAX_STEM:
        return _hashed(uid, 8)
    if _LOOKS_HASHED.search(uid):
        return _hashed(uid, 8)
    return uid


def study_file_stems(uids: Iterable[str]) -> dict[str, str]:
    """One stem per distinct UID, distinct from each other even when upper and lower case are the same file.

    Args:
        uids: the study UIDs of one run (repeats are fine).

    Returns:
        UID -> stem; the stems of different UIDs differ case-insensitively.
    """
    stems = {uid: study_file_stem(uid) for uid in dict.fromkeys(uids)}
    counts = Counter(stem.lower() for stem in stems.values())
    for uid, stem in stems.items():
        if counts[stem.lower()] > 1:  # 8 hex digits met, or case differs only: the full hash separates them
            stems[uid] = _hashed(uid, 40)
    return stems
