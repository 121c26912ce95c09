"""Column values read from text and JSON and written back (usersctl.fields), at the library's
level: the exact value each form gives, and the exact words of each refusal."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import json
import uuid
from typing import Any

import pytest
from sqlalchemy import (
    ARRAY,
    JSON,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    PickleType,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    Uuid,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.dialects.mysql import mariadb
from sqlalchemy.types import TypeEngine, UserDefinedType

from usersctl.db.types import GUID
from usersctl.errors import InvalidInput
from usersctl.fields import (
    NESTING_TOO_DEEP,
    any_json,
    check_nesting,
    convert_value,
    converter_for,
    encodes_as_utf8,
    form_for,
    forms_for,
    is_text_type,
    json_kind,
    type_name,
)


def refusal(column: Column[Any], value: Any, *, textual: bool = True, quote: bool = True) -> str:
    with pytest.raises(InvalidInput) as error:
        converter_for(column, textual=textual, quote=quote)(value)
    return str(error.value)


@pytest.mark.parametrize("typed", ["²", "1²", "-³", "٣²"])
def test_a_superscript_digit_is_no_integer(typed: str) -> None:
    # str.isdigit() takes "²", which int() then refused in Python's own words.
    assert refusal(Column("age", Integer), typed) == f"field 'age': {typed!r} is not an integer"
    assert refusal(Column("age", Integer), typed, quote=False) == (
        "field 'age': the value is not an integer"
    )


def test_digits_of_other_scripts_are_integers() -> None:
    assert converter_for(Column("age", Integer))("١٢") == 12  # Arabic-Indic, as int() reads them


@pytest.mark.parametrize(
    ("typed", "shown"),
    [("9223372036854775808", "'9223372036854775808'"), (-(2**63) - 1, "-9223372036854775809")],
)
def test_an_integer_out_of_range_is_quoted_as_typed_and_hidden_when_asked(
    typed: Any, shown: str
) -> None:
    column = Column("age", Integer)
    assert refusal(column, typed, textual=isinstance(typed, str)) == (
        f"field 'age': {shown} is out of range for a 64-bit integer"
    )
    # In a file whose columns may be mixed up the value is never shown: it may be a password.
    assert refusal(column, typed, textual=isinstance(typed, str), quote=False) == (
        "field 'age': the value is out of range for a 64-bit integer"
    )


# Reading: every column type from text and from JSON -------------------------------------------


class Colour(enum.Enum):
    RED = "r"
    GREEN = "g"
    CRIMSON = "r"  # an alias of RED: not a label of its own


class Wrapped(TypeDecorator[str]):
    impl = String(5)
    cache_ok = True


def read(kind: TypeEngine[Any], value: Any, *, textual: bool = True) -> Any:
    return converter_for(Column("x", kind), textual=textual)(value)


def refused(kind: TypeEngine[Any], value: Any, *, textual: bool = True) -> str:
    message = refusal(Column("x", kind), value, textual=textual)
    assert message.startswith("field 'x': ")
    return message.removeprefix("field 'x': ")


AWARE = DateTime(timezone=True)
KOLKATA = dt.timezone(dt.timedelta(hours=5, minutes=30))
UID = uuid.UUID("0123abcd-ef01-4567-89ab-cdef01234567")  # letters: upper case is another text


@pytest.mark.parametrize(
    ("kind", "typed", "value"),
    [
        (Boolean(), " YES ", True),
        (Boolean(), "Off", False),
        *[(Boolean(), word, True) for word in ("true", "t", "yes", "y", "1", "on")],
        *[(Boolean(), word, False) for word in ("false", "f", "no", "n", "0", "off")],
        (Integer(), " +12 ", 12),
        (Integer(), "-12", -12),
        (Integer(), "9223372036854775807", 2**63 - 1),
        (Integer(), "-9223372036854775808", -(2**63)),
        (Integer(), "0000000000000000007", 7),  # 19 digits
        (Numeric(10, 2), " 1.50 ", decimal.Decimal("1.50")),
        (Numeric(10, 2, asdecimal=False), "1.5", 1.5),
        (Float(), "1e3", 1000.0),
        (AWARE, "2024-01-01T12:00:00+05:30", dt.datetime(2024, 1, 1, 6, 30, tzinfo=dt.UTC)),
        (AWARE, " 2024-01-01T12:00:00Z ", dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)),
        (AWARE, "2024-01-01 12:00", dt.datetime(2024, 1, 1, 12, tzinfo=dt.UTC)),  # taken as UTC
        (DateTime(), "2024-01-01T12:00:00Z", dt.datetime(2024, 1, 1, 12)),
        (DateTime(), "2024-01-01T12:00:00+00:00", dt.datetime(2024, 1, 1, 12)),
        (DateTime(), "2024-01-01T12:00:00", dt.datetime(2024, 1, 1, 12)),
        (Date(), " 2024-02-29 ", dt.date(2024, 2, 29)),
        (Time(), "12:30:01", dt.time(12, 30, 1)),
        (Time(), "12:30Z", dt.time(12, 30, tzinfo=dt.UTC)),
        (Interval(), "P1W2DT3H4M5.5S", dt.timedelta(days=9, hours=3, minutes=4, seconds=5.5)),
        (Interval(), " -pt1h ", -dt.timedelta(hours=1)),
        (Interval(), "P3D", dt.timedelta(days=3)),
        (Interval(), "PT0.000001S", dt.timedelta(microseconds=1)),
        (postgresql.INTERVAL(), "PT2M", dt.timedelta(minutes=2)),
        (LargeBinary(), " aGVsbG8= ", b"hello"),
        (String(5), "five5", "five5"),
        (String(), "x" * 1000, "x" * 1000),
        (Wrapped(), "abc", "abc"),
        (Text(), "é\n", "é\n"),
        (Enum("a", "b"), " b ", "b"),
        (Enum(Colour), "RED", Colour.RED),
        (Enum(Colour), "GREEN", Colour.GREEN),
        (Uuid(), f" {UID} ", UID),
        (GUID(), str(UID).upper(), UID),
        (ARRAY(Integer), '[1, "2", [3, null]]', [1, 2, [3, None]]),
        (ARRAY(String), '["a,b"]', ["a,b"]),
        (JSON(), '{"a": [1, "x", null]}', {"a": [1, "x", None]}),
        (JSON(), '"null"', "null"),
    ],
)
def test_text_is_read_into_the_columns_type(kind: TypeEngine[Any], typed: str, value: Any) -> None:
    assert read(kind, typed) == value
    assert type(read(kind, typed)) is type(value)


@pytest.mark.parametrize(
    ("kind", "given", "value"),
    [
        (Boolean(), True, True),
        (Boolean(), 0, False),
        (Boolean(), 1, True),
        (Integer(), 3.0, 3),
        (Integer(), 7, 7),
        (Numeric(10, 2), 2, decimal.Decimal(2)),
        (Float(), 2, 2.0),
        (
            AWARE,
            dt.datetime(2024, 1, 1, 12, tzinfo=KOLKATA),
            dt.datetime(2024, 1, 1, 6, 30, tzinfo=dt.UTC),
        ),
        (Date(), dt.date(2024, 1, 1), dt.date(2024, 1, 1)),
        (Time(), dt.time(1, 2), dt.time(1, 2)),
        (Interval(), dt.timedelta(days=1), dt.timedelta(days=1)),
        (LargeBinary(), bytearray(b"ab"), b"ab"),
        (LargeBinary(), memoryview(b"ab"), b"ab"),
        (Uuid(), UID, UID),
        (ARRAY(Integer), [1, [2, None]], [1, [2, None]]),
        (JSON(), "null", "null"),  # a JSON string, not NULL
        (JSON(), [[1]], [[1]]),
        (String(), "null", "null"),
    ],
)
def test_json_values_are_read_into_the_columns_type(
    kind: TypeEngine[Any], given: Any, value: Any
) -> None:
    assert read(kind, given, textual=False) == value
    assert type(read(kind, given, textual=False)) is type(value)


@pytest.mark.parametrize(
    ("kind", "given", "message"),
    [
        (Boolean(), "maybe", "'maybe' is not a boolean (use true or false)"),
        (Boolean(), 2, "2 is not a boolean (use true or false)"),
        (Boolean(), 1.5, "must be true or false (got a number)"),
        (Boolean(), [], "must be true or false (got a list)"),
        (Integer(), True, "must be an integer (got a boolean)"),
        (Integer(), None.__class__, "must be an integer (got type)"),
        (Integer(), {}, "must be an integer (got an object)"),
        (Integer(), 3.5, "3.5 is not an integer"),
        (Integer(), "1.0", "'1.0' is not an integer"),
        (Integer(), "", "'' is not an integer"),
        (Integer(), "+", "'+' is not an integer"),
        (Integer(), "1" * 20, "number has too many digits (20) for a 64-bit integer (at most 19)"),
        (Integer(), 2**63, "9223372036854775808 is out of range for a 64-bit integer"),
        (Numeric(), "abc", "'abc' is not a number"),
        (Numeric(), "NaN", "'NaN' is not a finite number"),
        (Numeric(), False, "must be a number (got a boolean)"),
        (Numeric(), "x", "'x' is not a number"),
        (Numeric(), None.__class__, "must be a number (got type)"),
        (Float(), "1e400", "'1e400' is out of range"),
        (Float(), "-inf", "'-inf' is not a finite number"),
        (AWARE, "noon", "'noon' is not a date and time in ISO 8601"),
        (AWARE, 12, "must be a date and time in ISO 8601, as a string (got a number)"),
        (
            DateTime(),
            "2024-01-01T12:00:00+01:00",
            "'2024-01-01T12:00:00+01:00' has a UTC offset other than +00:00, but the column "
            "stores times without a time zone",
        ),
        (Date(), "2024-02-30", "'2024-02-30' is not a date in ISO 8601"),
        (Date(), 20240101, "must be a date in ISO 8601, as a string (got a number)"),
        (Time(), "25:00", "'25:00' is not a time in ISO 8601"),
        (Time(), 1, "must be a time in ISO 8601, as a string (got a number)"),
        *[
            (
                Interval(),
                typed,
                f"{typed!r} is not an ISO 8601 duration in weeks, days, hours, minutes and "
                "seconds (such as P1DT2H30M; months and years have no fixed length)",
            )
            for typed in ("P", "PT", "-P", "P1M", "P1Y", "1D", "PT1.5H", "P1.5D")
        ],
        (Interval(), 60, "must be a duration in ISO 8601, as a string (got a number)"),
        (LargeBinary(), "not base64!", "is not valid base64"),
        (LargeBinary(), 1, "must be base64 text, as a string (got a number)"),
        (String(5), "six666", "longer than 5 characters"),
        (String(), "a\x00b", "contains a NUL character"),
        (String(), "\ud800", "is not valid UTF-8 text"),
        (String(), 5, "must be a string (got a number)"),
        (Enum("a", "b"), "c", "'c' is not one of a, b"),
        (Enum("a", "b"), 1, "must be one of a, b, as a string (got a number)"),
        (Enum(Colour), "CRIMSON", "'CRIMSON' is not one of RED, GREEN"),
        (Uuid(), "nope", "badly formed hexadecimal UUID string"),
        (Uuid(), 5, "must be a UUID as a string (got a number)"),
        (ARRAY(Integer), "1,2", '\'1,2\' is not a JSON array (such as ["a", "b"])'),
        (ARRAY(Integer), "5", 'must be a JSON array such as ["a", "b"] (got a number)'),
        (ARRAY(Integer), '["x"]', "'x' is not an integer"),
        (JSON(), "{", "not valid JSON (Expecting property name enclosed in double quotes)"),
        (JSON(), "[" * 101 + "]" * 101, NESTING_TOO_DEEP),
        (JSON(), "[" * 100_000 + "]" * 100_000, NESTING_TOO_DEEP),
        (JSON(), "1" * 5000, "number has too many digits ("),
        (
            PickleType(),
            "x",
            "the column's type PickleType has no text form in usersctl, so no "
            "value can be written to it (leave it out, or set it with the app)",
        ),
        (
            postgresql.INT4RANGE(),
            "x",
            "the column's type INT4RANGE has no text form in usersctl, so no value can "
            "be written to it (leave it out, or set it with the app)",
        ),
    ],
)
def test_what_is_refused_and_in_which_words(
    kind: TypeEngine[Any], given: Any, message: str
) -> None:
    textual = isinstance(given, str)
    if message.endswith("("):
        assert refused(kind, given, textual=textual).startswith(message)
    else:
        assert refused(kind, given, textual=textual) == message


@pytest.mark.parametrize("depth", [100, 101])
def test_json_may_nest_100_levels_in_arrays_and_objects(depth: int) -> None:
    nested: Any = 1
    for level in range(depth):
        nested = [nested] if level % 2 else {"k": nested}
    text = json.dumps(nested)
    for kind in (JSON(), ARRAY(Integer)):
        given = [nested] if isinstance(kind, ARRAY) else nested
        if depth == 100 and isinstance(kind, JSON):
            assert read(kind, text) == nested
            assert read(kind, nested, textual=False) == nested
        elif isinstance(kind, JSON):
            assert refused(kind, text) == NESTING_TOO_DEEP
            assert refused(kind, nested, textual=False) == NESTING_TOO_DEEP
        else:
            assert NESTING_TOO_DEEP in refused(kind, given, textual=False) or depth == 100


def test_nesting_counts_the_deepest_branch_of_many() -> None:
    deep: Any = []
    for _ in range(98):
        deep = [deep]  # 99 levels
    assert check_nesting([1, {"a": 2}, deep]) == [1, {"a": 2}, deep]  # 100 levels
    with pytest.raises(ValueError, match="nesting too deep"):
        check_nesting([1, {"a": [2]}, [deep]])
    assert check_nesting("[[[") == "[[["


def test_null_is_null_where_the_column_takes_it() -> None:
    nullable, required = Column("x", Integer, nullable=True), Column("x", Integer, nullable=False)
    for typed in ("null", " NULL ", None):
        assert converter_for(nullable)(typed) is None
        assert refusal(required, typed) == "field 'x': may not be null"
    assert converter_for(nullable, textual=False)(None) is None
    assert refusal(nullable, "null", textual=False) == "field 'x': 'null' is not an integer"


def test_a_value_nested_as_deep_as_python_goes_is_refused_in_words() -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    assert refused(ARRAY(Integer), deep, textual=False) == NESTING_TOO_DEEP


def test_without_quote_the_value_is_taken_out_only_where_it_stands_alone() -> None:
    column = Column("score", Float)
    assert refusal(column, "inf", quote=False) == "field 'score': the value is not a finite number"
    assert refusal(column, float("inf"), textual=False, quote=False) == (
        "field 'score': the value is not a finite number"
    )
    assert (
        refusal(Column("n", Integer), "12a", quote=False)
        == "field 'n': the value is not an integer"
    )
    assert refusal(Column("n", Integer), "12a") == "field 'n': '12a' is not an integer"


def test_convert_value_reads_text() -> None:
    assert convert_value(Column("n", Integer), " 5 ") == 5


# Names of types, as messages show them --------------------------------------------------------


def test_type_names() -> None:
    assert type_name(Numeric(10, 2)) == "NUMERIC(10, 2)"
    assert type_name(Wrapped()) == "Wrapped"
    assert type_name(postgresql.INET()) == "INET"
    assert type_name(postgresql.INT4RANGE()) == "INT4RANGE"


# Writing: the JSON and text forms of every type ----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "as_json", "as_text"),
    [
        (Boolean(), True, True, "true"),
        (Boolean(), False, False, "false"),
        (Integer(), 5, 5, "5"),
        (Float(), 1.5, 1.5, "1.5"),
        (Numeric(10, 2), decimal.Decimal("1.50"), "1.50", "1.50"),
        (
            AWARE,
            dt.datetime(2024, 1, 1, 12, tzinfo=KOLKATA),
            "2024-01-01T06:30:00+00:00",
            "2024-01-01T06:30:00+00:00",
        ),
        (
            AWARE,
            dt.datetime(2024, 1, 1, 12),
            "2024-01-01T12:00:00+00:00",
            "2024-01-01T12:00:00+00:00",
        ),
        (AWARE, "2024-01-01 12:00:00", "2024-01-01 12:00:00", "2024-01-01 12:00:00"),
        (DateTime(), dt.datetime(2024, 1, 1, 12), "2024-01-01T12:00:00", "2024-01-01T12:00:00"),
        (Date(), dt.date(2024, 1, 2), "2024-01-02", "2024-01-02"),
        (Time(), dt.time(1, 2, 3), "01:02:03", "01:02:03"),
        (
            Interval(),
            dt.timedelta(days=1, hours=2, minutes=3, seconds=4.5),
            "P1DT2H3M4.5S",
            "P1DT2H3M4.5S",
        ),
        (Interval(), -dt.timedelta(hours=1), "-P0DT1H0M0S", "-P0DT1H0M0S"),
        (Interval(), dt.timedelta(0), "P0DT0H0M0S", "P0DT0H0M0S"),
        (Interval(), dt.timedelta(microseconds=1), "P0DT0H0M0.000001S", "P0DT0H0M0.000001S"),
        (
            Interval(),
            dt.timedelta(seconds=3599, microseconds=120000),
            "P0DT0H59M59.12S",
            "P0DT0H59M59.12S",
        ),
        (LargeBinary(), b"hello", "aGVsbG8=", "aGVsbG8="),
        (String(), "a\nb", "a\nb", "a\nb"),
        (Enum("a", "b"), "b", "b", "b"),
        (Enum(Colour), Colour.GREEN, "GREEN", "GREEN"),
        (Enum(Colour), "RED", "RED", "RED"),
        (Uuid(), UID, str(UID), str(UID)),
        (GUID(), str(UID).upper(), str(UID), str(UID)),
        (ARRAY(Integer), [1, (2, None)], [1, [2, None]], "[1, [2, null]]"),
        (ARRAY(String), ["é"], ["é"], '["é"]'),
        (JSON(), "a", "a", '"a"'),  # a JSON string keeps its quotes
        (JSON(), {"k": [1]}, {"k": [1]}, '{"k": [1]}'),
        (
            postgresql.INT4RANGE(),
            uuid.UUID(int=1),
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000001",
        ),
    ],
)
def test_values_are_written_in_their_forms(
    kind: TypeEngine[Any], value: Any, as_json: Any, as_text: str
) -> None:
    form = form_for(kind)
    assert form.json(value) == as_json
    assert form.text(value) == as_text


def test_text_columns_are_the_ones_anyone_may_have_typed() -> None:
    assert [is_text_type(kind) for kind in (String(), Text(), Wrapped(), Enum("a"))] == [True] * 4
    assert [is_text_type(kind) for kind in (Integer(), Uuid(), GUID(), JSON())] == [False] * 4
    assert form_for(String()).is_text and not form_for(Integer()).is_text
    assert not form_for(ARRAY(String)).is_text


def test_forms_for_a_table_name_every_column() -> None:
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("s", String))
    forms = forms_for(table)
    assert list(forms) == ["id", "s"]
    assert forms["s"].is_text and forms["id"].text(3) == "3"


@pytest.mark.parametrize(
    ("value", "as_json"),
    [
        (None, None),
        (True, True),
        (3, 3),
        (1.5, 1.5),
        ("s", "s"),
        (UID, str(UID)),
        (decimal.Decimal("1.10"), "1.10"),
        (dt.datetime(2024, 1, 1, 1, 2), "2024-01-01T01:02:00"),
        (dt.date(2024, 1, 1), "2024-01-01"),
        (dt.time(1, 2), "01:02:00"),
        (dt.timedelta(days=2), "P2DT0H0M0S"),
        (b"hi", "aGk="),
        (bytearray(b"hi"), "aGk="),
        (memoryview(b"hi"), "aGk="),
        (Colour.GREEN, "GREEN"),
        ((1, UID), [1, str(UID)]),
        ({1: {"a": b"hi"}}, {"1": {"a": "aGk="}}),
        (object, "<class 'object'>"),
    ],
)
def test_any_json_writes_a_value_of_no_known_column(value: Any, as_json: Any) -> None:
    assert any_json(value) == as_json


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (None, "null"),
        (False, "a boolean"),
        (0, "a number"),
        (0.5, "a number"),
        ("", "a string"),
        ([], "a list"),
        ({}, "an object"),
        (b"", "bytes"),
    ],
)
def test_json_kind_names_a_value_without_quoting_it(value: Any, kind: str) -> None:
    assert json_kind(value) == kind


def test_utf8_text() -> None:
    assert encodes_as_utf8("plain") and encodes_as_utf8("é😀")
    assert not encodes_as_utf8("a\udc80")


# More that mutants showed -------------------------------------------------------------------


class Unprintable(UserDefinedType[Any]):
    """A type that only compiles for its own dialect."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        raise NotImplementedError("compiles on its own dialect only")


def test_a_type_that_does_not_compile_is_named_by_its_class() -> None:
    assert type_name(Unprintable()) == "UNPRINTABLE"


@pytest.mark.parametrize(
    ("kind", "typed", "message"),
    [
        (
            AWARE,
            "2024-01-01T12:00:00z",
            "'2024-01-01T12:00:00z' is not a date and time in ISO 8601",
        ),
        (Time(), "12:00z", "'12:00z' is not a time in ISO 8601"),
        (LargeBinary(), "aGVs!bG8=", "is not valid base64"),  # not skipped over
        (LargeBinary(), "aGVs bG8=", "is not valid base64"),
    ],
)
def test_more_refusals(kind: TypeEngine[Any], typed: str, message: str) -> None:
    assert refused(kind, typed) == message


def test_a_json_value_given_to_a_text_reader_is_taken_as_it_is() -> None:
    assert read(JSON(), {"a": [1]}) == {"a": [1]}
    assert read(JSON(), 5) == 5


def test_times_are_utc_whatever_the_local_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/St_Johns")  # -03:30 or -02:30, never UTC
    time.tzset()
    try:
        assert read(AWARE, "2024-07-01T12:00:00") == dt.datetime(2024, 7, 1, 12, tzinfo=dt.UTC)
        assert read(AWARE, "2024-07-01T12:00:00+05:30") == dt.datetime(
            2024, 7, 1, 6, 30, tzinfo=dt.UTC
        )
        assert read(AWARE, "2024-07-01T12:00:00+05:30").utcoffset() == dt.timedelta(0)
        form = form_for(AWARE)
        assert form.json(dt.datetime(2024, 7, 1, 12)) == "2024-07-01T12:00:00+00:00"
        assert form.json(dt.datetime(2024, 7, 1, 12, tzinfo=KOLKATA)) == (
            "2024-07-01T06:30:00+00:00"
        )
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_array_of_dates_may_hold_nulls() -> None:
    form = form_for(ARRAY(Date))
    assert form.json([dt.date(2024, 1, 1), None]) == ["2024-01-01", None]
    assert form.text([None]) == "[null]"


def test_an_enum_stored_by_its_values_is_written_by_them() -> None:
    kind = Enum(Colour, values_callable=lambda members: [member.value for member in members])
    form = form_for(kind)
    assert form.json(Colour.GREEN) == "g"
    assert form.text(Colour.RED) == "r"
    assert read(kind, "g") is Colour.GREEN


@pytest.mark.parametrize("kind", [Integer(), String(), ARRAY(Integer), JSON()])
def test_a_value_too_deep_to_print_is_refused_also_where_values_are_hidden(
    kind: TypeEngine[Any],
) -> None:
    deep: Any = []
    for _ in range(100_000):
        deep = [deep]
    # Hiding the value looked for its repr() in the message, which raised RecursionError.
    message = refusal(Column("x", kind), deep, textual=False, quote=False)
    assert message in (
        "field 'x': must be an integer (got a list)",
        "field 'x': must be a string (got a list)",
        f"field 'x': {NESTING_TOO_DEEP}",
    )


@pytest.mark.parametrize(
    ("typed", "value"), [("+5", 5), ("-5", -5), ("-" + "9" * 18, -int("9" * 18))]
)
def test_a_signed_integer_keeps_all_its_digits(typed: str, value: int) -> None:
    assert read(Integer(), typed) == value


def test_a_signed_integer_of_too_many_digits_counts_them_without_the_sign() -> None:
    assert refused(Integer(), "-" + "1" * 20) == (
        "number has too many digits (20) for a 64-bit integer (at most 19)"
    )


def test_convert_value_quotes_the_value_it_refuses() -> None:
    with pytest.raises(InvalidInput) as error:
        convert_value(Column("n", Integer), "12a")
    assert str(error.value) == "field 'n': '12a' is not an integer"


def test_text_items_of_a_json_array_stay_text() -> None:
    assert read(ARRAY(JSON), '["{\\"a\\": 1}", 2]') == ['{"a": 1}', 2]


# MySQL/MariaDB drop the digits of a second their column does not keep ----------------------

MYSQL = mysql.dialect()
MARIADB = mariadb.MariaDBDialect()
DROPPED = (
    "has fractions of a second, but the column is {stored}, which keeps {kept}: MySQL/MariaDB "
    "would drop the rest without a word (round the value, or declare the column DATETIME(6) or "
    "TIME(6))"
)


@pytest.mark.parametrize("dialect", [MYSQL, MARIADB], ids=["mysql", "mariadb"])
@pytest.mark.parametrize(
    ("kind", "typed", "stored", "kept"),
    [
        (DateTime(), "2024-01-01T12:00:00.5", "DATETIME", "whole seconds only"),
        (mysql.DATETIME(fsp=3), "2024-01-01T12:00:00.1234", "DATETIME(3)", "3 digits of a second"),
        (Time(), "12:00:00.000001", "TIME", "whole seconds only"),
        (mysql.TIMESTAMP(fsp=1), "2024-01-01T12:00:00.25", "TIMESTAMP(1)", "1 digit of a second"),
    ],
)
def test_mysql_refuses_the_digits_of_a_second_its_column_would_drop(
    dialect: Any, kind: TypeEngine[Any], typed: str, stored: str, kept: str
) -> None:
    with pytest.raises(InvalidInput) as error:
        convert_value(Column("at", kind), typed, dialect)
    assert str(error.value) == "field 'at': " + DROPPED.format(stored=stored, kept=kept)


@pytest.mark.parametrize("dialect", [MYSQL, MARIADB], ids=["mysql", "mariadb"])
@pytest.mark.parametrize(
    ("kind", "typed", "value"),
    [
        (DateTime(), "2024-01-01T12:00:00", dt.datetime(2024, 1, 1, 12)),
        (
            mysql.DATETIME(fsp=3),
            "2024-01-01T12:00:00.123",
            dt.datetime(2024, 1, 1, 12, 0, 0, 123000),
        ),
        (
            mysql.DATETIME(fsp=6),
            "2024-01-01T12:00:00.123456",
            dt.datetime(2024, 1, 1, 12, 0, 0, 123456),
        ),
        (mysql.TIME(fsp=6), "12:00:00.000001", dt.time(12, 0, 0, 1)),
        (Date(), "2024-01-02", dt.date(2024, 1, 2)),  # no time of day: nothing to drop
        (String(), "12:00:00.5", "12:00:00.5"),
    ],
)
def test_mysql_takes_the_digits_of_a_second_its_column_keeps(
    dialect: Any, kind: TypeEngine[Any], typed: str, value: Any
) -> None:
    assert convert_value(Column("at", kind), typed, dialect) == value
    assert converter_for(Column("at", kind), textual=False, dialect=dialect)(typed) == value


def test_other_databases_keep_every_digit_of_a_second() -> None:
    moment = dt.datetime(2024, 1, 1, 12, 0, 0, 500000)
    for dialect in (None, postgresql.dialect(), sqlite.dialect()):
        assert convert_value(Column("at", DateTime()), "2024-01-01T12:00:00.5", dialect) == moment


# What MySQL's DOUBLE reads back (a Decimal where the type says asdecimal) is written as a number


def test_a_float_column_writes_a_decimal_read_back_as_a_float_and_leaves_other_numbers_alone() -> (
    None
):
    write = form_for(Float()).json
    written = write(decimal.Decimal("1.5"))
    assert (written, type(written)) == (1.5, float)
    assert (write(2), type(write(2))) == (2, int)
