"""Converting text and JSON values to a column's type, for imports and ``--set FIELD=VALUE``."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column
from sqlalchemy.types import JSON, Boolean, Date, DateTime, Integer, Numeric, String, Time, Uuid

from usersctl.db import GUID
from usersctl.errors import InvalidInput

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off"})

Converter = Callable[[Any], Any]


def parse_bool(value: Any) -> bool:
    """``true/false``, ``yes/no``, ``1/0``, ``on/off`` (any case), or a JSON boolean."""
    if value is True or value is False:
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def _to_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value).strip())


#: The widest integer SQLite and PostgreSQL (BIGINT) store; a wider one is refused here.
INT64 = range(-(2**63), 2**63)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        if not text.lstrip("+-").isdigit() or len(text) > 20:
            raise ValueError(f"{value!r} is not an integer")
        number = int(text)
    if number not in INT64:
        raise ValueError(f"{number} is out of range for a 64-bit integer")
    return number


def _to_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    try:
        return decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None


def _to_datetime(value: Any, aware: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        moment = dt.datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    if aware and moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return moment


def _to_text(value: Any, length: int | None) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not text")
    if length is not None and len(value) > length:
        raise ValueError(f"longer than {length} characters")
    if "\x00" in value:
        raise ValueError("contains a NUL character")
    if not encodes_as_utf8(value):
        raise ValueError("is not valid UTF-8 text")
    return value


def encodes_as_utf8(text: str) -> bool:
    """Whether ``text`` can be written as UTF-8: not when it holds a lone surrogate, which JSON
    can carry (``"\\ud800"``) but no database column or password hasher takes."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _base_converter(column: Column[Any]) -> Converter:
    kind = column.type
    if isinstance(kind, (GUID, Uuid)):
        return _to_uuid
    if isinstance(kind, Boolean):
        return parse_bool
    if isinstance(kind, Integer):
        return _to_int
    if isinstance(kind, Numeric):
        as_decimal = bool(kind.asdecimal)
        return lambda value: _to_decimal(value) if as_decimal else float(_to_decimal(value))
    if isinstance(kind, DateTime):
        aware = bool(kind.timezone)
        return lambda value: _to_datetime(value, aware)
    if isinstance(kind, Date):
        return lambda value: (
            value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value).strip())
        )
    if isinstance(kind, Time):
        return lambda value: (
            value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value).strip())
        )
    if isinstance(kind, JSON):
        return lambda value: json.loads(value) if isinstance(value, str) else value
    if isinstance(kind, String):
        length = kind.length
        return lambda value: _to_text(value, length)
    return lambda value: value


def converter_for(column: Column[Any]) -> Converter:
    """A function converting values for ``column``; raises ``InvalidInput`` naming the field.

    ``None``, and the text ``null``, become NULL where the column allows it.
    """
    name = column.name
    nullable = bool(column.nullable)
    base = _base_converter(column)

    def convert(value: Any) -> Any:
        try:
            if value is None or (isinstance(value, str) and value.strip().lower() == "null"):
                if not nullable:
                    raise ValueError("may not be null")
                return None
            return base(value)
        except (ValueError, TypeError, ArithmeticError) as exc:
            raise InvalidInput(f"field {name!r}: {exc}") from None

    return convert


def convert_value(column: Column[Any], value: Any) -> Any:
    """``value`` (text from CSV or ``--set``, or a JSON value) as the column's Python type."""
    return converter_for(column)(value)
