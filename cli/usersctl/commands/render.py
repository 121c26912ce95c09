"""Rendering rows: a table for people, JSON, JSON lines or CSV for scripts.

Machine formats are written to plain stdout, never through a styled console, so nothing wraps or
colours them. Messages go to stderr through ``say``.
"""

from __future__ import annotations

import csv
import enum
import json
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TextIO

import typer

from usersctl.csv_cells import formula_safe


class OutputFormat(str, enum.Enum):
    """``-o/--output``: how rows are printed."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


#: Characters a terminal acts on instead of showing: C0 controls (ESC starts colour, cursor
#: and OSC sequences: window titles, hyperlinks), DEL, C1 controls (CSI, OSC in one byte), and
#: the bidirectional overrides that reorder what is shown. Each is shown as a visible escape.
_TERMINAL_ESCAPES: dict[int, str] = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0))
}
_TERMINAL_ESCAPES.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})
_TERMINAL_ESCAPES.update(
    {code: f"\\u{code:04x}" for code in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
)


def for_terminal(text: str) -> str:
    """``text`` made safe to show on a terminal: control characters become visible escapes
    (``\\x1b``, ``\\n``), so data from strangers (a sign-up form's fields) can neither drive
    the terminal nor forge a line of output. JSON, JSON lines and CSV keep the exact data
    (CSV formula-safe: ``usersctl.csv_cells``)."""
    return text.translate(_TERMINAL_ESCAPES)


#: ``-q/--quiet`` (or ``USERSCTL_QUIET``) for this invocation: set by the root command from its
#: ``Settings``, reset when the command ends.
QUIET: ContextVar[bool] = ContextVar("usersctl_quiet", default=False)


def say(message: str) -> None:
    """A message for the person running the command, on stderr, one line: what changed, counts,
    footers. ``-q/--quiet`` silences it; ``warn`` and errors are never silenced."""
    if not QUIET.get():
        warn(message)


def warn(message: str) -> None:
    """A warning, or what a question asks about, on stderr, one line, also with ``-q``."""
    typer.echo(for_terminal(message), err=True)


def say_lines(text: str) -> None:
    """A message of several lines (advice, code to paste), each line shown as ``say`` shows one."""
    for line in text.rstrip("\n").split("\n"):
        say(line)


def to_jsonable(value: Any) -> Any:
    """A value of no known column as JSON: UUIDs and decimals as text, times in ISO 8601."""
    from usersctl.fields import any_json

    return any_json(value)


def to_text(value: Any) -> str:
    """A value as a table or CSV cell: booleans as true/false, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = to_jsonable(value)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)


def _json_row(row: dict[str, Any], forms: Mapping[str, Any]) -> dict[str, Any]:
    """A row with each column's value in its JSON form (``usersctl.fields.forms_for``)."""
    return {
        key: to_jsonable(value) if value is None or key not in forms else forms[key].json(value)
        for key, value in row.items()
    }


def _text(row: dict[str, Any], key: str, forms: Mapping[str, Any]) -> str:
    """A column's value in its text form, as ``--set`` and CSV imports read it."""
    value = row.get(key)
    return to_text(value) if value is None or key not in forms else str(forms[key].text(value))


def _csv_cell(row: dict[str, Any], key: str, forms: Mapping[str, Any]) -> str:
    """A column's value as a CSV cell: its text form, formula-safe where it is text (a text
    column, or text of no known column), so a spreadsheet never runs it."""
    text = _text(row, key, forms)
    is_text = forms[key].is_text if key in forms else isinstance(row.get(key), str)
    return formula_safe(text) if is_text else text


def _cell(row: dict[str, Any], key: str, forms: Mapping[str, Any]) -> str:
    """A column's value as a table cell on a terminal: its text form, control characters
    escaped (the data comes from strangers)."""
    return for_terminal(_text(row, key, forms))


def _use_rich(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def render_rows(
    rows: Iterable[dict[str, Any]],
    output: OutputFormat,
    *,
    columns: Sequence[str],
    single: bool = False,
    title: str | None = None,
    stream: TextIO | None = None,
    forms: Mapping[str, Any] | None = None,
    raw_csv: bool = False,
) -> int:
    """Write rows in ``output`` format; ``single`` prints one object (JSON) or a field/value table.

    ``forms`` (``usersctl.fields.forms_for`` of the user table) writes each column's values in
    the forms ``--set`` and imports read; other values are written by their Python type. CSV
    cells of text are formula-safe (``usersctl.csv_cells``) unless ``raw_csv``.

    Rows are consumed as they come (JSON lines and CSV stream); returns how many were written.
    A reader that stops early (``| head``) ends the command quietly with exit 141.
    """
    from usersctl.commands.errors import stdout_closed

    try:
        out = stream or sys.stdout
        forms = forms or {}
        count = 0
        if output is OutputFormat.jsonl:
            for row in rows:
                out.write(json.dumps(_json_row(row, forms), ensure_ascii=False) + "\n")
                count += 1
        elif output is OutputFormat.json:
            materialised = [_json_row(row, forms) for row in rows]
            payload: Any = materialised[0] if single and materialised else materialised
            out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
            count = len(materialised)
        elif output is OutputFormat.csv:
            writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            cell = _text if raw_csv else _csv_cell
            for row in rows:
                writer.writerow({key: cell(row, key, forms) for key in columns})
                count += 1
        else:
            materialised_rows = list(rows)
            count = len(materialised_rows)
            if single and materialised_rows:
                _render_fields(materialised_rows[0], columns, out, title, forms)
            else:
                _render_table(materialised_rows, columns, out, title, forms)
        out.flush()
        return count
    except BrokenPipeError:
        stdout_closed()


def _print_if_it_fits(table: Any, out: TextIO) -> bool:
    """Print a Rich table if the terminal is wide enough for every cell whole. Narrower, Rich
    would cut ids and emails short ("admin@example.c…"), which nobody can copy: the caller then
    prints plain columns, which the terminal wraps whole."""
    from rich.console import Console
    from rich.measure import Measurement

    console = Console(file=out)
    natural = Measurement.get(console, console.options.update_width(1_000_000), table)
    if natural.maximum > console.width:
        return False
    console.print(table)
    return True


def _render_table(
    rows: list[dict[str, Any]],
    columns: Sequence[str],
    out: TextIO,
    title: str | None,
    forms: Mapping[str, Any],
) -> None:
    if _use_rich(out):
        from rich.table import Column, Table
        from rich.text import Text

        table = Table(
            *(Column(header=Text(for_terminal(column))) for column in columns), title=title
        )
        for row in rows:
            # Text, not str: a stored "[/x]" is data, not Rich markup.
            table.add_row(*(Text(_cell(row, column, forms)) for column in columns))
        if _print_if_it_fits(table, out):
            return
    headers = [for_terminal(column) for column in columns]
    cells = [[_cell(row, column, forms) for column in columns] for row in rows]
    widths = [
        max([len(header)] + [len(line[i]) for line in cells]) for i, header in enumerate(headers)
    ]
    out.write(
        "  ".join(
            header.ljust(width) for header, width in zip(headers, widths, strict=True)
        ).rstrip()
        + "\n"
    )
    for line in cells:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
            + "\n"
        )


def _render_fields(
    row: dict[str, Any],
    columns: Sequence[str],
    out: TextIO,
    title: str | None,
    forms: Mapping[str, Any],
) -> None:
    names = [column for column in columns if column in row]
    if _use_rich(out):
        from rich.table import Table
        from rich.text import Text

        table = Table("field", "value", title=title, show_header=False)
        for name in names:
            table.add_row(Text(for_terminal(name)), Text(_cell(row, name, forms)))
        if _print_if_it_fits(table, out):
            return
    shown = [for_terminal(name) for name in names]
    width = max((len(name) for name in shown), default=0)
    for name, label in zip(names, shown, strict=True):
        out.write(f"{label.ljust(width)}  {_cell(row, name, forms)}\n")
