"""CSV output is formula-safe: text that a spreadsheet would run as a formula (``=1+1``,
``@SUM(A1)``, a leading tab...) is written with a leading ``'``, as OWASP advises, and
``import-users`` takes exactly that quote off again, so a CSV round trip changes nothing.
``--raw-csv`` writes and reads cells as they are; JSON is never changed.

Through the installed entry point, on a user table with an extra text column and an integer
column, exported by the database's rendering and by Python's (a DATE column sends the export
through Python); the stored values are checked with plain SQL.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import Cli, is_mysql, seed_hash, sql_engine
from usersctl.csv_cells import formula_safe, formula_safe_sql, from_formula_safe

#: A text value as stored, and its cell in a CSV file.
CASES = [
    ("=1+1", "'=1+1"),
    ("+x", "'+x"),
    ("-x", "'-x"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "'\rx"),
    ("'=x", "''=x"),
    ("''@x", "'''@x"),
    ("'plain", "'plain"),
    ("plain", "plain"),
    ("a=b", "a=b"),
    ("'", "'"),
]
#: Its email starts like a formula too: emails are text, and the address is valid.
FORMULA_EMAIL = "=cmd@example.com"


def stdout_of(usersctl: Any, *args: str) -> str:
    """What a command that must succeed writes to stdout, exactly: no newline translation,
    which would make the carriage return of a cell a line feed."""
    result = subprocess.run(
        [usersctl.executable, "-d", usersctl.url, *args],
        capture_output=True,
        stdin=subprocess.DEVNULL,
        env=usersctl.env(),
        cwd=usersctl.cwd,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def email(index: int) -> str:
    return f"user{index:02}@example.com"


def csv_line(*cells: str) -> str:
    """A line as export-users writes it: a line with a carriage return in a cell has every
    cell quoted; otherwise a cell is quoted where it holds a comma (a hash does)."""
    quote_all = any("\r" in cell for cell in cells)
    return ",".join(f'"{cell}"' if quote_all or "," in cell else cell for cell in cells) + "\n"


@pytest.fixture(params=["database", "python"])
def table(request: pytest.FixtureRequest, db: Any) -> dict[str, Any]:
    """The user table with a nickname (text) and logins (integer) column, a user for each case
    (logins -5) and one whose email starts with ``=``; with a DATE column for ``python``, which
    the database does not render. Returns the users' ids by email and the extra cells a line
    ends with."""
    db.execute(
        'ALTER TABLE "user" ADD COLUMN nickname VARCHAR(40)',
        'ALTER TABLE "user" ADD COLUMN logins INTEGER',
    )
    if request.param == "python":
        db.execute('ALTER TABLE "user" ADD COLUMN born DATE')
    specs = [
        {"email": email(i), "nickname": value, "logins": -5} for i, (value, _) in enumerate(CASES)
    ]
    created = db.seed_specs(*specs, {"email": FORMULA_EMAIL})
    return {
        "ids": {row["email"]: str(row["id"]) for row in created},
        "extra": [""] if request.param == "python" else [],
        "path": request.param,
    }


async def _renders_in_database(url: str) -> bool:
    from usersctl.exporting import export_columns, renders_in_database
    from usersctl.users import open_users

    async with open_users(url) as ctx:
        columns = export_columns(ctx.model, include_hashes=True)
        return renders_in_database(ctx.model, columns, ctx.session.bind.dialect.name)


def expected_export(table: dict[str, Any], cells: list[str], formula_email: str) -> bytes:
    """export-users' CSV with hashes of ``table``: the nicknames written as ``cells``, the
    email that starts with ``=`` as ``formula_email``."""
    ids, extra = table["ids"], table["extra"]
    header = ["id", "email", "hashed_password", "is_active", "is_superuser", "is_verified"]
    flags = [seed_hash(), "true", "false", "false"]
    users = [
        (email(i), csv_line(ids[email(i)], email(i), *flags, cell, "-5", *extra))
        for i, cell in enumerate(cells)
    ]
    users.append(
        (FORMULA_EMAIL, csv_line(ids[FORMULA_EMAIL], formula_email, *flags, "", "", *extra))
    )
    # In list-users' order: the lowercased email ("=cmd@" before "user00@")
    lines = [line for _, line in sorted(users, key=lambda user: user[0].lower())]
    return (
        csv_line(*header, "nickname", "logins", *(["born"] if extra else [])) + "".join(lines)
    ).encode()


def stored_values(db: Any) -> list[tuple[str, str | None, int | None]]:
    rows = db.query('SELECT email, nickname, logins FROM "user"')
    return sorted((row["email"], row["nickname"], row["logins"]) for row in rows)


def original_values() -> list[tuple[str, str | None, int | None]]:
    values = [(email(i), value, -5) for i, (value, _) in enumerate(CASES)]
    return sorted([*values, (FORMULA_EMAIL, None, None)])


SAFE_CELLS = [cell for _, cell in CASES]
RAW_CELLS = [value for value, _ in CASES]


def test_export_writes_text_formula_safe_and_import_reads_it_back_exactly(
    usersctl: Any, db: Any, table: dict[str, Any]
) -> None:
    # MySQL/MariaDB never render rows in the database (see exporting.renders_in_database).
    in_database = table["path"] == "database" and not is_mysql(usersctl.url)
    assert asyncio.run(_renders_in_database(usersctl.url)) is in_database

    # Each text cell that a spreadsheet would run gets one quote more; -5 stays a number.
    usersctl.ok("export-users", "users.csv", "--include-hashes")
    first = (usersctl.cwd / "users.csv").read_bytes()
    assert first == expected_export(table, SAFE_CELLS, "'" + FORMULA_EMAIL)

    # Into the emptied table, and out again: the same rows, the same bytes.
    db.execute('DELETE FROM "user"')
    usersctl.ok("import-users", "users.csv")
    assert stored_values(db) == original_values()
    usersctl.ok("export-users", "again.csv", "--include-hashes")
    assert (usersctl.cwd / "again.csv").read_bytes() == first


def test_raw_csv_writes_and_reads_cells_as_they_are(
    cli: Cli, db: Any, table: dict[str, Any]
) -> None:
    cli.ok("export-users", "raw.csv", "--include-hashes", "--raw-csv")
    raw = (cli.cwd / "raw.csv").read_bytes()
    assert raw == expected_export(table, RAW_CELLS, FORMULA_EMAIL)
    db.execute('DELETE FROM "user"')
    cli.ok("import-users", "raw.csv", "--raw-csv")
    assert stored_values(db) == original_values()

    # A formula-safe file read raw keeps its quotes.
    (cli.cwd / "safe.csv").write_bytes(expected_export(table, SAFE_CELLS, "'" + FORMULA_EMAIL))
    db.execute('DELETE FROM "user"')
    cli.ok("import-users", "safe.csv", "--raw-csv")
    quoted = [(email(i), cell, -5) for i, cell in enumerate(SAFE_CELLS)]
    assert stored_values(db) == sorted([*quoted, ("'" + FORMULA_EMAIL, None, None)])


def test_json_keeps_the_exact_text(cli: Cli, db: Any, table: dict[str, Any]) -> None:
    lines = cli.ok("export-users", "-").stdout.split("\n")[:-1]
    exported = sorted(
        (row["email"], row["nickname"], row["logins"]) for row in map(json.loads, lines)
    )
    assert exported == original_values()
    listed = json.loads(cli.ok("list-users", "-o", "json").stdout)
    assert sorted((row["email"], row["nickname"], row["logins"]) for row in listed) == (
        original_values()
    )

    # A JSON value that starts with a quote is imported as it is.
    db.execute('DELETE FROM "user"')
    record = {"email": "ann@example.com", "hashed_password": seed_hash(), "nickname": "'=x"}
    cli.ok("import-users", "-", "--format", "jsonl", input=json.dumps(record) + "\n")
    assert db.query('SELECT nickname FROM "user"') == [{"nickname": "'=x"}]


@pytest.mark.parametrize("table", ["database"], indirect=True)
def test_list_users_csv_is_formula_safe_unless_raw(usersctl: Any, table: dict[str, Any]) -> None:
    ids = table["ids"]

    def lines(cells: list[str], formula_email: str) -> list[str]:
        """list-users' CSV lines (a cell with a carriage return quoted), sorted."""
        found = [
            f"{ids[email(i)]},{email(i)},true,false,false,"
            + (f'"{cell}"' if "\r" in cell else cell)
            + ",-5"
            for i, cell in enumerate(cells)
        ]
        found.append(f"{ids[FORMULA_EMAIL]},{formula_email},true,false,false,,")
        return sorted(found)

    for args, cells, formula_email in (
        ((), SAFE_CELLS, "'" + FORMULA_EMAIL),
        (("--raw-csv",), RAW_CELLS, FORMULA_EMAIL),
    ):
        output = stdout_of(usersctl, "list-users", "-o", "csv", *args)
        header, *rest, end = output.split("\r\n")
        assert header == "id,email,is_active,is_superuser,is_verified,nickname,logins"
        assert end == ""
        assert sorted(rest) == lines(cells, formula_email)


def test_a_password_cell_is_read_like_any_other(cli: Cli, db: Any) -> None:
    """The quote of a formula-safe password cell is taken off too: '=... is the password =...;
    with --raw-csv the quote is part of it."""
    from argon2 import PasswordHasher

    rows = "email,password\nann@example.com,'=a long enough password\n"
    cli.ok("import-users", "-", "--format", "csv", input=rows)
    cli.ok("import-users", "-", "--format", "csv", "--raw-csv", input=rows.replace("ann", "bob"))
    assert PasswordHasher().verify(db.stored_hash("ann@example.com"), "=a long enough password")
    assert PasswordHasher().verify(db.stored_hash("bob@example.com"), "'=a long enough password")


# The rule itself ------------------------------------------------------------------------------

#: Any text a column holds (no NUL, no lone surrogate), rich in quotes and formula starts.
TEXT = st.text(
    st.sampled_from("'=+-@\t\r a\n\"")
    | st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)


@settings(max_examples=500, deadline=None)
@given(TEXT)
def test_the_rule_round_trips_any_text_and_never_starts_a_formula(text: str) -> None:
    cell = formula_safe(text)
    assert from_formula_safe(cell) == text
    assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))
    assert cell == text or cell == "'" + text


async def _in_sql(url: str, texts: list[str]) -> list[str]:
    from sqlalchemy import String, bindparam, select

    engine = sql_engine(url)
    try:
        async with engine.connect() as connection:
            values = [bindparam(f"t{i}", text, type_=String) for i, text in enumerate(texts)]
            row = (await connection.execute(select(*map(formula_safe_sql, values)))).one()
            return list(row)
    finally:
        await engine.dispose()


#: The rule in SQL serves the databases that render export rows themselves; MySQL/MariaDB do not
#: (Python renders them there, and their LTRIM takes no characters to strip).
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(TEXT, min_size=1, max_size=40))
def test_the_databases_apply_the_same_rule(database_url: str, texts: list[str]) -> None:
    assert asyncio.run(_in_sql(database_url, texts)) == [formula_safe(text) for text in texts]
