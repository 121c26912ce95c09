"""Finding an app's tables and its database: the user table by its columns whatever its name,
``--table``, the OAuth and token tables by their foreign key, and the URL in a ``.env`` file.

The app modelled here is a common shape: a ``users`` table with integer ids and an extra column,
and ``user_oauth_accounts`` and ``user_access_tokens`` tables whose ``user_id`` references
``users.id`` (without ON DELETE CASCADE), as the app's own migrations made them. The tests run usersctl
in-process, three through the installed entry point, on SQLite, PostgreSQL and MariaDB, and check the
effects with plain SQL.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from harness import Cli, Usersctl, is_mysql, sql_engine

BOOLEANS = "is_active BOOLEAN NOT NULL DEFAULT true, is_superuser BOOLEAN NOT NULL DEFAULT false, is_verified BOOLEAN NOT NULL DEFAULT false"


def app_tables(url: str, schema: str = "") -> list[str]:
    """The app's tables (in ``schema``, on PostgreSQL), as its migrations create them."""
    serial = "INTEGER PRIMARY KEY" if url.startswith("sqlite") else "SERIAL PRIMARY KEY"
    if is_mysql(url):  # SERIAL is BIGINT UNSIGNED there, which an INTEGER user_id cannot reference
        serial = "INTEGER PRIMARY KEY AUTO_INCREMENT"
    prefix = f"{schema}." if schema else ""
    return [
        f"CREATE TABLE {prefix}users (id {serial}, email VARCHAR(320) NOT NULL, "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS}, full_name VARCHAR(100))",
        f"CREATE UNIQUE INDEX ix_users_email ON {prefix}users (email)",
        f"CREATE TABLE {prefix}user_oauth_accounts (id {serial}, "
        "oauth_name VARCHAR(100) NOT NULL, access_token VARCHAR(1024) NOT NULL, "
        "expires_at INTEGER, refresh_token VARCHAR(1024), account_id VARCHAR(320) NOT NULL, "
        f"account_email VARCHAR(320) NOT NULL, user_id INTEGER NOT NULL REFERENCES {prefix}users(id))",
        f"CREATE TABLE {prefix}user_access_tokens (token VARCHAR(43) PRIMARY KEY, "
        f"created_at TIMESTAMP NOT NULL, user_id INTEGER NOT NULL REFERENCES {prefix}users(id))",
    ]


def sql(url: str, *statements: str, foreign_keys: bool = True) -> list[tuple[Any, ...]]:
    """Run SQL straight through the driver; the rows of the last statement."""
    if url.startswith("sqlite"):
        connection = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
        try:
            connection.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
            rows: list[tuple[Any, ...]] = []
            for statement in statements:
                rows = connection.execute(statement).fetchall()
            return rows
        finally:
            connection.close()
    if is_mysql(url):
        return asyncio.run(_mysql(url, statements, foreign_keys))

    async def run() -> list[tuple[Any, ...]]:
        import asyncpg

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            if not foreign_keys:
                # Foreign keys are triggers; a superuser may switch them off for a session.
                await connection.execute("SET session_replication_role = replica")
            found: list[tuple[Any, ...]] = []
            for statement in statements:
                found = [tuple(row) for row in await connection.fetch(statement)]
            return found
        finally:
            await connection.close()

    return asyncio.run(run())


async def _mysql(
    url: str, statements: tuple[str, ...], foreign_keys: bool
) -> list[tuple[Any, ...]]:
    """MySQL/MariaDB: each statement committed, through the harness's connection (standard
    quoting); the rows of the last."""
    engine = sql_engine(url)
    try:
        async with engine.connect() as plain:
            connection = await plain.execution_options(isolation_level="AUTOCOMMIT")
            if not foreign_keys:
                await connection.exec_driver_sql("SET SESSION foreign_key_checks = 0")
            found: list[tuple[Any, ...]] = []
            for statement in statements:
                result = await connection.exec_driver_sql(statement.replace("%", "%%"))
                found = [tuple(row) for row in result] if result.returns_rows else []
            return found
    finally:
        await engine.dispose()


def tables(url: str) -> set[str]:
    """The tables of the database (PostgreSQL: of every schema but the system's, as schema.name
    outside public)."""
    if url.startswith("sqlite"):
        return {name for (name,) in sql(url, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if is_mysql(url):
        query = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        return {name for (name,) in sql(url, query)}
    rows = sql(
        url,
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    return {name if schema == "public" else f"{schema}.{name}" for schema, name in rows}


def indexes(url: str, table: str) -> set[str]:
    if url.startswith("sqlite"):
        query = f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'"
    elif is_mysql(url):
        query = (
            "SELECT DISTINCT index_name FROM information_schema.statistics "
            f"WHERE table_schema = DATABASE() AND table_name = '{table}'"
        )
    else:
        schema, _, name = table.rpartition(".")
        query = (
            "SELECT indexname FROM pg_indexes "
            f"WHERE tablename = '{name}' AND schemaname = '{schema or 'public'}'"
        )
    return {name for (name,) in sql(url, query)}


def references(url: str, table: str) -> set[str]:
    """The tables that ``table``'s foreign keys reference."""
    if url.startswith("sqlite"):
        return {
            row[0] for row in sql(url, f"SELECT \"table\" FROM pragma_foreign_key_list('{table}')")
        }
    if is_mysql(url):
        query = (
            "SELECT referenced_table_name FROM information_schema.key_column_usage "
            f"WHERE table_schema = DATABASE() AND table_name = '{table}' "
            "AND referenced_table_name IS NOT NULL"
        )
        return {name for (name,) in sql(url, query)}
    rows = sql(
        url,
        "SELECT confrelid::regclass::text FROM pg_constraint "
        f"WHERE contype = 'f' AND conrelid = '{table}'::regclass",
    )
    return {row[0].strip('"') for row in rows}


@pytest.fixture
def app(empty_cli: Cli, database_url: str) -> Usersctl:
    """usersctl on the app's database: ``users`` and its renamed OAuth and token tables."""
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.split(":///", 1)[1]).close()
    sql(database_url, *app_tables(database_url))
    return empty_cli


def created(result: Any) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(result.stdout)
    return found


# The user table by its columns ----------------------------------------------------------------


def test_an_app_users_table_and_its_renamed_oauth_and_token_tables_are_found(
    app: Usersctl, database_url: str
) -> None:
    admin = created(
        app.ok(
            "create-user", "admin@example.com", "--superuser", "--generate-password", "-o", "json"
        )
    )
    assert admin["id"] == 1 and admin["full_name"] is None  # the app's integer ids, its column
    assert sql(database_url, "SELECT id, email, is_superuser FROM users") == [
        (1, "admin@example.com", True)
    ]
    assert "user" not in tables(database_url)  # no second table beside the app's

    # The OAuth account and the session are found through their foreign key to users.id.
    sql(
        database_url,
        "INSERT INTO user_oauth_accounts (oauth_name, access_token, account_id, account_email, "
        "user_id) VALUES ('github', 'secret', 'gh-1', 'admin@github.example', 1)",
        "INSERT INTO user_access_tokens (token, created_at, user_id) "
        "VALUES ('session-1', CURRENT_TIMESTAMP, 1)",
    )
    shown = created(app.ok("show-user", "admin@example.com", "-o", "json"))
    assert shown["oauth_accounts"] == [
        {"provider": "github", "account_id": "gh-1", "account_email": "admin@github.example"}
    ]
    assert shown["access_tokens"] == 1
    assert "Revoked 1 access token" in app.ok("set-password", "1", "--generate-password").stderr
    assert sql(database_url, "SELECT count(*) FROM user_access_tokens") == [(0,)]

    # A user with an OAuth account is deleted with it (the key has no ON DELETE CASCADE).
    app.ok("create-user", "bob@example.com", "--generate-password")
    sql(
        database_url,
        "INSERT INTO user_oauth_accounts (oauth_name, access_token, account_id, account_email, "
        "user_id) VALUES ('google', 'secret', 'g-2', 'bob@google.example', 2)",
    )
    app.ok("delete-user", "bob@example.com", "--yes")
    assert sql(database_url, "SELECT email FROM users") == [("admin@example.com",)]
    assert sql(database_url, "SELECT account_id FROM user_oauth_accounts") == [("gh-1",)]

    # Exports and imports work on the same table.
    exported = app.ok("export-users", "-", "-o", "jsonl").stdout.splitlines()
    assert [json.loads(line)["email"] for line in exported] == ["admin@example.com"]
    app.ok(
        "import-users",
        "-",
        "--format",
        "jsonl",
        input='{"email": "carol@example.com", "password": "a long passphrase here", "full_name": "Carol"}\n',
    )
    assert sql(database_url, "SELECT full_name FROM users WHERE email = 'carol@example.com'") == [
        ("Carol",)
    ]

    # doctor checks the app's tables, and --fix gives users its lower(email) index.
    checks = {c["check"]: c for c in json.loads(app("doctor", "-o", "json").stdout)["checks"]}
    assert checks["model"]["detail"].startswith("read from the database; table 'users', integer")
    assert (
        checks["oauth_account table"]["detail"]
        == "'user_oauth_accounts' has FastAPI Users' columns"
    )
    assert (
        checks["accesstoken table"]["detail"] == "'user_access_tokens' has FastAPI Users' columns"
    )
    if is_mysql(database_url):
        # No lower(email) index there: the app's unique index on email, in its _ci collation,
        # is the one usersctl wants.
        assert checks["email index"]["status"] == "ok", checks["email index"]
        assert "unique index on email of 'users'" in checks["email index"]["detail"]
    else:
        assert checks["email index"]["status"] == "fail"
        app.ok("doctor", "--fix")
        assert "ix_users_email_lower" in indexes(database_url, "users")
    assert "user" not in tables(database_url)


def test_several_user_tables_are_named_and_table_chooses_one(
    app: Usersctl, database_url: str
) -> None:
    sql(
        database_url,
        "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS})",
    )
    for command in (
        ["list-users"],
        ["create-user", "x@example.com", "--generate-password"],
        ["doctor"],
    ):
        message = app.fails(2, *command)
        assert "several tables have FastAPI Users' user columns: auth_user, users" in message
        assert "--table" in message
    assert sql(database_url, "SELECT count(*) FROM users") == [(0,)]

    app.ok(
        "--table",
        "auth_user",
        "create-user",
        "admin@example.com",
        "--set",
        "id=7",
        "--generate-password",
    )
    assert sql(database_url, "SELECT id, email FROM auth_user") == [(7, "admin@example.com")]
    assert sql(database_url, "SELECT count(*) FROM users") == [(0,)]
    # USERSCTL_TABLE says the same, for every command.
    listed = app.ok("list-users", "-o", "json", env={"USERSCTL_TABLE": "auth_user"}).stdout
    assert [row["email"] for row in json.loads(listed)] == ["admin@example.com"]
    exported = app.ok("export-users", "-", env={"USERSCTL_TABLE": "users"}).stdout
    assert exported == ""

    # A table that is not there, or lacks FastAPI Users' columns.
    assert "no table 'nosuch' (--table)" in app.fails(5, "--table", "nosuch", "list-users")
    lacking = app.fails(5, "--table", "user_access_tokens", "list-users")
    assert "lacks the column(s) id, email, hashed_password" in lacking


def test_completion_completes_from_the_table_named(
    app: Usersctl, usersctl_anywhere: Usersctl, database_url: str
) -> None:
    sql(
        database_url,
        "CREATE TABLE auth_user (id INTEGER PRIMARY KEY, email VARCHAR(320) NOT NULL, "
        f"hashed_password VARCHAR(1024) NOT NULL, {BOOLEANS})",
        "INSERT INTO auth_user (id, email, hashed_password) VALUES (1, 'staff@example.com', 'x')",
        "INSERT INTO users (email, hashed_password) VALUES ('customer@example.com', 'x')",
    )

    def offered(words: str, **env: str) -> list[str]:
        result = usersctl_anywhere(
            url=False,
            env={
                "_USERSCTL_COMPLETE": "complete_bash",
                "COMP_WORDS": words,
                "COMP_CWORD": str(len(words.split()) - 1),
                **env,
            },
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    words = f"usersctl -d {database_url} --table auth_user show-user s"
    assert offered(words) == ["staff@example.com"]
    words = f"usersctl -d {database_url} show-user c"
    assert offered(words, USERSCTL_TABLE="users") == ["customer@example.com"]
    assert offered(words) == []  # two user tables, and none named: nothing, silently


def test_without_a_user_table_among_other_tables_the_tables_are_listed_not_init_db(
    empty_cli: Cli, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.split(":///", 1)[1]).close()
    sql(
        database_url,
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(50))",
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email VARCHAR(320))",
    )
    message = empty_cli.fails(5, "show-user", "a@example.com")
    assert "no FastAPI Users user table found" in message
    assert "accounts lacks hashed_password, is_active, is_superuser, is_verified" in message
    assert "the database has: accounts, items" in message
    assert "init-db" not in message
    result = empty_cli("doctor", "-o", "json")
    assert result.returncode == 6, result.stderr
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert "no FastAPI Users user table found" in checks["user table"]["detail"]
    assert "init-db" not in checks["user table"]["detail"]


# init-db and --table ----------------------------------------------------------------------------


def test_init_db_refuses_a_user_table_beside_the_app_one_and_works_on_the_one_named(
    app: Usersctl, database_url: str
) -> None:
    message = app.fails(4, "init-db")
    assert "already has a FastAPI Users user table, 'users'" in message
    assert "usersctl --table users init-db" in message
    assert "user" not in tables(database_url)

    result = app.ok("--table", "users", "init-db")
    if is_mysql(database_url):  # the app's unique index on email is the index there
        assert "already has the tables and the unique index on email" in result.stderr
        assert "ix_users_email" in indexes(database_url, "users")
        assert "user" not in tables(database_url)
        return
    assert "ix_users_email_lower" in result.stderr
    assert "ix_users_email_lower" in indexes(database_url, "users")
    assert "user" not in tables(database_url)


def test_init_db_creates_the_table_named_and_its_tables_reference_it(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("--table", "accounts", "init-db", "--oauth", "--access-tokens")
    assert tables(database_url) == {"accounts", "oauth_account", "accesstoken"}
    assert references(database_url, "oauth_account") == {"accounts"}
    assert references(database_url, "accesstoken") == {"accounts"}
    # MySQL/MariaDB: no lower(email) index; the unique one on email does its work.
    made_indexes = {"ix_accounts_email"} | (
        set() if is_mysql(database_url) else {"ix_accounts_email_lower"}
    )
    assert made_indexes <= indexes(database_url, "accounts")
    assert "Nothing to do" in empty_cli.ok("--table", "accounts", "init-db").stderr

    # Found by its columns from then on, with its OAuth and token tables.
    made = created(
        empty_cli.ok("create-user", "a@example.com", "--generate-password", "-o", "json")
    )
    sql(
        database_url,
        "INSERT INTO accesstoken (token, created_at, user_id) "
        f"VALUES ('t-1', CURRENT_TIMESTAMP, '{made['id']}')",
    )
    assert created(empty_cli.ok("show-user", "a@example.com", "-o", "json"))["access_tokens"] == 1
    assert sql(database_url, "SELECT email FROM accounts") == [("a@example.com",)]


def test_init_db_gives_an_app_table_with_integer_ids_oauth_and_token_tables_that_fit(
    empty_cli: Cli, database_url: str
) -> None:
    if database_url.startswith("sqlite"):
        sqlite3.connect(database_url.split(":///", 1)[1]).close()
    sql(database_url, app_tables(database_url)[0])  # the app's users table alone
    empty_cli.ok("--table", "users", "init-db", "--oauth", "--access-tokens")
    assert references(database_url, "accesstoken") == {"users"}
    if database_url.startswith("sqlite"):
        query = "SELECT type FROM pragma_table_info('accesstoken') WHERE name = 'user_id'"
    elif is_mysql(database_url):  # MySQL calls INTEGER int
        query = (
            "SELECT IF(data_type = 'int', 'integer', data_type) FROM information_schema.columns "
            "WHERE "
            "table_schema = DATABASE() AND table_name = 'accesstoken' AND column_name = 'user_id'"
        )
    else:
        query = (
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_name = 'accesstoken' AND column_name = 'user_id'"
        )
    assert [kind.lower() for (kind,) in sql(database_url, query)] == ["integer"]
    made = created(
        empty_cli.ok("create-user", "a@example.com", "--generate-password", "-o", "json")
    )
    sql(
        database_url,
        "INSERT INTO accesstoken (token, created_at, user_id) "
        f"VALUES ('t-1', CURRENT_TIMESTAMP, {made['id']})",
    )
    assert created(empty_cli.ok("show-user", "a@example.com", "-o", "json"))["access_tokens"] == 1


# The token table by its foreign key, not by its name ------------------------------------------


def test_an_accesstoken_table_that_references_another_table_is_left_alone(
    app: Usersctl, database_url: str
) -> None:
    # A table named as FastAPI Users names its token table, but the app's devices' tokens.
    sql(
        database_url,
        "CREATE TABLE devices (id INTEGER PRIMARY KEY, label VARCHAR(50))",
        "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
        "user_id INTEGER REFERENCES devices(id))",
        "INSERT INTO devices (id, label) VALUES (5, 'printer'), (6, 'scanner')",
        "INSERT INTO accesstoken (token, created_at, user_id) "
        "VALUES ('device-5', CURRENT_TIMESTAMP, 5), ('device-6', CURRENT_TIMESTAMP, 6)",
    )
    app.ok("create-user", "alice@example.com", "--generate-password")
    sql(
        database_url,
        "INSERT INTO user_access_tokens (token, created_at, user_id) "
        "VALUES ('alice', CURRENT_TIMESTAMP, 1), ('orphan', CURRENT_TIMESTAMP, 99)",
        foreign_keys=False,
    )
    result = app("doctor", "-o", "json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert (
        checks["accesstoken table"]["detail"] == "'user_access_tokens' has FastAPI Users' columns"
    )
    assert checks["orphan rows"]["counts"] == {"user_oauth_accounts": 0, "user_access_tokens": 1}

    app.ok("doctor", "--fix")
    assert sql(database_url, "SELECT token FROM user_access_tokens") == [("alice",)]
    assert sql(database_url, "SELECT token FROM accesstoken ORDER BY token") == [
        ("device-5",),
        ("device-6",),
    ]
    # Ending alice's sessions ends hers only, whatever user_id the devices' tokens hold.
    sql(database_url, "UPDATE accesstoken SET user_id = NULL WHERE token = 'device-6'")
    app.ok("deactivate-user", "alice@example.com")
    assert sql(database_url, "SELECT count(*) FROM user_access_tokens") == [(0,)]
    assert sql(database_url, "SELECT count(*) FROM accesstoken") == [(2,)]


def test_without_an_app_token_table_the_decoy_is_not_taken_for_one(
    empty_cli: Cli, database_url: str
) -> None:
    empty_cli.ok("init-db")
    sql(
        database_url,
        "CREATE TABLE devices (id INTEGER PRIMARY KEY)",
        "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
        "user_id INTEGER REFERENCES devices(id))",
        "INSERT INTO devices (id) VALUES (1)",
        "INSERT INTO accesstoken (token, created_at, user_id) VALUES ('d', CURRENT_TIMESTAMP, 1)",
    )
    result = empty_cli("doctor", "--fix", "-o", "json")
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["accesstoken table"]["detail"] == (
        "no access token table references 'user' ('accesstoken' does not)"
    )
    assert checks["orphan rows"]["detail"] == "no OAuth or access token tables"
    assert sql(database_url, "SELECT token FROM accesstoken") == [("d",)]


#: The app's own model of ``users`` and its token table (no OAuth), for --model.
SHOP_MODELS = """
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    hashed_password: Mapped[str] = mapped_column(String(1024))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    full_name: Mapped[str | None] = mapped_column(String(100))


class Session(Base):
    __tablename__ = "user_access_tokens"

    token: Mapped[str] = mapped_column(String(43), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
"""


def test_with_the_app_model_the_decoy_is_left_alone_too(
    app: Usersctl, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "shop_models.py").write_text(SHOP_MODELS)  # usersctl runs in tmp_path
    model = ["--model", "shop_models:User"]
    sql(
        database_url,
        "CREATE TABLE devices (id INTEGER PRIMARY KEY)",
        "CREATE TABLE accesstoken (token VARCHAR(43) PRIMARY KEY, created_at TIMESTAMP, "
        "user_id INTEGER REFERENCES devices(id))",
        "INSERT INTO devices (id) VALUES (7)",
        "INSERT INTO accesstoken (token, created_at, user_id) VALUES ('d', CURRENT_TIMESTAMP, 7)",
    )
    app.ok(*model, "create-user", "alice@example.com", "--generate-password")
    sql(
        database_url,
        "INSERT INTO user_access_tokens (token, created_at, user_id) "
        "VALUES ('alice', CURRENT_TIMESTAMP, 1), ('orphan', CURRENT_TIMESTAMP, 99)",
        foreign_keys=False,
    )
    report = json.loads(app(*model, "doctor", "--fix", "-o", "json").stdout)
    checks = {check["check"]: check for check in report["checks"]}
    assert checks["orphan rows"]["status"] == "fixed", checks
    assert sql(database_url, "SELECT token FROM user_access_tokens") == [("alice",)]
    assert sql(database_url, "SELECT token FROM accesstoken") == [("d",)]
    # The model names the table: a --table that says otherwise is refused.
    message = app.fails(2, *model, "--table", "auth_user", "list-users")
    assert "--table auth_user and --model shop_models:User disagree" in message


# PostgreSQL schemas ---------------------------------------------------------------------------


@pytest.fixture
def app_schema(database_url: str) -> Iterator[str]:
    """The app's tables in a schema of their own, ``app`` (dropped after: the PostgreSQL
    database outlives the test). Schemas are PostgreSQL's: its tests run there only."""
    sql(database_url, "CREATE SCHEMA app", *app_tables(database_url, "app"))
    yield "app"
    database = make_url(database_url).database
    sql(database_url, f'ALTER DATABASE "{database}" RESET search_path', "DROP SCHEMA app CASCADE")


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_user_table_in_a_schema_is_named_with_table(
    empty_cli: Cli, database_url: str, app_schema: str
) -> None:
    # Outside the search path: not found, but named, and init-db does not add a "user" table.
    message = empty_cli.fails(5, "list-users")
    assert "app.users has FastAPI Users' user columns" in message
    assert "--table app.users" in message
    assert "init-db" not in message
    assert "'app.users'" in empty_cli.fails(4, "init-db")

    named = ["--table", "app.users"]
    made = created(
        empty_cli.ok(*named, "create-user", "a@example.com", "--generate-password", "-o", "json")
    )
    sql(
        database_url,
        "INSERT INTO app.user_access_tokens (token, created_at, user_id) "
        f"VALUES ('t', CURRENT_TIMESTAMP, {made['id']})",
    )
    assert (
        created(empty_cli.ok(*named, "show-user", "a@example.com", "-o", "json"))["access_tokens"]
        == 1
    )
    empty_cli.ok(*named, "deactivate-user", "a@example.com")
    assert sql(database_url, "SELECT email, is_active FROM app.users") == [("a@example.com", False)]
    assert sql(database_url, "SELECT count(*) FROM app.user_access_tokens") == [(0,)]
    empty_cli.ok(*named, "doctor", "--fix")
    assert "ix_users_email_lower" in indexes(database_url, "app.users")
    assert tables(database_url) == {
        "app.users",
        "app.user_oauth_accounts",
        "app.user_access_tokens",
    }

    # On the search path, it is found by its columns.
    database = make_url(database_url).database
    sql(database_url, f'ALTER DATABASE "{database}" SET search_path = app, public')
    listed = json.loads(empty_cli.ok("list-users", "-o", "json").stdout)
    assert [row["email"] for row in listed] == ["a@example.com"]


# The database URL where the app keeps it -------------------------------------------------------


#: Where the URL comes from is decided before any database is reached: SQLite alone.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_database_url_is_read_from_dotenv_and_its_source_is_said(
    app: Usersctl, usersctl_anywhere: Usersctl, database_url: str, tmp_path: Path
) -> None:
    here = usersctl_anywhere
    (tmp_path / ".env").write_text(
        f"# the app's settings\nSECRET_KEY=x\nDATABASE_URL={database_url}\n"
    )
    here.ok("create-user", "a@example.com", "--generate-password")
    assert sql(database_url, "SELECT email FROM users") == [("a@example.com",)]
    report = json.loads(here.ok("doctor", "--fix", "-o", "json").stdout)
    assert report["database_url_source"] == "DATABASE_URL in ./.env"

    # The environment comes before ./.env, and a connection error says where the URL came from.
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    message = here.fails(5, "list-users", env={"DATABASE_URL": elsewhere})
    assert message.endswith("(database URL from DATABASE_URL)")
    # A file named with --env-file (or USERSCTL_ENV_FILE) comes before the environment.
    (tmp_path / "prod.env").write_text(f'USERSCTL_DATABASE_URL="{database_url}"\n')
    for args, env in (
        (["--env-file", "prod.env"], {"DATABASE_URL": elsewhere}),
        ([], {"DATABASE_URL": elsewhere, "USERSCTL_ENV_FILE": str(tmp_path / "prod.env")}),
    ):
        listed = json.loads(here.ok(*args, "list-users", "-o", "json", env=env).stdout)
        assert [row["email"] for row in listed] == ["a@example.com"]
    refused = "postgresql://postgres:s3cretpw@127.0.0.1:1/app"
    (tmp_path / "down.env").write_text(f"DATABASE_URL={refused}\n")
    message = here.fails(5, "--env-file", "down.env", "show-user", "a@example.com")
    assert "cannot connect to the database at 127.0.0.1:1" in message
    assert message.endswith("(database URL from DATABASE_URL in down.env (--env-file))")
    assert "s3cretpw" not in message
    # -d comes first of all.
    assert app.ok("--env-file", "down.env", "list-users").returncode == 0
    # A file that gives no URL, when nothing else does, is a usage error; a missing file too.
    (tmp_path / "empty.env").write_text("SECRET_KEY=x\n")
    assert "defines neither" in here.fails(2, "--env-file", "empty.env", "list-users")
    assert here("--env-file", "missing.env", "list-users").returncode == 2


def test_without_any_url_a_missing_default_database_is_said_not_init_db(
    usersctl_anywhere: Usersctl, tmp_path: Path
) -> None:
    for command in (["show-user", "a@example.com"], ["export-users", "-"], ["doctor"]):
        message = usersctl_anywhere.fails(5, *command)
        assert "./users.db, the built-in default, does not exist" in message
        assert "init-db" not in message
    assert not (tmp_path / "users.db").exists()
    # A ./.env without the URL changes nothing; init-db still creates ./users.db.
    (tmp_path / ".env").write_text("SECRET_KEY=x\n")
    assert "the built-in default" in usersctl_anywhere.fails(5, "list-users")
    usersctl_anywhere.ok("init-db")
    assert (tmp_path / "users.db").is_file()
