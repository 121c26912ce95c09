"""init-db: creates the tables and the lower(email) index once; --sql prints the DDL instead."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING

from harness import Database, is_mysql

if TYPE_CHECKING:
    from harness import Cli

#: The unique email index init-db makes: on lower(email), but on MySQL/MariaDB (no expression
#: indexes there) on email itself, in its case-insensitive collation.
EMAIL_INDEX = {True: "ix_user_email", False: "ix_user_email_lower"}


def test_init_db_creates_the_tables_and_a_second_run_changes_nothing(empty_cli: Cli) -> None:
    # Create
    first = empty_cli("init-db")
    assert first.exit_code == 0, first.output
    assert first.stdout == ""
    assert "Created table user" in first.stderr
    assert f"Created index {EMAIL_INDEX[is_mysql(empty_cli.url)]}\n" in first.stderr
    # Again: nothing changes, and that is success
    second = empty_cli("init-db")
    assert second.exit_code == 0, second.output
    assert "Nothing to do" in second.stderr
    assert "Created" not in second.stderr
    # The database is usable
    assert empty_cli.json("list-users") == []


def test_init_db_adds_oauth_and_token_tables_on_request(empty_cli: Cli) -> None:
    empty_cli.ok("init-db")
    oauth = empty_cli.ok("init-db", "--oauth")
    assert "Created table oauth_account" in oauth.stderr
    assert "accesstoken" not in oauth.stderr
    tokens = empty_cli.ok("init-db", "--oauth", "--access-tokens")
    assert "Created table accesstoken" in tokens.stderr
    assert "oauth_account" not in tokens.stderr
    again = empty_cli.ok("init-db", "--oauth", "--access-tokens")
    assert "Nothing to do" in again.stderr


def test_init_db_says_where_without_the_password(empty_cli: Cli) -> None:
    result = empty_cli.ok("init-db")
    if empty_cli.url.startswith("postgresql"):
        # The test server trusts any password; this one must not be shown.
        with_password = empty_cli.url.replace("postgres@", "postgres:s3cretpw@", 1)
        result = empty_cli("-d", with_password, "init-db", url=False)
        assert result.exit_code == 0, result.output
        assert "s3cretpw" not in result.output
        assert "***" in result.stderr


def _apply_ddl(cli: Cli, ddl: str) -> None:
    url = cli.url
    path = cli.sqlite_path
    if path is not None:
        with sqlite3.connect(path) as connection:
            connection.executescript(ddl)
        return
    if is_mysql(url):  # the driver runs one statement at a time
        Database(url).execute(*(statement for statement in ddl.split(";\n") if statement.strip()))
        return

    async def apply() -> None:
        import asyncpg
        from sqlalchemy.engine import make_url

        dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(ddl)
        finally:
            await connection.close()

    asyncio.run(apply())


def test_init_db_sql_prints_the_dialects_ddl_without_touching_the_database(
    empty_cli: Cli,
) -> None:
    result = empty_cli("init-db", "--sql", "--oauth", "--access-tokens")
    assert result.exit_code == 0, result.output
    ddl = result.stdout
    assert result.stderr == ""
    assert "CREATE TABLE" in ddl
    if is_mysql(empty_cli.url):
        # No expression indexes: the unique index on email, whose _ci collation ignores case.
        assert "CREATE UNIQUE INDEX ix_user_email ON user (email)" in ddl
        assert "lower(" not in ddl
    else:
        assert "CREATE UNIQUE INDEX ix_user_email_lower" in ddl
        assert "(lower(email))" in ddl
    assert "oauth_account" in ddl and "accesstoken" in ddl
    path = empty_cli.sqlite_path
    if path is not None:
        assert "CHAR(36)" in ddl and "UUID" not in ddl
        assert not path.exists(), "--sql must not create the SQLite file"
    elif is_mysql(empty_cli.url):
        assert "CREATE TABLE user" in ddl and "id CHAR(36) NOT NULL" in ddl
        untouched = empty_cli("list-users")
        assert untouched.exit_code == 5, untouched.output
    else:
        assert 'CREATE TABLE "user"' in ddl and "id UUID NOT NULL" in ddl
        untouched = empty_cli("list-users")
        assert untouched.exit_code == 5, untouched.output
    # The DDL is what init-db would have done: applied by hand, init-db finds nothing to do.
    _apply_ddl(empty_cli, ddl)
    after = empty_cli.ok("init-db", "--oauth", "--access-tokens")
    assert "Nothing to do" in after.stderr


def test_init_db_sql_for_another_dialect_needs_no_server(empty_cli: Cli) -> None:
    # Nothing listens on port 1: --sql never connects.
    result = empty_cli(
        "-d", "postgresql://app:s3cretpw@127.0.0.1:1/app", "init-db", "--sql", url=False
    )
    assert result.exit_code == 0, result.output
    assert 'CREATE TABLE "user"' in result.stdout
    sqlite = empty_cli("-d", "sqlite:///./never.db", "init-db", "--sql", url=False)
    assert sqlite.exit_code == 0, sqlite.output
    assert "CREATE TABLE user" in sqlite.stdout


def test_init_db_dry_run_reports_and_creates_nothing(empty_cli: Cli) -> None:
    result = empty_cli("init-db", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "Would create table user" in result.stderr
    path = empty_cli.sqlite_path
    if path is not None:
        assert not path.exists()
    else:
        assert empty_cli("list-users").exit_code == 5
    empty_cli.ok("init-db")
    again = empty_cli.ok("init-db", "--dry-run", "--oauth")
    assert "Would create table oauth_account" in again.stderr
    assert "Created table oauth_account" in empty_cli.ok("init-db", "--oauth").stderr


def test_init_db_on_a_fastapi_users_table_adds_only_the_index(empty_cli: Cli) -> None:
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTableUUID
    from sqlalchemy.orm import DeclarativeBase

    from usersctl.engine import create_engine

    class Base(DeclarativeBase):
        pass

    class User(SQLAlchemyBaseUserTableUUID, Base):
        pass

    async def create_all() -> None:
        engine = create_engine(empty_cli.url)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(Base.metadata.create_all)
        finally:
            await engine.dispose()

    path = empty_cli.sqlite_path
    if path is not None:
        path.touch()
    asyncio.run(create_all())
    result = empty_cli.ok("init-db")
    if is_mysql(empty_cli.url):
        # FastAPI Users' unique index on email, in a _ci collation, is the index there already.
        assert "already has the tables and the unique index on email" in result.stderr
        (index,) = Database(empty_cli.url).query(
            "SELECT NON_UNIQUE AS non_unique FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'user' AND COLUMN_NAME = 'email'"
        )
        assert index["non_unique"] == 0
        return
    assert "Created index ix_user_email_lower" in result.stderr
    assert "Created table" not in result.stderr
    assert "Nothing to do" in empty_cli.ok("init-db").stderr
