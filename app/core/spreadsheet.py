"""Spreadsheets: writing ones safe to open (text a spreadsheet would run as a formula stays text), and what reading a
damaged one can raise."""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from openpyxl import Workbook

# What reading a damaged or hostile zip (an .xlsx) can raise besides BadZipFile: a header claiming a newer zip
# version, a truncated or corrupt deflate stream, a bad offset. Each means "not a workbook we can read".
ZIP_ERRORS: tuple[type[Exception], ...] = (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError,
                                           KeyError, zlib.error)


def inert(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula (=, +, -, @ first) is kept as text: an address, a note or a
    reason typed by anyone must never execute on the clerk's PC."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") and not value.lstrip("\t").isdigit():
        return "'" + value
    return value


def xlsx_bytes(sheet: str, header: Sequence[Any], rows: Iterable[Sequence[Any]],
               widths: Sequence[int] | None = None) -> bytes:
    """One sheet: a header row and data rows, every text cell made inert."""
    return xlsx_sheets([(sheet, header, rows, widths or ())])


def xlsx_sheets(sheets: Iterable[tuple[str, Sequence[Any], Iterable[Sequence[Any]], Sequence[int]]]) -> bytes:
    """Several sheets, each (title, header row, data rows, column widths), every text cell made inert."""
    wb = Workbook(write_only=True)
    for title, header, rows, widths in sheets:
        ws = wb.create_sheet(title)
        for i, w in enumerate(widths):
            ws.column_dimensions[chr(ord("A") + i)].width = w
        ws.append(list(header))
        for r in rows:
            ws.append([inert(v) for v in r])
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
