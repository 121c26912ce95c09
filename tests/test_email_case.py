"""fold_case lowers as PostgreSQL's lower() does, and case_key gives it on both databases."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, literal, select
from sqlalchemy.ext.asyncio import AsyncEngine

from usersctl.email_case import case_key, fold_case, spelling_pattern

#: Blocks whose case has been stable for decades (Latin, Greek, Cyrillic, Armenian), and the
#: letters that lower differently: İ, final Σ, the Kelvin and Ångström signs, capital ẞ.
LETTERS = "".join(
    chr(code)
    for start, end in ((0x41, 0x5A), (0xC0, 0x24F), (0x386, 0x3CE), (0x400, 0x4FF), (0x531, 0x556))
    for code in range(start, end + 1)
)
WORDS = [
    "ΣΟΦΙΑΣ",
    "Σοφιας",
    "İSTANBUL",
    "KELVIN\u212a",
    "\u212bNGSTRÖM",
    "STRAẞE",
    "ǄEMAL",
    "ǅemal",
]


@pytest.mark.parametrize(
    ("email", "folded"),
    [
        ("ÄRGER@example.com", "ärger@example.com"),
        ("ΣΟΦΙΑΣ@example.gr", "σοφιασ@example.gr"),  # letter by letter: no final ς
        ("İLKER@example.com", "ilker@example.com"),  # an ASCII i, not i and a combining dot
        ("STRAẞE@example.de", "straße@example.de"),  # ß stays ß (casefold would write ss)
        ("Alice@Example.COM", "alice@example.com"),
    ],
)
def test_fold_case(email: str, folded: str) -> None:
    assert fold_case(email) == folded
    assert len(fold_case(email)) == len(email)


def test_the_like_pattern_keeps_ascii_and_escapes_like_characters() -> None:
    assert spelling_pattern("Jörg_100%@example.com") == "J_rg\\_100\\%@example.com"
    # i and k may be stored as İ and the Kelvin sign, which lower to them
    assert spelling_pattern("Ärik@x.io") == "_r__@x._o"


# MySQL/MariaDB compare by the email column's collation, not by a key (case_key is the column
# itself there: tests/cli/test_mysql_collation.py).
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
async def test_case_key_is_fold_case_on_both_databases(engine: AsyncEngine) -> None:
    # PostgreSQL's own lower() (in a UTF-8 locale); on SQLite usersctl's function, as the
    # built-in lower() folds A to Z only.
    table = Table("words", MetaData(), Column("id", Integer, primary_key=True), Column("w", String))
    async with engine.begin() as connection:
        assert await connection.scalar(select(case_key(literal(LETTERS)))) == fold_case(LETTERS)
        await connection.run_sync(table.metadata.create_all)
        await connection.execute(insert(table), [{"w": word} for word in [*WORDS, LETTERS]])
        rows = (
            await connection.execute(select(table.c.w, case_key(table.c.w)).order_by(table.c.id))
        ).all()
    assert [key for _, key in rows] == [fold_case(word) for word, _ in rows]
    assert rows[0][1] == "σοφιασ" and rows[2][1] == "istanbul" and rows[3][1] == "kelvink"
