"""Column values and their written forms: text (``--set``, CSV, tables) and JSON (JSON lines).

Every column type a user table may have gets one text form and one JSON form, used both ways:
``converter_for`` reads them into the column's Python type (for imports and ``--set``), and
``forms_for`` writes Python values out in them (for ``list-users``, ``show-user`` and
``export-users``), so what one command prints another reads back unchanged. A type with no form
here is refused when a value is given for it, never passed through as text.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import (
    ARRAY,
    JSON,
    Boolean,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    Numeric,
    PickleType,
    String,
    Time,
    TypeDecorator,
    TypeEngine,
)

from usersctl.errors import InvalidInput
from usersctl.models import is_uuid_type

TRUE_WORDS = frozenset({"true", "t", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "f", "no", "n", "0", "off"})

Converter = Callable[[Any], Any]


class UnsupportedType(ValueError):
    """A column type usersctl has no text form for."""


#: How deep arrays and objects may nest in a JSON or array value. Deeper ones are refused when
#: read: Python's JSON reader and writer recurse, and a value nested some hundreds of levels deep,
#: once stored, could be neither written to the database nor read back and exported.
MAX_NESTING = 100
NESTING_TOO_DEEP = f"nesting too deep (arrays or objects more than {MAX_NESTING} levels deep)"


def json_kind(value: Any) -> str:
    """What a JSON value is, in words, for a message that must not quote it: ``a number``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def wrong_type(expected: str, value: Any) -> TypeError:
    """The error for a value of the wrong JSON type: ``must be a string (got a number)``."""
    return TypeError(f"must be {expected} (got {json_kind(value)})")


def check_nesting(value: Any) -> Any:
    """``value``, unless its arrays and objects nest more than ``MAX_NESTING`` levels deep."""
    if not isinstance(value, (list, dict)):
        return value
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_NESTING:
            raise ValueError(NESTING_TOO_DEEP)
        children = item.values() if isinstance(item, dict) else item
        pending.extend((child, depth + 1) for child in children if isinstance(child, (list, dict)))
    return value


def parse_bool(value: Any) -> bool:
    """``true/false``, ``yes/no``, ``1/0``, ``on/off`` (any case), or a JSON boolean."""
    if isinstance(value, int) and value in (0, 1):  # True and False among them
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    elif not isinstance(value, int):
        raise wrong_type("true or false", value)
    raise ValueError(f"{value!r} is not a boolean (use true or false)")


def _to_uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise wrong_type("a UUID as a string", value)
    return uuid.UUID(value.strip())


#: The widest integer SQLite and PostgreSQL (BIGINT) store; a wider one is refused here.
INT64 = range(-(2**63), 2**63)


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise wrong_type("an integer", value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip()
        digits = text[1:] if text[:1] in ("+", "-") else text
        if not digits.isdecimal():  # isdigit() takes "²", which int() refuses
            raise ValueError(f"{value!r} is not an integer")
        if len(digits) > 19:  # int() would refuse thousands of digits, with a message of its own
            raise ValueError(
                f"number has too many digits ({len(digits)}) for a 64-bit integer (at most 19)"
            )
        number = int(text)
    if number not in INT64:
        raise ValueError(f"{value!r} is out of range for a 64-bit integer")
    return number


def _to_decimal(value: Any) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, decimal.Decimal)):
        raise wrong_type("a number", value)
    try:
        number = decimal.Decimal(str(value).strip())
    except decimal.InvalidOperation:
        raise ValueError(f"{value!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    return number


def _to_float(value: Any) -> float:
    number = float(_to_decimal(value))
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is out of range")
    return number


def _iso_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise wrong_type(f"{what} in ISO 8601, as a string", value)
    return value.strip()


def _to_datetime(value: Any, aware: bool) -> dt.datetime:
    if isinstance(value, dt.datetime):
        moment = value
    else:
        text = _iso_text(value, "a date and time")
        try:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:  # its message quotes the text as changed here
            raise ValueError(f"{value!r} is not a date and time in ISO 8601") from None
    if not aware:
        if moment.tzinfo is not None:
            # UTC given explicitly (Z, +00:00) names the same time as the column holds: apps
            # store UTC in such columns. Any other offset would need a guess.
            if moment.utcoffset() != dt.timedelta(0):
                raise ValueError(
                    f"{value!r} has a UTC offset other than +00:00, but the column stores times "
                    "without a time zone"
                )
            moment = moment.replace(tzinfo=None)
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    # In UTC: SQLite keeps the text without its offset, so only UTC reads back the same.
    return moment.astimezone(dt.timezone.utc)


def _to_date(value: Any) -> dt.date:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    try:
        return dt.date.fromisoformat(_iso_text(value, "a date"))
    except ValueError:
        raise ValueError(f"{value!r} is not a date in ISO 8601") from None


def _to_time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value
    text = _iso_text(value, "a time")
    try:
        return dt.time.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not a time in ISO 8601") from None


_DURATION = re.compile(
    r"(?P<sign>-)?P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d{1,6})?)S)?)?",
)


def format_duration(delta: dt.timedelta) -> str:
    """An interval in ISO 8601, always with days, hours, minutes and seconds: ``P1DT2H3M4.5S``."""
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    hours, rest = divmod(delta.seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    fraction = f".{delta.microseconds:06d}".rstrip("0") if delta.microseconds else ""
    return f"{sign}P{delta.days}DT{hours}H{minutes}M{seconds}{fraction}S"


def _to_timedelta(value: Any) -> dt.timedelta:
    if isinstance(value, dt.timedelta):
        return value
    text = _iso_text(value, "a duration").upper()
    match = _DURATION.fullmatch(text)
    if match is None or text.rstrip("T").endswith("P"):
        raise ValueError(
            f"{value!r} is not an ISO 8601 duration in weeks, days, hours, minutes and seconds "
            "(such as P1DT2H30M; months and years have no fixed length)"
        )
    parts = {
        name: float(amount)
        for name, amount in match.groupdict().items()
        if amount and name != "sign"
    }
    delta = dt.timedelta(**parts)
    return -delta if match["sign"] else delta


def _to_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise wrong_type("base64 text, as a string", value)
    try:
        return base64.b64decode(value.strip(), validate=True)
    except binascii.Error:
        raise ValueError("is not valid base64") from None


def _to_text(value: Any, length: int | None) -> str:
    if not isinstance(value, str):
        raise wrong_type("a string", value)
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


def _enum_members(kind: Enum) -> list[tuple[str, Any]]:
    """Each label the database stores, with the Python value the column type takes for it."""
    labels = list(kind.enums)
    if kind.enum_class is None:
        return [(label, label) for label in labels]
    # SQLAlchemy lists the labels in the order of the class's members, aliases left out.
    members = [m for name, m in kind.enum_class.__members__.items() if m.name == name]
    return list(zip(labels, members, strict=False))


def _enum_converter(kind: Enum) -> Converter:
    by_label = dict(_enum_members(kind))
    allowed = ", ".join(by_label)

    def convert(value: Any) -> Any:
        if isinstance(value, str) and value.strip() in by_label:
            return by_label[value.strip()]
        if not isinstance(value, str):
            raise wrong_type(f"one of {allowed}, as a string", value)
        raise ValueError(f"{value!r} is not one of {allowed}")

    return convert


def _array_converter(item: Converter) -> Converter:
    def elements(values: list[Any]) -> list[Any]:
        return [
            None if value is None else elements(value) if isinstance(value, list) else item(value)
            for value in values
        ]

    return lambda value: elements(check_nesting(_expect_list(value)))


def _expect_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise wrong_type('a JSON array such as ["a", "b"]', value)
    return value


def _array_text(value: Any) -> Any:
    try:
        return _from_json_text(value)
    except InvalidJSON:
        raise ValueError(f'{value!r} is not a JSON array (such as ["a", "b"])') from None


class InvalidJSON(ValueError):
    """Text that is not JSON at all."""


def _from_json_text(value: Any) -> Any:
    if not isinstance(value, str):
        return check_nesting(value)
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise InvalidJSON(f"not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise ValueError(NESTING_TOO_DEEP) from None
    except ValueError as exc:  # int()'s limit on digits, for a number thousands of digits long
        raise ValueError(f"number has too many digits ({exc})") from None
    return check_nesting(parsed)  # outside: its error is not about digits


def _unwrapped(kind: TypeEngine[Any]) -> TypeEngine[Any]:
    """The type a decorator stores as, for the types whose forms are those of what they store."""
    # A pickled column holds any Python object: it has no form, whatever it is stored as.
    while isinstance(kind, TypeDecorator) and not isinstance(kind, (Interval, PickleType)):
        if is_uuid_type(kind):
            return kind
        kind = kind.impl_instance
    return kind


def _is_interval(kind: TypeEngine[Any]) -> bool:
    if isinstance(kind, Interval):
        return True
    try:
        return kind.python_type is dt.timedelta  # PostgreSQL's INTERVAL
    except NotImplementedError:
        return False


def _base_converter(kind: TypeEngine[Any], *, textual: bool) -> Converter:
    """Reads a value given as text (``textual``) or as JSON into the Python type of ``kind``."""
    kind = _unwrapped(kind)
    if is_uuid_type(kind):
        return _to_uuid
    if isinstance(kind, ARRAY):
        items = _array_converter(_base_converter(kind.item_type, textual=False))
        return (lambda value: items(_array_text(value))) if textual else items
    if isinstance(kind, JSON):
        return _from_json_text if textual else check_nesting
    if isinstance(kind, Enum):
        return _enum_converter(kind)
    if isinstance(kind, Boolean):
        return parse_bool
    if isinstance(kind, Integer):
        return _to_int
    if isinstance(kind, Float):
        return _to_float
    if isinstance(kind, Numeric):
        as_decimal = bool(kind.asdecimal)
        return lambda value: _to_decimal(value) if as_decimal else float(_to_decimal(value))
    if isinstance(kind, DateTime):
        aware = bool(kind.timezone)
        return lambda value: _to_datetime(value, aware)
    if isinstance(kind, Date):
        return _to_date
    if isinstance(kind, Time):
        return _to_time
    if _is_interval(kind):
        return _to_timedelta
    if isinstance(kind, LargeBinary):
        return _to_bytes
    if isinstance(kind, String):
        length = kind.length
        return lambda value: _to_text(value, length)
    return _refuse(kind)


def _refuse(kind: TypeEngine[Any]) -> Converter:
    def convert(value: Any) -> Any:
        raise UnsupportedType(
            f"the column's type {type_name(kind)} has no text form in usersctl, so no value "
            "can be written to it (leave it out, or set it with the app)"
        )

    return convert


def type_name(kind: TypeEngine[Any]) -> str:
    """A column type as a person reads it: ``VARCHAR[]``, ``INET``, ``NUMERIC(10, 2)``."""
    if isinstance(kind, TypeDecorator):
        return type(kind).__name__  # what the app declared, not what it is stored as
    try:
        return str(kind)
    except Exception:  # a type that only compiles for its own dialect
        return type(kind).__name__.upper()


#: A MySQL/MariaDB time type as its DDL reads, with its fractional-second precision if any.
_MYSQL_TIME = re.compile(r"(DATETIME|TIMESTAMP|TIME)(?:\((\d)\))?")


def _seconds_kept(kind: TypeEngine[Any], dialect: Dialect | None) -> tuple[str, int] | None:
    """On MySQL/MariaDB, a time column's type as stored (``DATETIME``) and how many digits of a
    second it keeps (its fsp, 0 unless declared: ``DATETIME(6)``); None elsewhere. The server
    drops the digits beyond, without an error, so a value with more is refused instead."""
    if dialect is None or dialect.name not in ("mysql", "mariadb"):
        return None
    if not isinstance(_unwrapped(kind), (DateTime, Time)):
        return None
    try:
        stored = kind.compile(dialect=dialect)
    except Exception:  # a type that does not compile for MySQL: nothing known of it
        return None
    match = _MYSQL_TIME.fullmatch(stored)
    if match is None:
        return None
    return stored, int(match[2] or 0)


def _keeping_digits(convert: Converter, stored: str, digits: int) -> Converter:
    """``convert``, refusing a time whose fraction of a second has more than ``digits`` digits."""
    unit = 10 ** (6 - digits)

    def checked(value: Any) -> Any:
        moment = convert(value)
        if isinstance(moment, (dt.datetime, dt.time)) and moment.microsecond % unit:
            plural = "" if digits == 1 else "s"
            kept = f"{digits} digit{plural} of a second" if digits else "whole seconds only"
            raise ValueError(
                f"has fractions of a second, but the column is {stored}, which keeps {kept}: "
                "MySQL/MariaDB would drop the rest without a word (round the value, or declare "
                "the column DATETIME(6) or TIME(6))"
            )
        return moment

    return checked


def converter_for(
    column: Column[Any],
    *,
    textual: bool = True,
    quote: bool = True,
    dialect: Dialect | None = None,
) -> Converter:
    """A function converting values for ``column``; raises ``InvalidInput`` naming the field.

    ``textual`` values are text (``--set``, a CSV cell): there the text ``null`` is NULL, and
    arrays and JSON are written as JSON. Otherwise they are JSON values, and ``None`` is NULL.
    Without ``quote`` an error never shows the value: in a file whose columns are mixed up, the
    value refused as a boolean may be a password. ``dialect``, the database's, refuses what it
    would store otherwise than given (a time's fractions of a second on MySQL/MariaDB).
    """
    name = column.name
    nullable = bool(column.nullable)
    base = _base_converter(column.type, textual=textual)
    kept = _seconds_kept(column.type, dialect)
    if kept is not None:
        base = _keeping_digits(base, *kept)

    def convert(value: Any) -> Any:
        try:
            if value is None or (
                textual and isinstance(value, str) and value.strip().lower() == "null"
            ):
                if not nullable:
                    raise ValueError("may not be null")
                return None
            return base(value)
        except (ValueError, TypeError, ArithmeticError) as exc:
            reason = str(exc) if quote else _without(str(exc), value)
            raise InvalidInput(f"field {name!r}: {reason}") from None
        except RecursionError:  # a value nested as deep as the JSON reader goes
            raise InvalidInput(f"field {name!r}: {NESTING_TOO_DEEP}") from None

    return convert


def _without(reason: str, value: Any) -> str:
    """``reason`` with ``value``, as the converters quote it (``repr``), replaced by words; only
    where it stands alone: the value ``inf`` is not taken out of the word "finite"."""
    try:
        shown = repr(value)
    except RecursionError:  # nested too deep to print: no message quotes such a value
        return reason
    return re.sub(rf"(?<!\w){re.escape(shown)}(?!\w)", "the value", reason)


def convert_value(column: Column[Any], value: Any, dialect: Dialect | None = None) -> Any:
    """``value``, text from CSV or ``--set``, as the column's Python type (as ``dialect``
    stores it, when given)."""
    return converter_for(column, dialect=dialect)(value)


# Writing values out --------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueForm:
    """How one column's values are written: ``json`` gives the JSON value, ``text`` the text
    (never called with ``None``, which is JSON null and an empty cell). ``is_text``: the values
    are text as stored, which anyone may have typed (``is_text_type``)."""

    json: Callable[[Any], Any]
    text: Callable[[Any], str]
    is_text: bool = False


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _plain_text(value: Any) -> str:
    # JSON's words for the rest: true, false, numbers as written
    return value if isinstance(value, str) else _json_text(value)


def _uuid_json(value: Any) -> str:
    return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


def _datetime_json(aware: bool) -> Callable[[Any], Any]:
    def write(value: Any) -> Any:
        if not isinstance(value, dt.datetime):
            return str(value)
        if aware:
            # SQLite gives back the UTC text it was given, without the offset.
            zone = value.tzinfo or dt.timezone.utc
            value = value.replace(tzinfo=zone).astimezone(dt.timezone.utc)
        return value.isoformat()

    return write


def _json_writer(kind: TypeEngine[Any]) -> Callable[[Any], Any]:
    kind = _unwrapped(kind)
    if is_uuid_type(kind):
        return _uuid_json
    if isinstance(kind, ARRAY):
        item = _json_writer(kind.item_type)

        def elements(values: Any) -> Any:
            return [
                None if v is None else elements(v) if isinstance(v, (list, tuple)) else item(v)
                for v in values
            ]

        return elements
    if isinstance(kind, JSON):
        return lambda value: value
    if isinstance(kind, Enum):
        labels = {member: label for label, member in _enum_members(kind)}
        return lambda value: labels.get(
            value, value.name if isinstance(value, enum.Enum) else value
        )
    if isinstance(kind, (Boolean, Integer)):
        return lambda value: value
    if isinstance(kind, Float):  # a Decimal where the type says asdecimal (MySQL's DOUBLE, read)
        return lambda value: float(value) if isinstance(value, decimal.Decimal) else value
    if isinstance(kind, Numeric):
        return str  # exact, as JSON numbers are not once read as floats
    if isinstance(kind, DateTime):
        return _datetime_json(bool(kind.timezone))
    if isinstance(kind, (Date, Time)):
        return lambda value: value.isoformat()
    if _is_interval(kind):
        return format_duration
    if isinstance(kind, LargeBinary):
        return lambda value: base64.b64encode(bytes(value)).decode("ascii")
    return any_json


def any_json(value: Any) -> Any:
    """A value of no known column as JSON: UUIDs and decimals as text, times in ISO 8601."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (uuid.UUID, decimal.Decimal)):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return format_duration(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (list, tuple)):
        return [any_json(item) for item in value]
    if isinstance(value, dict):
        return {str(key): any_json(item) for key, item in value.items()}
    return str(value)


def is_text_type(kind: TypeEngine[Any]) -> bool:
    """Whether a column type holds text as it was given (``String``, ``Text``, enums), whose
    CSV cells are written formula-safe; numbers, booleans, times and UUIDs, written by usersctl,
    cannot hold a formula."""
    plain = _unwrapped(kind)
    return isinstance(plain, String) and not is_uuid_type(plain)


def form_for(kind: TypeEngine[Any]) -> ValueForm:
    """The JSON and text forms of values of a column type."""
    write = _json_writer(kind)
    if isinstance(_unwrapped(kind), (ARRAY, JSON)):
        # Always JSON text, also for a JSON string: "a" stays "a" with its quotes.
        return ValueForm(write, lambda value: _json_text(write(value)))
    return ValueForm(write, lambda value: _plain_text(write(value)), is_text_type(kind))


def forms_for(table: Table) -> Mapping[str, ValueForm]:
    """The forms of every column of ``table``, by column name."""
    return {column.name: form_for(column.type) for column in table.columns}
