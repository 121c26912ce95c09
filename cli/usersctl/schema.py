"""Creating usersctl's tables and the ``lower(email)`` index, or printing the DDL that would."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex, CreateTable

from usersctl.builtin_tables import AccessToken, OAuthAccount, User
from usersctl.db import email_lower_index_name
from usersctl.engine import DEFAULT_CONNECT_TIMEOUT, create_engine, normalize_url, sqlite_path
from usersctl.errors import Conflict

USER_TABLE = User.__table__


def built_in_tables(*, oauth: bool = False, access_tokens: bool = False) -> list[Table]:
    """The tables ``init-db`` creates: ``user``, and on request FastAPI Users' other two."""
    tables: list[Table] = [USER_TABLE]  # type: ignore[list-item]
    if oauth:
        tables.append(OAuthAccount.__table__)  # type: ignore[arg-type]
    if access_tokens:
        tables.append(AccessToken.__table__)  # type: ignore[arg-type]
    return tables


def schema_sql(url: str, tables: list[Table]) -> str:
    """The DDL for ``tables`` in the URL's dialect, without connecting."""
    dialect = normalize_url(url).get_dialect()()
    statements = []
    for table in tables:
        statements.append(str(CreateTable(table).compile(dialect=dialect)).strip())
        for index in sorted(table.indexes, key=lambda index: index.name or ""):
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return ";\n\n".join(statements) + ";\n"


def _is_unique_on_lower_email(definition: str) -> bool:
    """Whether an index's DDL (SQLite's ``sql``, PostgreSQL's ``pg_get_indexdef``) makes a unique
    index on ``lower(email)`` alone, for every row (no ``WHERE``)."""
    compact = "".join(definition.lower().replace('"', "").split())
    compact = compact.replace("(email)::text", "email")  # PostgreSQL casts a VARCHAR column
    return compact.startswith("createuniqueindex") and compact.endswith("(lower(email))")


def email_index_state(connection: Connection, table_name: str = "user") -> tuple[str, list[str]]:
    """Whether the table has a valid unique index on ``lower(email)`` (usersctl's or an
    equivalent): ``ok``, ``missing``, ``invalid`` (usersctl's name holds an index that a failed
    ``CREATE INDEX CONCURRENTLY`` left invalid) or ``wrong`` (usersctl's name holds an index of
    another shape: not unique, partial, or on other columns). Also the names of the indexes that
    must be dropped before the index can be built again under its name.

    What an index is decides, never its name: a non-unique index named like usersctl's would let
    addresses that differ only in case in."""
    rows: list[tuple[Any, ...]]
    if connection.dialect.name == "postgresql":
        rows = [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) "
                    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_class t ON t.oid = i.indrelid "
                    "WHERE t.relname = :t AND pg_table_is_visible(t.oid)"
                ),
                {"t": table_name},
            )
        ]
    else:
        # Indexes SQLite makes for UNIQUE constraints have no sql; they are on plain columns.
        rows = [
            (name, True, definition or "")
            for name, definition in connection.execute(
                text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t"),
                {"t": table_name},
            )
        ]
    ours = email_lower_index_name(table_name)
    valid = False
    invalid: list[str] = []
    wrong: list[str] = []
    for name, is_valid, definition in rows:
        if _is_unique_on_lower_email(definition):
            if is_valid:
                valid = True
            else:
                invalid.append(name)
        elif name == ours:
            wrong.append(name)
    if valid:
        return "ok", []
    if invalid:
        return "invalid", invalid + wrong
    if wrong:
        return "wrong", wrong
    return "missing", []


def has_email_lower_index(connection: Connection, table_name: str = "user") -> bool:
    """Whether the table has a valid unique index on ``lower(email)``."""
    return email_index_state(connection, table_name)[0] == "ok"


def count_case_duplicates(connection: Connection, table: Table) -> int:
    """How many lowercased emails are shared by more than one user."""
    key = func.lower(table.c.email)
    grouped = select(key).group_by(key).having(func.count() > 1).subquery()
    return int(connection.execute(select(func.count()).select_from(grouped)).scalar_one())


@dataclass
class InitReport:
    """What ``init_database`` did: tables and indexes created (empty lists: nothing to do)."""

    created_tables: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created_tables or self.created_indexes)


def _init(connection: Connection, tables: list[Table]) -> InitReport:
    report = InitReport()
    existing = set(inspect(connection).get_table_names())
    for table in tables:
        if table.name not in existing:
            table.create(connection)
            report.created_tables.append(table.name)
            report.created_indexes.extend(index.name or "" for index in table.indexes)
    # The user table that existed before (its name is the model's: "user" unless --model says
    # otherwise) gets the index now, unless case duplicates stand in the way.
    for table in tables:
        name = table.name
        if "email" not in table.c or name not in existing:
            continue
        state, invalid = email_index_state(connection, name)
        if state == "ok":
            continue
        from sqlalchemy import Index, MetaData

        quote = connection.dialect.identifier_preparer.quote
        # A failed concurrent build, or an index of another shape under usersctl's name: it
        # holds the name and does not keep case duplicates out.
        for leftover in invalid:
            connection.execute(text(f"DROP INDEX {quote(leftover)}"))
        reflected = Table(name, MetaData(), autoload_with=connection)
        duplicates = count_case_duplicates(connection, reflected)
        if duplicates:
            raise Conflict(
                f"cannot add the unique lower(email) index: {duplicates} email(s) are shared by "
                "users whose addresses differ only in case; run `usersctl doctor` to list them"
            )
        index_name = email_lower_index_name(name)
        Index(index_name, func.lower(reflected.c.email), unique=True).create(connection)
        report.created_indexes.append(index_name)
    return report


async def init_database(
    url: str,
    tables: list[Table],
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    dry_run: bool = False,
) -> InitReport:
    """Create what is missing of ``tables`` and the ``lower(email)`` index, in one transaction.

    ``dry_run`` reports what would be created and rolls back (both databases roll back DDL); a
    SQLite file that does not exist yet is not created for it.
    """
    path = sqlite_path(normalize_url(url))
    if dry_run and path is not None and not path.exists():
        report = InitReport()
        for table in tables:
            report.created_tables.append(table.name)
            report.created_indexes.extend(index.name or "" for index in table.indexes)
        return report
    engine = create_engine(url, connect_timeout=connect_timeout, sqlite_begin="BEGIN IMMEDIATE")
    try:
        async with engine.connect() as connection, connection.begin() as transaction:
            report = await connection.run_sync(_init, tables)
            if dry_run:
                await transaction.rollback()
            return report
    finally:
        await engine.dispose()
