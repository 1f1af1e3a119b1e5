"""Reading uploaded CSV and XLSX files as rows of cells.

CSV files come from everywhere: UTF-8 with or without a byte-order mark, and,
from Chinese Excel, GB18030 (a superset of GBK). Delimiters are sniffed among
comma, semicolon and tab. XLSX is read with openpyxl in read-only mode so a
large sheet streams instead of loading whole.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from openpyxl import load_workbook

SAMPLE_ROWS = 5
_XLSX_MAGIC = b"PK\x03\x04"


class FileError(ValueError):
    """The file as a whole cannot be read; the message is for the person who uploaded it."""


@dataclass(frozen=True)
class Preview:
    headers: list[str]
    sample: list[list[str]]
    total_rows: int


def detect_format(filename: str, content: bytes) -> str:
    name = filename.lower()
    if content.startswith(_XLSX_MAGIC) or name.endswith((".xlsx", ".xlsm")):
        if not content.startswith(_XLSX_MAGIC):
            raise FileError("The file is named .xlsx but is not an Excel workbook")
        return "xlsx"
    if name.endswith(".xls"):
        raise FileError("Old Excel files (.xls) are not supported: save the sheet as .xlsx or CSV")
    return "csv"


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return content.decode("gb18030")
    except UnicodeDecodeError:
        raise FileError("The file is neither UTF-8 nor GB18030 text; save it as CSV UTF-8") from None


def _csv_rows(content: bytes) -> Iterator[list[Any]]:
    text = _decode(content)
    head = text[:8192]
    try:
        dialect: Any = csv.Sniffer().sniff(head, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    try:
        yield from csv.reader(io.StringIO(text, newline=""), dialect)
    except csv.Error as exc:
        raise FileError(f"The CSV file is malformed: {exc}") from None


def _cell(value: Any) -> Any:
    if isinstance(value, datetime) and not (value.hour or value.minute or value.second):
        return value.date()
    return value


def _xlsx_rows(content: bytes) -> Iterator[list[Any]]:
    try:
        book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a damaged file
        raise FileError(f"The Excel file cannot be read: {exc}") from None
    try:
        sheet = book.worksheets[0]
        for values in sheet.iter_rows(values_only=True):
            yield [_cell(v) for v in values]
    finally:
        book.close()


def iter_rows(content: bytes, fmt: str) -> Iterator[list[Any]]:
    """Every row including the header, as cells (str from CSV; str, numbers or dates from XLSX)."""
    return _xlsx_rows(content) if fmt == "xlsx" else _csv_rows(content)


def blank_row(cells: list[Any]) -> bool:
    try:
        return not "".join(cells).strip()  # a CSV row: all text
    except TypeError:
        return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def show(value: Any) -> str:
    """A cell as a person reads it (for samples and reports)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def preview(content: bytes, fmt: str) -> Preview:
    rows = iter_rows(content, fmt)
    headers: list[str] | None = None
    sample: list[list[str]] = []
    total = 0
    for cells in rows:
        if headers is None:
            if blank_row(cells):
                continue
            headers = [show(c).strip() for c in cells]
            while headers and not headers[-1]:
                headers.pop()
            continue
        if blank_row(cells):
            continue
        total += 1
        if len(sample) < SAMPLE_ROWS:
            sample.append([show(c) for c in cells[: len(headers)]])
    if not headers:
        raise FileError("The file is empty: the first row must name the columns")
    if len(headers) > 200:
        raise FileError("The file has more than 200 columns")
    return Preview(headers=[h or f"#{i + 1}" for i, h in enumerate(headers)], sample=sample, total_rows=total)


def data_rows(content: bytes, fmt: str) -> Iterator[tuple[int, list[Any]]]:
    """(row number as a spreadsheet shows it, cells) for every non-blank row after the header."""
    header_seen = False
    for number, cells in enumerate(iter_rows(content, fmt), start=1):
        if blank_row(cells):
            continue
        if not header_seen:
            header_seen = True
            continue
        yield number, cells
