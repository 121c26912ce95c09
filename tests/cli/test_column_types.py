"""Every column type an app's user table may have: one text form in --set, CSV and list-users,
JSON values in JSON, a round trip that changes no byte, and a refusal for a type with no form.

The models are this test's own: an app's user table with a column of each type (arrays, an
interval and a native enum on PostgreSQL only), used with --model through the installed entry
point; the stored values are checked with plain SQL.
"""

from __future__ import annotations

import asyncio
import base64
import csv
import datetime as dt
import decimal
import io
import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from harness import is_mysql, mysql_run
from usersctl.engine import create_engine

#: Columns of every type both databases have.
COMMON_COLUMNS = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
    from sqlalchemy import (
        JSON, Boolean, Date, DateTime, Float, Integer, LargeBinary, Numeric, String, Time, Uuid,
    )
    from sqlalchemy.dialects import mysql
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    # MySQL/MariaDB: DATETIME and TIME keep whole seconds unless declared with a precision
    # (fsp), and usersctl refuses a value with a fraction for them
    # (test_a_fraction_of_a_second_a_column_would_drop_is_refused); these keep microseconds.
    def on_mysql(kind, there):
        return kind.with_variant(there, "mysql", "mariadb")


    class User(SQLAlchemyBaseUserTableUUID, Base):
        credit = mapped_column(Numeric(12, 2), nullable=True)
        # Float is FLOAT there, single precision (1000001.0 reads back 1000000.0): DOUBLE
        ratio = mapped_column(on_mysql(Float(), mysql.DOUBLE(asdecimal=False)), nullable=True)
        born = mapped_column(Date, nullable=True)
        wakes = mapped_column(on_mysql(Time(), mysql.TIME(fsp=6)), nullable=True)
        seen_local = mapped_column(on_mysql(DateTime(), mysql.DATETIME(fsp=6)), nullable=True)
        seen_at = mapped_column(
            on_mysql(DateTime(timezone=True), mysql.DATETIME(timezone=True, fsp=6)),
            nullable=True,
        )
        avatar = mapped_column(LargeBinary, nullable=True)
        settings = mapped_column(JSON, nullable=True)
        ref = mapped_column(Uuid, nullable=True)
        logins = mapped_column(Integer, nullable=True)
        beta = mapped_column(Boolean, nullable=True)
        nickname = mapped_column(String(40), nullable=True)
"""

#: PostgreSQL's own: arrays, an interval, a native enum, JSONB.
POSTGRES_COLUMNS = """
        project_dirs = mapped_column(ARRAY(String), nullable=True)
        scores = mapped_column(ARRAY(Integer), nullable=True)
        grace = mapped_column(Interval, nullable=True)
        plan = mapped_column(Enum(Plan, name="plan"), nullable=True)
        prefs = mapped_column(JSONB, nullable=True)
"""

POSTGRES_IMPORTS = """
    import enum

    from sqlalchemy import ARRAY, Enum, Interval
    from sqlalchemy.dialects.postgresql import JSONB


    class Plan(enum.Enum):
        free = "Free plan"
        pro = "Pro plan"
"""

#: A value of each type in its text form, as --set takes it and list-users -o csv prints it.
COMMON_TEXTS = {
    "credit": "1234.50",
    "ratio": "0.25",
    "born": "1990-02-03",
    "wakes": "06:30:00",
    "seen_local": "2024-05-06T07:08:09.123456",
    "seen_at": "2024-05-06T05:08:09+00:00",
    "avatar": base64.b64encode(b"\x00\x01\xfe\xff png").decode(),
    "settings": '{"theme": "dark", "langs": ["en", "fr"]}',
    "ref": "0b3f6a56-2c6e-4e39-9f0b-5b1c1a2d3e4f",
    "logins": "42",
    "beta": "true",
    "nickname": 'Ann, "the" admin',
}
POSTGRES_TEXTS = {
    "project_dirs": '["/tmp/x", "/srv/a b"]',
    "scores": "[3, 1, 2]",
    "grace": "P1DT2H30M0.5S",
    "plan": "pro",
    "prefs": '{"a": [1, 2], "b": null}',
}


def model_source(postgres: bool) -> str:
    source = textwrap.dedent(COMMON_COLUMNS)
    if postgres:
        columns = textwrap.indent(textwrap.dedent(POSTGRES_COLUMNS), "    ")
        source = textwrap.dedent(POSTGRES_IMPORTS) + source + columns
    return source


def is_postgres(url: str) -> bool:
    return url.startswith("postgresql")


@pytest.fixture
def typed(empty_cli: Any, tmp_path: Path) -> Any:
    """usersctl (in-process) with --model set to this test's model of every type, its tables
    created by ``init-db --model``."""
    name = f"typed_models_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(model_source(is_postgres(empty_cli.url)))
    empty_cli.model = f"{name}:User"
    empty_cli.ok("--model", empty_cli.model, "init-db")
    return empty_cli


def texts_for(url: str) -> dict[str, str]:
    return {**COMMON_TEXTS, **(POSTGRES_TEXTS if is_postgres(url) else {})}


async def _fetch(url: str, sql: str) -> list[dict[str, Any]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return [dict(row._mapping) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


def fetch(url: str, sql: str) -> list[dict[str, Any]]:
    """Rows straight from the database, by plain SQL."""
    return asyncio.run(_fetch(url, sql))


def csv_rows(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_set_writes_each_type_by_its_text_form_and_list_users_csv_prints_it_back(
    typed: Any,
) -> None:
    texts = texts_for(typed.url)
    sets = [arg for name, value in texts.items() for arg in ("--set", f"{name}={value}")]
    typed.ok("--model", typed.model, "create-user", "ann@example.com", "--generate-password", *sets)

    stored = fetch(typed.url, 'SELECT * FROM "user"')[0]
    assert decimal.Decimal(str(stored["credit"])) == decimal.Decimal("1234.50")
    assert stored["logins"] == 42
    assert stored["nickname"] == 'Ann, "the" admin'
    assert bytes(stored["avatar"]) == b"\x00\x01\xfe\xff png"
    if is_postgres(typed.url):
        assert stored["project_dirs"] == ["/tmp/x", "/srv/a b"]  # not {/,t,m,p,/,x}
        assert stored["scores"] == [3, 1, 2]
        assert stored["grace"] == dt.timedelta(days=1, hours=2, minutes=30, seconds=0.5)
        assert stored["plan"] == "pro"  # the enum's name, as SQLAlchemy stores it
        assert stored["seen_at"] == dt.datetime(2024, 5, 6, 5, 8, 9, tzinfo=dt.timezone.utc)
        assert stored["ref"] == uuid.UUID(texts["ref"])
    elif typed.url.startswith("mysql"):  # DATETIME holds no offset: UTC, naive
        assert stored["seen_at"] == dt.datetime(2024, 5, 6, 5, 8, 9)
        assert stored["ref"] == uuid.UUID(texts["ref"]).hex  # CHAR(32), as sqlalchemy.Uuid
    else:
        assert stored["seen_at"].startswith("2024-05-06 05:08:09")  # UTC, offset kept right
        assert stored["ref"] == uuid.UUID(texts["ref"]).hex  # as sqlalchemy.Uuid writes it

    # Every output gives back the same text, and -o json the JSON values.
    listed = csv_rows(typed.ok("--model", typed.model, "list-users", "-o", "csv").stdout)[0]
    assert {name: listed[name] for name in texts} == texts
    exported = csv_rows(typed.ok("--model", typed.model, "export-users", "-", "-o", "csv").stdout)[
        0
    ]
    assert {name: exported[name] for name in texts} == texts
    shown = json.loads(
        typed.ok("--model", typed.model, "show-user", "ann@example.com", "-o", "json").stdout
    )
    line = json.loads(typed.ok("--model", typed.model, "export-users", "-").stdout)
    for row in (shown, line):
        assert row["settings"] == {"theme": "dark", "langs": ["en", "fr"]}
        assert row["credit"] == "1234.50"
        assert row["born"] == "1990-02-03"
        if is_postgres(typed.url):
            assert row["project_dirs"] == ["/tmp/x", "/srv/a b"]
            assert row["scores"] == [3, 1, 2]
            assert row["plan"] == "pro"


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_array_is_never_split_into_characters(typed: Any, tmp_path: Path) -> None:
    message = typed.fails(
        2, "--model", typed.model, "create-user", "ann@example.com", "--generate-password",
        "--set", "project_dirs=/tmp/x",
    )  # fmt: skip
    assert "project_dirs" in message and "JSON array" in message
    rows = '{"email": "bob@example.com", "password": "pw-12345678", "project_dirs": "/tmp/x"}\n'
    message = typed.fails(
        2, "--model", typed.model, "import-users", "-", "--format", "jsonl", input=rows
    )
    assert "line 1" in message and "project_dirs" in message and "JSON array" in message
    assert fetch(typed.url, 'SELECT count(*) AS n FROM "user"') == [{"n": 0}]

    rows = '{"email": "bob@example.com", "password": "pw-12345678", "project_dirs": ["/tmp/x"]}\n'
    typed.ok("--model", typed.model, "import-users", "-", "--format", "jsonl", input=rows)
    assert fetch(typed.url, 'SELECT project_dirs FROM "user"') == [{"project_dirs": ["/tmp/x"]}]
    typed.ok(
        "--model", typed.model, "update-user", "bob@example.com",
        "--set", 'project_dirs=["a", "b,c", "{d}"]', "--set", "scores=[]",
    )  # fmt: skip
    assert fetch(typed.url, 'SELECT project_dirs, scores FROM "user"') == [
        {"project_dirs": ["a", "b,c", "{d}"], "scores": []}
    ]
    message = typed.fails(
        2, "--model", typed.model, "update-user", "bob@example.com", "--set", 'scores=["x"]'
    )
    assert "scores" in message and "not an integer" in message
    # Without --model the array type read from the database converts the same way
    typed.ok("update-user", "bob@example.com", "--set", 'project_dirs=["/srv/x"]')
    assert fetch(typed.url, 'SELECT project_dirs FROM "user"') == [{"project_dirs": ["/srv/x"]}]
    assert "JSON array" in typed.fails(2, "update-user", "bob@example.com", "--set", "scores=1")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_enum_takes_its_names_and_refuses_others_naming_them(typed: Any) -> None:
    message = typed.fails(
        2, "--model", typed.model, "create-user", "ann@example.com", "--generate-password",
        "--set", "plan=Pro plan",
    )  # fmt: skip
    assert "plan" in message and "free, pro" in message
    rows = "email,password,plan\nann@example.com,pw-12345678,gold\n"
    message = typed.fails(
        2, "--model", typed.model, "import-users", "-", "--format", "csv", input=rows
    )
    assert "line 2" in message and "free, pro" in message
    assert fetch(typed.url, 'SELECT count(*) AS n FROM "user"') == [{"n": 0}]

    # Without --model the table's own enum type gives the names.
    typed.ok("create-user", "ann@example.com", "--generate-password", "--set", "plan=free")
    assert fetch(typed.url, 'SELECT plan::text AS plan FROM "user"') == [{"plan": "free"}]
    assert "free, pro" in typed.fails(2, "update-user", "ann@example.com", "--set", "plan=x")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_type_with_no_text_form_is_refused_naming_column_and_type(usersctl: Any) -> None:
    usersctl.ok("init-db")
    asyncio.run(_execute(usersctl.url, 'ALTER TABLE "user" ADD COLUMN last_ip INET'))
    message = usersctl.fails(
        2, "create-user", "ann@example.com", "--generate-password", "--set", "last_ip=10.0.0.1"
    )
    assert "last_ip" in message and "INET" in message
    rows = '{"email": "bob@example.com", "password": "pw-12345678", "last_ip": "10.0.0.1"}\n'
    message = usersctl.fails(2, "import-users", "-", "--format", "jsonl", input=rows)
    assert "last_ip" in message and "INET" in message
    assert fetch(usersctl.url, 'SELECT count(*) AS n FROM "user"') == [{"n": 0}]


#: A model whose time columns keep whole seconds on MySQL/MariaDB (DATETIME, TIME: no fsp).
WHOLE_SECONDS_MODEL = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
    from sqlalchemy import DateTime, Time
    from sqlalchemy.orm import DeclarativeBase, mapped_column


    class Base(DeclarativeBase):
        pass


    class User(SQLAlchemyBaseUserTableUUID, Base):
        seen_local = mapped_column(DateTime, nullable=True)
        seen_at = mapped_column(DateTime(timezone=True), nullable=True)
        wakes = mapped_column(Time, nullable=True)
"""

#: A value with a fraction of a second for each column, and the type the column has there.
FRACTIONS = [
    ("seen_local", "2024-05-06T07:08:09.5", "DATETIME"),
    ("seen_at", "2024-05-06T07:08:09.000001+00:00", "DATETIME"),
    ("wakes", "06:30:00.25", "TIME"),
]


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_fraction_of_a_second_a_column_would_drop_is_refused(
    empty_cli: Any, tmp_path: Path
) -> None:
    """MariaDB drops, without an error, the fraction of a second a DATETIME or TIME column
    without a precision cannot hold: usersctl refuses such a value, as a too long string, in
    --set (create-user, update-user) and import-users, with the app's model or without."""
    name = f"whole_seconds_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(WHOLE_SECONDS_MODEL))
    model = ("--model", f"{name}:User")
    empty_cli.ok(*model, "init-db")
    whole = ("--set", "seen_local=2024-05-06T07:08:09", "--set", "wakes=06:30:00")
    empty_cli.ok(*model, "create-user", "ann@example.com", "--generate-password", *whole)
    query = 'SELECT email, seen_local, seen_at, wakes FROM "user" ORDER BY email'
    before = fetch(empty_cli.url, query)
    assert before == [
        {
            "email": "ann@example.com",
            "seen_local": dt.datetime(2024, 5, 6, 7, 8, 9),
            "seen_at": None,
            "wakes": dt.timedelta(hours=6, minutes=30),
        }
    ]
    for options in (model, ()):  # the app's model, then the table as read from the database
        for column, value, stored in FRACTIONS:
            for command in (
                ("create-user", "bob@example.com", "--generate-password"),
                ("update-user", "ann@example.com"),
            ):
                message = empty_cli.fails(2, *options, *command, "--set", f"{column}={value}")
                assert f"field {column!r}" in message, message
                assert f"fractions of a second, but the column is {stored}," in message
            jsonl = json.dumps(
                {"email": "bob@example.com", "password": "pw-12345678", column: value}
            )
            message = empty_cli.fails(
                2, *options, "import-users", "-", "--format", "jsonl", input=jsonl + "\n"
            )
            assert "line 1" in message and column in message and stored in message, message
            csv_text = f"email,password,{column}\nbob@example.com,pw-12345678,{value}\n"
            message = empty_cli.fails(
                2, *options, "import-users", "-", "--format", "csv", input=csv_text
            )
            assert "line 2" in message and column in message and stored in message, message
    assert fetch(empty_cli.url, query) == before  # nothing written, nothing changed


async def _execute(url: str, sql: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture
def second_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another empty database of the same kind, to import into."""
    from sqlalchemy.engine import make_url

    name = f"usersctl_second_{uuid.uuid4().hex[:10]}"
    if is_mysql(database_url):  # on the same server, as the harness's own MariaDB database
        mysql_run(database_url, f"CREATE DATABASE `{name}`")
        yield make_url(database_url).set(database=name).render_as_string(False)
        mysql_run(database_url, f"DROP DATABASE IF EXISTS `{name}`")
        return
    if not is_postgres(database_url):
        yield f"sqlite+aiosqlite:///{tmp_path / 'second.db'}"
        return
    admin = make_url(database_url).set(drivername="postgresql").render_as_string(False)

    async def run(statement: str) -> None:
        import asyncpg

        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield make_url(database_url).set(database=name).render_as_string(False)
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
def test_export_import_export_is_byte_identical(
    typed: Any, second_url: str, tmp_path: Path, fmt: str
) -> None:
    texts = texts_for(typed.url)
    sets = [arg for name, value in texts.items() for arg in ("--set", f"{name}={value}")]
    model = ("--model", typed.model)
    typed.ok(*model, "create-user", "ann@example.com", "--generate-password", *sets)
    typed.ok(*model, "create-user", "bob@example.com", "--generate-password")  # all NULL
    # A lone carriage return, which CSV must quote or a reader ends the line there
    typed.ok(
        *model, "create-user", "cr@example.com", "--generate-password", "--set", "nickname=a\rb"
    )
    first, second = tmp_path / f"first.{fmt}", tmp_path / f"second.{fmt}"
    typed.ok(*model, "export-users", str(first), "--include-hashes")
    typed.ok("-d", second_url, *model, "init-db", url=False)
    typed.ok("-d", second_url, *model, "import-users", str(first), url=False)
    typed.ok("-d", second_url, *model, "export-users", str(second), "--include-hashes", url=False)
    assert second.read_bytes() == first.read_bytes()
    columns = ", ".join(f'"{name}"' for name in texts)
    query = f'SELECT id, email, hashed_password, {columns} FROM "user" ORDER BY email'
    assert fetch(second_url, query) == fetch(typed.url, query)


# Any value of each type, through a round trip ------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Text a column holds: no NUL, no lone surrogate (no database stores them). In CSV an empty
#: cell means "not given" and the word null means NULL, so those two are left to JSON.
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)
CSV_TEXT = TEXT.filter(lambda value: value != "" and value.strip().lower() != "null")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)  # fmt: skip
INT32 = st.integers(-(2**31), 2**31 - 1)
OFFSETS = st.integers(-14 * 60, 14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
MODERN = {"min_value": dt.datetime(1900, 1, 1), "max_value": dt.datetime(2200, 1, 1)}


def column_values(postgres: bool) -> st.SearchStrategy[dict[str, Any]]:
    """Values for each column of the model, any of them NULL."""
    values: dict[str, st.SearchStrategy[Any]] = {
        "credit": st.decimals(-(10**9), 10**9, places=2, allow_nan=False),
        "ratio": st.floats(allow_nan=False, allow_infinity=False),
        "born": st.dates(),
        "wakes": st.times(),
        "seen_local": st.datetimes(),
        "seen_at": st.datetimes(**MODERN, timezones=OFFSETS),
        "avatar": st.binary(max_size=30),
        # On SQLite a JSON column has NUMERIC affinity: a bare number is stored as a REAL by
        # SQLite's own text-to-real conversion, which may be one unit in the last place off for
        # extreme exponents (4.619834671780366e-306) whoever writes it, the app too. Numbers
        # inside lists and objects stay JSON text, exact.
        "settings": JSON_VALUES.filter(
            lambda value: value is not None and (postgres or not isinstance(value, float))
        ),
        "ref": st.uuids(),
        "logins": INT32,
        "beta": st.booleans(),
        "nickname": CSV_TEXT,
    }
    if postgres:
        values |= {
            "project_dirs": st.lists(st.none() | TEXT, max_size=4),
            "scores": st.lists(st.none() | INT32, max_size=4),
            "grace": st.timedeltas(dt.timedelta(days=-(10**6)), dt.timedelta(days=10**6)),
            "plan": st.sampled_from(["free", "pro"]),
            "prefs": JSON_VALUES.filter(lambda value: value is not None),
        }
    return st.fixed_dictionaries({}, optional=values)


def duration(delta: dt.timedelta) -> str:
    """ISO 8601, as the README gives an interval's form."""
    sign = "-" if delta < dt.timedelta(0) else ""
    delta = abs(delta)
    seconds = delta.seconds + decimal.Decimal(delta.microseconds) / 10**6
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{sign}P{delta.days}DT{hours}H{minutes}M{seconds.normalize():f}S"


def as_json(value: Any) -> Any:
    """A generated value in the JSON form the README gives its type."""
    if isinstance(value, decimal.Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return duration(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def empty(url: str) -> None:
    """Remove every user, leaving the table as new: an export gives the rows in the order they
    were written (TRUNCATE, as PostgreSQL would put new rows in the space DELETE frees)."""
    asyncio.run(_execute(url, 'TRUNCATE "user"' if is_postgres(url) else 'DELETE FROM "user"'))


def numbers_exact(value: Any) -> Any:
    """A JSON value with its numbers as decimals: JSONB keeps 7.5e16 as 75000000000000000."""
    return json.loads(json.dumps(value), parse_float=decimal.Decimal, parse_int=decimal.Decimal)


def same(name: str, exported: Any, generated: Any) -> bool:
    """Whether an exported field holds the generated value."""
    if name in ("settings", "prefs"):
        return bool(numbers_exact(exported) == numbers_exact(generated))
    if name == "credit":
        return decimal.Decimal(exported) == generated
    if name == "seen_at":
        return dt.datetime.fromisoformat(exported) == generated  # the same instant, in UTC
    if name == "grace":
        return bool(exported == duration(generated))
    return bool(exported == as_json(generated))


@pytest.fixture
def hash_for_rows() -> str:
    from usersctl.passwords import hash_password

    return hash_password("round trip password")


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_any_values_survive_export_import_export(
    typed: Any,
    empty_cli: Any,
    second_url: str,
    hash_for_rows: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    data: st.DataObject,
) -> None:
    monkeypatch.syspath_prepend(str(typed.cwd))
    first = type(empty_cli)(typed.url)
    second = type(empty_cli)(second_url)
    model = ("--model", typed.model)
    second(*model, "init-db")
    users = data.draw(st.lists(column_values(is_postgres(typed.url)), min_size=1, max_size=4))
    for url in (typed.url, second_url):
        empty(url)
    rows = [
        {"email": f"user{i}@example.com", "hashed_password": hash_for_rows}
        | {name: as_json(value) for name, value in values.items()}
        for i, values in enumerate(users)
    ]
    source = tmp_path / "generated.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert first(*model, "import-users", str(source)).exit_code == 0

    # What went in comes out
    exported = tmp_path / "first.jsonl"
    assert first(*model, "export-users", str(exported), "--include-hashes").exit_code == 0
    written = exported.read_text().split("\n")[:-1]  # not splitlines(): text may hold U+0085
    lines = {row["email"]: row for row in map(json.loads, written)}
    for row, values in zip(rows, users, strict=True):
        for name, value in values.items():
            assert same(name, lines[row["email"]][name], value), (name, value)

    for fmt in ("jsonl", "csv"):
        empty(second_url)
        before, after = tmp_path / f"before.{fmt}", tmp_path / f"after.{fmt}"
        assert first(*model, "export-users", str(before), "--include-hashes").exit_code == 0
        imported = second(*model, "import-users", str(before))
        assert imported.exit_code == 0, imported.output
        assert second(*model, "export-users", str(after), "--include-hashes").exit_code == 0
        assert after.read_bytes() == before.read_bytes()


async def _export_path(url: str, model_path: str | None) -> bool:
    from usersctl.exporting import export_columns, renders_in_database
    from usersctl.users import open_users

    async with open_users(url, model_path=model_path) as ctx:
        columns = export_columns(ctx.model, include_hashes=True)
        return renders_in_database(ctx.model, columns, ctx.session.bind.dialect.name)


def test_fastapi_users_own_table_is_still_exported_by_the_database(cli: Any) -> None:
    """The fast path (the database renders each row) serves FastAPI Users' columns, read from
    the database or from the model; not on MySQL/MariaDB, whose JSON_OBJECT spaces its output
    and writes booleans as 0 and 1 (exporting.renders_in_database): Python renders them there."""
    fast = not cli.url.startswith("mysql")
    assert asyncio.run(_export_path(cli.url, None)) is fast
    assert asyncio.run(_export_path(cli.url, "usersctl.builtin_tables:User")) is fast


def test_a_table_with_other_types_is_exported_through_python(
    typed: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(typed.cwd))
    assert asyncio.run(_export_path(typed.url, typed.model)) is False
    assert asyncio.run(_export_path(typed.url, None)) is False


@pytest.mark.parametrize("database_url", ["mariadb"], indirect=True)
def test_a_double_read_from_mariadb_exports_as_a_number(cli: Any, db: Any) -> None:
    """SQLAlchemy reads MySQL's DOUBLE back as a Decimal (the reflected type says asdecimal);
    the export writes the number it holds, not an unexpected TypeError."""
    db.execute('ALTER TABLE "user" ADD COLUMN score DOUBLE')
    db.seed("ann@example.com")
    db.execute("UPDATE \"user\" SET score = 1000001.5 WHERE email = 'ann@example.com'")
    for fmt in ("jsonl", "json"):
        out = cli.ok("export-users", "-", "-o", fmt, "--columns", "email,score").stdout
        rows = (
            [json.loads(line) for line in out.splitlines()] if fmt == "jsonl" else json.loads(out)
        )
        assert rows == [{"email": "ann@example.com", "score": 1000001.5}], out
