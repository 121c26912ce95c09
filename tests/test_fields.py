"""Column values read from text and JSON and written back (usersctl.fields), at the library's
level: the exact value each form gives, and the exact words of each refusal."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Column, Integer

from usersctl.errors import InvalidInput
from usersctl.fields import converter_for


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
