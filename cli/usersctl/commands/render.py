"""Rendering rows: a table for people, JSON, JSON lines or CSV for scripts.

Machine formats are written to plain stdout, never through a styled console, so nothing wraps or
colours them. Messages go to stderr through ``say``.
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import enum
import json
import os
import sys
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

import typer


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
    the terminal nor forge a line of output. JSON, JSON lines and CSV keep the exact data."""
    return text.translate(_TERMINAL_ESCAPES)


def say(message: str) -> None:
    """A message for the person running the command, on stderr, one line."""
    typer.echo(for_terminal(message), err=True)


def say_lines(text: str) -> None:
    """A message of several lines (advice, code to paste), each line shown as ``say`` shows one."""
    for line in text.rstrip("\n").split("\n"):
        say(line)


def to_jsonable(value: Any) -> Any:
    """Column values as JSON-friendly types: UUIDs and decimals as text, times as ISO 8601."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    return str(value)


def to_text(value: Any) -> str:
    """A value as a table or CSV cell: booleans as true/false, NULL as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    plain = to_jsonable(value)
    return plain if isinstance(plain, str) else json.dumps(plain, ensure_ascii=False)


def _cell(value: Any) -> str:
    """A value as a table cell on a terminal: as in CSV, with control characters escaped."""
    return for_terminal(to_text(value))


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
) -> int:
    """Write rows in ``output`` format; ``single`` prints one object (JSON) or a field/value table.

    Rows are consumed as they come (JSON lines and CSV stream); returns how many were written.
    A reader that stops early (``| head``) ends the command quietly with exit 141.
    """
    from usersctl.commands.errors import stdout_closed

    try:
        out = stream or sys.stdout
        count = 0
        if output is OutputFormat.jsonl:
            for row in rows:
                out.write(json.dumps(to_jsonable(row), ensure_ascii=False) + "\n")
                count += 1
        elif output is OutputFormat.json:
            materialised = [to_jsonable(row) for row in rows]
            payload: Any = materialised[0] if single and materialised else materialised
            out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
            count = len(materialised)
        elif output is OutputFormat.csv:
            writer = csv.DictWriter(out, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({key: to_text(row.get(key)) for key in columns})
                count += 1
        else:
            materialised_rows = list(rows)
            count = len(materialised_rows)
            if single and materialised_rows:
                _render_fields(materialised_rows[0], columns, out, title)
            else:
                _render_table(materialised_rows, columns, out, title)
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
    rows: list[dict[str, Any]], columns: Sequence[str], out: TextIO, title: str | None
) -> None:
    if _use_rich(out):
        from rich.table import Column, Table
        from rich.text import Text

        table = Table(
            *(Column(header=Text(for_terminal(column))) for column in columns), title=title
        )
        for row in rows:
            # Text, not str: a stored "[/x]" is data, not Rich markup.
            table.add_row(*(Text(_cell(row.get(column))) for column in columns))
        if _print_if_it_fits(table, out):
            return
    headers = [for_terminal(column) for column in columns]
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
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
    row: dict[str, Any], columns: Sequence[str], out: TextIO, title: str | None
) -> None:
    names = [column for column in columns if column in row]
    if _use_rich(out):
        from rich.table import Table
        from rich.text import Text

        table = Table("field", "value", title=title, show_header=False)
        for name in names:
            table.add_row(Text(for_terminal(name)), Text(_cell(row[name])))
        if _print_if_it_fits(table, out):
            return
    shown = [for_terminal(name) for name in names]
    width = max((len(name) for name in shown), default=0)
    for name, label in zip(names, shown, strict=True):
        out.write(f"{label.ljust(width)}  {_cell(row[name])}\n")
