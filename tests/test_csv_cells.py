"""The formula-safe rule for CSV cells (usersctl.csv_cells), in Python and in each database's SQL,
on examples chosen where a slightly different rule would differ."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import String, bindparam, select

from harness import sql_engine
from usersctl.csv_cells import formula_safe, formula_safe_sql, from_formula_safe

#: A text value as stored, and its cell in a CSV file.
CELLS = [
    ("=1+1", "'=1+1"),
    ("+x", "'+x"),
    ("-x", "'-x"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("'=x", "''=x"),  # quotes first, then a formula
    ("''@x", "'''@x"),
    ("'plain", "'plain"),
    ("plain", "plain"),
    ("a=b", "a=b"),
    ("=", "'="),
    ("'", "'"),
    ("", ""),
    (" =1", " =1"),  # a space first: no formula, and not taken for a quote
    ("X=1", "X=1"),  # nor is any other character
    ("X'=1", "X'=1"),
    ("=x'", "'=x'"),
    ("x'", "x'"),
]


@pytest.mark.parametrize(("text", "cell"), CELLS)
def test_formula_safe_and_back(text: str, cell: str) -> None:
    assert formula_safe(text) == cell
    assert from_formula_safe(cell) == text


@pytest.mark.parametrize("cell", ["'X=1", "' =1", "'plain", "X'=1"])
def test_a_quote_before_no_formula_is_kept_when_read(cell: str) -> None:
    assert from_formula_safe(cell) == cell


async def _in_sql(url: str, texts: list[str | None]) -> list[str | None]:
    engine = sql_engine(url)
    try:
        async with engine.connect() as connection:
            values = [bindparam(f"t{i}", text, type_=String) for i, text in enumerate(texts)]
            row = (await connection.execute(select(*map(formula_safe_sql, values)))).one()
            return list(row)
    finally:
        await engine.dispose()


# The databases that render export rows in SQL (MySQL/MariaDB never do: exporting.renders_in_database).
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_databases_write_the_same_cells(database_url: str) -> None:
    texts = [text for text, _ in CELLS]
    assert asyncio.run(_in_sql(database_url, [*texts, None])) == [
        *[cell for _, cell in CELLS],
        None,
    ]
