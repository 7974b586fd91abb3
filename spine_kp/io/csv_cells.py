"""CSV cells a spreadsheet cannot run (OWASP "CSV injection").

Excel, LibreOffice and Google Sheets treat a cell that starts with ``=``, ``+``, ``-`` or ``@`` as a formula (and a
leading tab or carriage return can hide one), so a StudyInstanceUID such as ``=HYPERLINK("http://x","y")`` copied
from a DICOM header would run when the CSV is opened. Such a cell gets a leading single quote, which the spreadsheet
shows as text. Plain numbers (``-1.50``, ``+3``, ``1e-3``) are left as they are, so negative coordinates stay numbers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text, with a leading ``'`` when a spreadsheet would read it as a formula."""
    text = str(value)
    if text.startswith(_TRIGGERS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def safe_row(values: Iterable[object]) -> list[str]:
    """:func:`safe_cell` of every value of a row."""
    return [safe_cell(v) for v in values]
