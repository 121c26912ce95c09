"""init-db --model beside the app's other tables: a user table with a foreign key to a ``tenants``
table (which has its own ``email`` column, and references ``regions``) is created after them."""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from harness import Cli, is_mysql, sql_engine

TENANT_MODELS = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseOAuthAccountTable, SQLAlchemyBaseUserTable
    from sqlalchemy import ForeignKey, Integer, String
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class Region(Base):
        __tablename__ = "regions"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)


    class Tenant(Base):
        __tablename__ = "tenants"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        region_id: Mapped[int] = mapped_column(ForeignKey("regions.id"))
        email: Mapped[str | None] = mapped_column(String(320))  # the tenant's contact


    class User(SQLAlchemyBaseUserTable[int], Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))


    class OAuthAccount(SQLAlchemyBaseOAuthAccountTable[int], Base):
        __tablename__ = "user_oauth_accounts"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="cascade"))
"""

#: The same user model, in a module that does not define the table its foreign key names.
DANGLING_MODELS = """
    from fastapi_users_db_sqlalchemy import SQLAlchemyBaseUserTable
    from sqlalchemy import ForeignKey, Integer
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class User(SQLAlchemyBaseUserTable[int], Base):
        __tablename__ = "users"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"))
"""


def write_module(folder: Path, source: str) -> str:
    name = f"tenant_app_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


async def _sql(url: str, *statements: str) -> Any:
    engine = sql_engine(url)
    try:
        async with engine.begin() as connection:
            result = None
            for statement in statements:
                result = await connection.execute(text(statement))
            return result.all() if result is not None and result.returns_rows else None
    finally:
        await engine.dispose()


def sql(url: str, *statements: str) -> Any:
    """Run plain SQL statements in one transaction; the rows of the last, if it returns any."""
    return asyncio.run(_sql(url, *statements))


def table_names(url: str) -> set[str]:
    if url.startswith("sqlite"):
        rows = sql(url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    elif is_mysql(url):
        query = "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()"
        rows = sql(url, query)
    else:
        rows = sql(url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in rows}


def index_count(url: str, table: str) -> int:
    if url.startswith("sqlite"):
        rows = sql(
            url, f"SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = '{table}'"
        )
    elif is_mysql(url):
        # Those on email: InnoDB adds an index of its own for each foreign key.
        rows = sql(
            url,
            "SELECT DISTINCT index_name FROM information_schema.statistics "
            f"WHERE table_schema = DATABASE() AND table_name = '{table}' AND column_name = 'email'",
        )
    else:
        rows = sql(url, f"SELECT indexname FROM pg_indexes WHERE tablename = '{table}'")
    return len(
        [
            row
            for row in rows
            if not row[0].startswith(("sqlite_autoindex", f"{table}_pkey", "PRIMARY"))
        ]
    )


def test_init_db_creates_the_tables_the_user_table_references_first(
    usersctl: Any, database_url: str, tmp_path: Path
) -> None:
    model = f"{write_module(tmp_path, TENANT_MODELS)}:User"

    result = usersctl.ok("--model", model, "init-db")
    created = [line for line in result.stderr.splitlines() if line.startswith("Created table")]
    assert created == ["Created table regions", "Created table tenants", "Created table users"]
    assert table_names(database_url) >= {"regions", "tenants", "users"}
    # Run again: nothing to do, and the tenants' email column gets no lower(email) index
    again = usersctl.ok("--model", model, "init-db")
    assert "Nothing to do" in again.stderr
    assert index_count(database_url, "tenants") == 0

    # The app's tables work together: a user of a tenant
    sql(
        database_url,
        "INSERT INTO regions (id) VALUES (7)",
        "INSERT INTO tenants (id, region_id, email) VALUES (3, 7, 'ops@tenant.example')",
    )
    usersctl.ok(
        "--model", model, "create-user", "ann@example.com", "--generate-password",
        "--set", "tenant_id=3",
    )  # fmt: skip
    assert sql(database_url, "SELECT email, tenant_id FROM users") == [("ann@example.com", 3)]


def test_init_db_sql_prints_the_referenced_tables_in_order(empty_cli: Cli, tmp_path: Path) -> None:
    model = f"{write_module(tmp_path, TENANT_MODELS)}:User"
    ddl = empty_cli.ok("--model", model, "init-db", "--sql").stdout
    positions = [ddl.index(f"CREATE TABLE {name} (") for name in ("regions", "tenants", "users")]
    assert positions == sorted(positions)


def test_a_foreign_key_to_a_table_the_model_does_not_define_is_named(
    empty_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    model = f"{write_module(tmp_path, DANGLING_MODELS)}:User"
    message = empty_cli.fails(2, "--model", model, "init-db")
    assert "users.tenant_id references tenants.id, which the model's metadata does not define" in (
        message
    )
    if database_url.startswith("sqlite"):
        assert (
            not Path(database_url.split(":///", 1)[1]).exists()
            or table_names(database_url) == set()
        )
    else:
        assert table_names(database_url) == set()


def test_a_missing_table_is_named_not_called_the_user_table(
    empty_cli: Cli, database_url: str, tmp_path: Path
) -> None:
    model = f"{write_module(tmp_path, TENANT_MODELS)}:User"
    empty_cli.ok("--model", model, "init-db")  # without --oauth: no user_oauth_accounts table
    sql(
        database_url,
        "INSERT INTO regions (id) VALUES (7)",
        "INSERT INTO tenants VALUES (3, 7, NULL)",
    )
    create = ("create-user", "ann@example.com", "--generate-password", "--set", "tenant_id=3")
    empty_cli.ok("--model", model, *create)
    message = empty_cli.fails(5, "--model", model, "show-user", "ann@example.com")
    assert "the table 'user_oauth_accounts' does not exist" in message
    assert "the user table does not exist" not in message
    if database_url.startswith("sqlite"):
        # Only SQLite lets the referenced table go while the user table stays
        sql(database_url, "PRAGMA foreign_keys = OFF", "DROP TABLE tenants")
        message = empty_cli.fails(5, "--model", model, *create[:1], "bo@example.com", *create[2:])
        assert "the table 'tenants' does not exist" in message
