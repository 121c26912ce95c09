"""CSV cells that a spreadsheet shows as text and never runs as a formula (OWASP's advice on
CSV injection).

Excel, LibreOffice and Google Sheets take a cell starting with ``=``, ``+``, ``-``, ``@``, a tab
or a carriage return for a formula: a sign-up field holding ``=HYPERLINK(...)`` would run when an
admin opens the export. Such text is written with a leading ``'``, which spreadsheets read as
"this is text" and do not show, and ``import-users`` takes it off again.

Text that starts with quotes before such a character gets one more quote too, so the round trip
is exact for every value: ``formula_safe`` adds a quote exactly where ``from_formula_safe`` finds
the pattern, and a value that needed no quote never has it. ``formula_safe_sql`` is the same
rule for the database's rendering of CSV (``usersctl.exporting``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import ColumnElement

#: What a spreadsheet takes for the start of a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def formula_safe(text: str) -> str:
    """``text`` as a CSV cell: with one more leading ``'`` when, past its leading quotes, it
    starts like a formula."""
    return "'" + text if text.lstrip("'").startswith(FORMULA_STARTS) else text


def from_formula_safe(cell: str) -> str:
    """The text a ``formula_safe`` cell holds: its first ``'`` taken off where, past its leading
    quotes, it starts like a formula."""
    if cell.startswith("'") and cell.lstrip("'").startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def formula_safe_sql(text: ColumnElement[Any]) -> ColumnElement[Any]:
    """``formula_safe`` of a text expression, in SQL that SQLite and PostgreSQL both run; NULL
    stays NULL."""
    from sqlalchemy import case, func, literal

    first = func.substr(func.ltrim(text, "'"), 1, 1)
    return case((first.in_(FORMULA_STARTS), literal("'") + text), else_=text)
