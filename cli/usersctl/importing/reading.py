"""Reading an import file: JSON lines, CSV (formula-safe cells undone), a JSON array or (for
apply) a YAML list, as records with their line numbers; a BOM, invalid UTF-8, over-long lines and
malformed files are refused."""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any

from usersctl.csv_cells import from_formula_safe
from usersctl.errors import InvalidInput
from usersctl.fields import (
    NESTING_TOO_DEEP,
)
from usersctl.importing.rows import FORMATS, MAX_LINE_BYTES, ImportRejected, Problem


class TextRecord(dict[str, str]):
    """A CSV row: every value is text, read by each column's text form (JSON lines and JSON
    give JSON values instead), with the ``'`` of a formula-safe cell taken off."""


class UnreadableRecord(dict[str, Any]):
    """A record Python's JSON reader cannot hold (a value nested too deep, a number of
    thousands of digits): a problem of its line, as an invalid row is, and the file's other
    lines are still checked. Empty, so that the validator stops at its first test."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class _LongNumber:
    """Stands in for an integer with more digits than ``int()`` reads (4300 by default)."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int_or_long(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return _LongNumber(len(text.lstrip("-")))


#: Reads JSON as ``json.loads`` does, but a number too long for ``int()`` becomes a marker.
_MARKING_DECODER = json.JSONDecoder(parse_int=_int_or_long)


def _long_number_reason(value: Any) -> str | None:
    """Why ``value`` (read by ``_MARKING_DECODER``) cannot be read: the field whose number has
    too many digits; None when it has no such number."""
    pending: list[tuple[Any, str | None]] = [(value, None)]
    while pending:
        item, field_name = pending.pop()
        if isinstance(item, _LongNumber):
            where = f"field {field_name!r}: " if field_name is not None else ""
            return f"{where}number has too many digits ({item.digits})"
        if isinstance(item, dict):
            pending.extend((child, field_name or key) for key, child in item.items())
        elif isinstance(item, list):
            pending.extend((child, field_name) for child in item)
    return None


def _unreadable(text: str, start: int = 0) -> tuple[Any, int]:
    """The JSON value at ``start`` of ``text`` and where it ends, for a value ``json.loads``
    could not hold: an ``UnreadableRecord`` saying why, or the value when it reads after all.
    Raises ``json.JSONDecodeError`` for text that is not JSON."""
    try:
        value, end = _MARKING_DECODER.raw_decode(text, start)
    except RecursionError:
        return UnreadableRecord(NESTING_TOO_DEEP), _value_end(text, start)
    reason = _long_number_reason(value)
    return (value if reason is None else UnreadableRecord(reason)), end


_STRING_REST = re.compile(r'(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r'[\[\]{}"]')


def _value_end(text: str, start: int) -> int:
    """Where the array or object at ``start`` ends (its brackets counted, strings skipped), or
    the end of ``text`` when it does not."""
    depth = 0
    position = start
    while True:
        found = _BRACKETS.search(text, position)
        if found is None:
            return len(text)
        mark, position = found.group(), found.end()
        if mark == '"':
            rest = _STRING_REST.match(text, position)
            if rest is None:
                return len(text)
            position = rest.end()
        elif mark in "[{":
            depth += 1
        else:
            depth -= 1
            if depth <= 0:
                return position


def format_for(name: str | None, given: str | None, *, yaml: bool = False) -> str | None:
    """The input format: ``given``, else the file name's ending (``.jsonl``, ``.ndjson``, ``.csv``,
    ``.json``, and with ``yaml`` ``.yaml``/``.yml``); ``None`` when it must be guessed from the
    content."""
    if given:
        return given
    if not name or name == "-":
        return None
    lowered = name.lower()
    endings: list[tuple[str, str]] = [
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".csv", "csv"),
        (".json", "json"),
    ]
    if yaml:
        endings += [(".yaml", "yaml"), (".yml", "yaml")]
    for ending, kind in endings:
        if lowered.endswith(ending):
            return kind
    return None


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """Decoded lines with their numbers; refuses a BOM, invalid UTF-8 and over-long lines."""
    number = 0
    while True:
        raw = stream.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        number += 1
        if len(raw) > MAX_LINE_BYTES:
            raise ImportRejected([Problem(number, f"line is longer than {MAX_LINE_BYTES} bytes")])
        if number == 1 and raw.startswith(codecs.BOM_UTF8):
            raise ImportRejected(
                [Problem(1, "the file starts with a byte-order mark; save it as UTF-8 without BOM")]
            )
        try:
            text = raw.decode("utf-8")  # a line break never splits a UTF-8 sequence
        except UnicodeDecodeError:
            raise ImportRejected([Problem(number, "not valid UTF-8")]) from None
        yield number, text


def read_records(
    stream: IO[bytes], fmt: str | None, *, raw_csv: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Records from a JSON lines, CSV, JSON or YAML file, each with its line (or item) number.

    With ``fmt=None`` the first character decides: ``[`` JSON, ``{`` JSON lines, else CSV. A
    CSV cell written formula-safe (``usersctl.csv_cells``) is read back as the text it holds,
    unless ``raw_csv``.
    """
    lines = _lines(stream)
    if fmt is None:
        first = next(lines, None)
        if first is None:
            return
        start = first[1].lstrip()
        fmt = "json" if start.startswith("[") else "jsonl" if start.startswith("{") else "csv"
        lines = _chain(first, lines)
    if fmt == "jsonl":
        yield from _read_jsonl(lines)
    elif fmt == "csv":
        yield from _read_csv(lines, raw_csv)
    elif fmt == "json":
        yield from _read_json(lines)
    elif fmt == "yaml":
        yield from _read_yaml(lines)
    else:
        raise InvalidInput(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def _chain(first: tuple[int, str], rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    yield first
    yield from rest


def _read_jsonl(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, text in lines:
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _not_json(exc, number) from None
        except (RecursionError, ValueError):
            # Nested too deep, or a number of thousands of digits: a problem of this line.
            try:
                record, _ = _unreadable(text, len(text) - len(text.lstrip()))
            except json.JSONDecodeError as exc:
                raise _not_json(exc, number) from None
        if not isinstance(record, dict):
            raise ImportRejected([Problem(number, "expected a JSON object")])
        yield number, record


def _not_json(exc: json.JSONDecodeError, line: int | None = None) -> ImportRejected:
    return ImportRejected(
        [Problem(exc.lineno if line is None else line, f"not valid JSON ({exc.msg})")]
    )


def _read_json(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    text = "".join(line for _, line in lines)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _not_json(exc) from None
    except (RecursionError, ValueError):
        # An item nested too deep, or a number of thousands of digits: read item by item.
        yield from _json_items(text)
        return
    if not isinstance(document, list):
        raise ImportRejected([Problem(1, "expected a JSON array of objects")])
    for index, record in enumerate(document, start=1):
        if not isinstance(record, dict):
            raise ImportRejected([Problem(index, "expected a JSON object")])
        yield index, record


_SPACE = re.compile(r"[ \t\n\r]*")


def _json_items(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The items of a JSON array one by one, for an array ``json.loads`` cannot hold: each item
    nested too deep, or holding a number of thousands of digits, is an ``UnreadableRecord``, and
    the items after it are still read."""

    def skip(position: int) -> int:
        found = _SPACE.match(text, position)
        return found.end() if found else position

    position = skip(0)
    if not text.startswith("[", position):
        raise ImportRejected([Problem(1, "expected a JSON array of objects")])
    position = skip(position + 1)
    index = 0
    try:
        while not (index == 0 and text.startswith("]", position)):
            index += 1
            record, end = _unreadable(text, position)
            if not isinstance(record, dict):
                raise ImportRejected([Problem(index, "expected a JSON object")])
            yield index, record
            if end >= len(text):
                return  # an item nested too deep that never ends: nothing after it to read
            position = skip(end)
            if text.startswith("]", position):
                break
            if not text.startswith(",", position):
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
            position = skip(position + 1)
        if skip(position + 1) != len(text):
            raise json.JSONDecodeError("Extra data", text, skip(position + 1))
    except json.JSONDecodeError as exc:
        raise _not_json(exc) from None


def _read_csv(
    lines: Iterator[tuple[int, str]], raw_csv: bool
) -> Iterator[tuple[int, dict[str, Any]]]:
    numbers: list[int] = [0]

    def texts() -> Iterator[str]:
        for number, text in lines:
            numbers[0] = number
            yield text

    reader = csv.reader(texts(), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        header = [name.strip() for name in header]
        seen: set[str] = set()
        for name in header:
            if not name:
                raise ImportRejected([Problem(1, "the header has an empty column name")])
            if name in seen:
                raise ImportRejected([Problem(1, f"the header names {name!r} twice")])
            seen.add(name)
        for cells in reader:
            if not cells or cells == [""]:
                continue
            if len(cells) != len(header):
                raise ImportRejected(
                    [Problem(numbers[0], f"expected {len(header)} fields, found {len(cells)}")]
                )
            # An empty cell means "not given": the column's default applies.
            yield (
                numbers[0],
                TextRecord(
                    (name, cell if raw_csv else from_formula_safe(cell))
                    for name, cell in zip(header, cells, strict=True)
                    if cell != ""
                ),
            )
    except csv.Error as exc:
        raise ImportRejected([Problem(numbers[0], f"malformed CSV ({exc})")]) from None


def _read_yaml(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """The items of a YAML list of mappings, each with the line it starts on, read by PyYAML's
    safe loader only (no tags that build Python objects). Dates and times become ISO 8601 text,
    as JSON carries them, for the columns' converters."""
    import yaml

    text = "".join(line for _, line in lines)
    loader = None
    try:
        # Making the loader already refuses a character YAML does not allow (a control
        # character), with no mark but the position in the text.
        loader = yaml.SafeLoader(text)
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        if mark is not None:
            where = mark.line + 1
        else:  # a ReaderError: where the character is in the text
            where = text.count("\n", 0, getattr(exc, "position", 0)) + 1
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ImportRejected([Problem(where, f"not valid YAML ({reason})")]) from None
    except RecursionError:
        raise ImportRejected([Problem(1, NESTING_TOO_DEEP)]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if document is None:
        return
    if not isinstance(document, list) or not isinstance(node, yaml.SequenceNode):
        raise ImportRejected([Problem(1, "expected a YAML list of users")])
    for item, record in zip(node.value, document, strict=True):
        line = item.start_mark.line + 1
        if not isinstance(record, dict):
            raise ImportRejected([Problem(line, "expected a mapping of field names to values")])
        if not all(isinstance(key, str) for key in record):
            raise ImportRejected([Problem(line, "field names must be text")])
        yield line, {key: _json_like(value) for key, value in record.items()}


def _json_like(value: Any) -> Any:
    """A YAML date or time as ISO 8601 text, as JSON would carry it; other values as they are."""
    import datetime

    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return value
