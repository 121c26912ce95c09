"""Creating usersctl's tables and the ``lower(email)`` index, or printing the DDL that would."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, inspect, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SAWarning
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateIndex, CreateTable, DropIndex

from usersctl.builtin_tables import AccessToken, OAuthAccount, User
from usersctl.db import email_lower_index_name
from usersctl.email_case import index_key
from usersctl.engine import (
    DEFAULT_CONNECT_TIMEOUT,
    create_engine,
    execute_alone,
    normalize_url,
    sqlite_path,
)
from usersctl.errors import Conflict, DatabaseProblem, TablesMissing
from usersctl.migrations import ALEMBIC_VERSION_TABLE, IndexAdvice, email_index_advice

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
            if dialect.name == "mysql" and index.name == email_lower_index_name(table.name):
                continue  # the unique index on email serves (see add_email_lower_index)
            statements.append(str(CreateIndex(index).compile(dialect=dialect)).strip())
    return ";\n\n".join(statements) + ";\n"


def _is_unique_on_lower_email(definition: str) -> bool:
    """Whether an index's DDL (SQLite's ``sql``, PostgreSQL's ``pg_get_indexdef``) makes a unique
    index on ``lower(email)`` alone, for every row (no ``WHERE``)."""
    compact = "".join(definition.lower().replace('"', "").split())
    compact = compact.replace("(email)::text", "email")  # PostgreSQL casts a VARCHAR column
    return compact.startswith("createuniqueindex") and compact.endswith("(lower(email))")


def email_index_state(
    connection: Connection, table_name: str = "user", schema: str | None = None
) -> tuple[str, list[str]]:
    """Whether the table has a valid unique index on ``lower(email)`` (usersctl's or an
    equivalent): ``ok``, ``missing``, ``invalid`` (usersctl's name holds an index that a failed
    ``CREATE INDEX CONCURRENTLY`` left invalid) or ``wrong`` (usersctl's name holds an index of
    another shape: not unique, partial, or on other columns). Also the names of the indexes that
    must be dropped before the index can be built again under its name.

    What an index is decides, never its name: a non-unique index named like usersctl's would let
    addresses that differ only in case in. ``schema`` (PostgreSQL) names a table its bare name
    does not reach."""
    rows: list[tuple[Any, ...]]
    if connection.dialect.name == "mysql":
        return _mysql_email_index_state(connection, table_name)
    if connection.dialect.name == "postgresql":
        rows = [
            tuple(row)
            for row in connection.execute(
                text(
                    "SELECT c.relname, i.indisvalid, pg_get_indexdef(i.indexrelid) "
                    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_class t ON t.oid = i.indrelid "
                    "JOIN pg_namespace n ON n.oid = t.relnamespace "
                    "WHERE t.relname = :t AND (n.nspname = :s OR :s IS NULL "
                    "AND pg_table_is_visible(t.oid))"
                ),
                {"t": table_name, "s": schema},
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


def is_case_insensitive(collation: str | None) -> bool:
    """Whether a MySQL/MariaDB collation compares letters without their case: the ``_ci`` ones
    (``utf8mb4_general_ci``, ``utf8mb4_unicode_ci``, ``utf8mb4_0900_ai_ci``...); ``_bin`` and
    ``_cs`` ones tell ``A`` from ``a``."""
    return bool(collation) and "_ci" in str(collation).lower()


def email_collation(connection: Connection, table_name: str) -> str | None:
    """The collation of a MySQL/MariaDB table's ``email`` column."""
    return connection.execute(
        text(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND COLUMN_NAME = 'email'"
        ),
        {"t": table_name},
    ).scalar()


def _mysql_email_index_state(connection: Connection, table_name: str) -> tuple[str, list[str]]:
    """MySQL/MariaDB: ``ok`` where a unique index on the whole ``email`` column alone exists and
    the column's collation is case-insensitive (MariaDB has no index on ``lower(email)``; a _ci
    collation makes the one on ``email`` refuse addresses differing in case, and serve
    ``email = :x``); ``case-sensitive`` where the collation tells case apart (no index of usersctl's
    can keep case duplicates out then); else ``missing``, or ``wrong`` where usersctl's name holds
    another index."""
    collation = email_collation(connection, table_name)
    if collation is not None and not is_case_insensitive(collation):
        return "case-sensitive", []
    indexes: dict[str, list[tuple[Any, ...]]] = {}
    for name, non_unique, column, sub_part in connection.execute(
        text(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t"
        ),
        {"t": table_name},
    ):
        indexes.setdefault(name, []).append((int(non_unique), column, sub_part))
    for parts in indexes.values():
        if len(parts) == 1 and parts[0] == (0, "email", None):
            return "ok", []
    ours = email_lower_index_name(table_name)
    return ("wrong", [ours]) if ours in indexes else ("missing", [])


def has_email_lower_index(connection: Connection, table_name: str = "user") -> bool:
    """Whether the table has a valid unique index on ``lower(email)``."""
    return email_index_state(connection, table_name)[0] == "ok"


def count_case_duplicates(connection: Connection, table: Table) -> int:
    """How many lowercased emails are shared by more than one user."""
    key = index_key(table.c.email)
    grouped = select(key).group_by(key).having(func.count() > 1).subquery()
    return int(connection.execute(select(func.count()).select_from(grouped)).scalar_one())


@dataclass
class InitReport:
    """What ``init_database`` did: tables and indexes created (empty lists: nothing to do).

    On a database that Alembic manages, ``index_advice`` tells the app how to declare the
    ``lower(email)`` index: the index was left out, or, with ``apply_anyway``, added all the same.
    """

    created_tables: list[str] = field(default_factory=list)
    created_indexes: list[str] = field(default_factory=list)
    #: Of ``created_indexes``, those built with ``CONCURRENTLY`` (PostgreSQL, a table with rows).
    concurrent_indexes: list[str] = field(default_factory=list)
    alembic: bool = False
    index_advice: IndexAdvice | None = None
    #: The table (name, schema) of each index created, where it is not the one given: the
    #: parent table holding the email of a user table that inherits from it.
    index_tables: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.created_tables or self.created_indexes)

    @property
    def index_left_out(self) -> bool:
        """Whether the index is missing because the database's migrations are the app's."""
        advice = self.index_advice
        return advice is not None and advice.index_name not in self.created_indexes


def _advise(connection: Connection, tables: list[Table], existing: set[str]) -> InitReport:
    """On an Alembic-managed database: change nothing, and say what the app's migrations lack."""
    report = InitReport(alembic=True)
    missing = [table.fullname for table in tables if table.fullname not in existing]
    if missing:
        raise TablesMissing(
            f"the database is managed by Alembic (it has an {ALEMBIC_VERSION_TABLE} table) but "
            f"lacks the table(s) {', '.join(missing)}: create them with the app's migrations "
            "(alembic upgrade head), or give --apply-anyway"
        )
    for table in tables:
        if "email" not in table.c or "hashed_password" not in table.c:
            continue  # not a user table
        if email_index_state(connection, table.name, table.schema)[0] != "ok":
            report.index_advice = email_index_advice(
                table.name, connection.dialect.name, schema=table.schema
            )
    return report


def _init(
    connection: Connection, tables: list[Table], apply_anyway: bool = False, dry_run: bool = False
) -> InitReport:
    """Create what is missing in the caller's transaction. The index of a PostgreSQL table that
    has rows is only listed in ``concurrent_indexes``: it is built after the commit, with
    ``CONCURRENTLY``, so that the app's writes go on meanwhile. A dry run builds no index."""
    inspector = inspect(connection)
    existing = {
        table.fullname for table in tables if inspector.has_table(table.name, schema=table.schema)
    }
    alembic = inspector.has_table(ALEMBIC_VERSION_TABLE)
    if alembic and not apply_anyway:
        return _advise(connection, tables, existing)
    report = InitReport(alembic=alembic)
    for table in tables:
        if table.fullname not in existing:
            # MySQL/MariaDB commit each CREATE at once, whatever the transaction: a dry run
            # there only lists the table.
            if not (dry_run and connection.dialect.name == "mysql"):
                table.create(connection)
            report.created_tables.append(table.name)
            report.created_indexes.extend(
                index.name or ""
                for index in table.indexes
                if connection.dialect.name != "mysql"
                or index.name != email_lower_index_name(table.name)  # not made there
            )
    # The user table that existed before (its name is the model's: "user" unless --model says
    # otherwise) gets the index now, unless case duplicates stand in the way.
    for table in tables:
        if "email" not in table.c or "hashed_password" not in table.c:
            continue  # not a user table (a referenced table may have an email column)
        if table.fullname not in existing:
            continue  # created above, with its indexes
        name, schema = _email_holder(connection, table)
        state, invalid = email_index_state(connection, name, schema)
        if state == "ok":
            continue
        if state == "case-sensitive":
            raise DatabaseProblem(case_sensitive_message(connection, name))
        from sqlalchemy import Index, MetaData, literal

        with warnings.catch_warnings():
            # An expression index (lower(email), or an impostor under its name) is not
            # reflected, and is not needed here.
            warnings.filterwarnings("ignore", "Skipped unsupported reflection", SAWarning)
            reflected = Table(name, MetaData(), schema=schema, autoload_with=connection)
        duplicates = count_case_duplicates(connection, reflected)
        if duplicates:
            raise Conflict(
                f"cannot add the unique lower(email) index: {duplicates} email(s) are shared by "
                "users whose addresses differ only in case; run `usersctl doctor` to list them"
            )
        index_name = email_lower_index_name(name)
        report.created_indexes.append(index_name)
        if (name, schema) != (table.name, table.schema):
            report.index_tables[index_name] = (name, schema)
        if connection.dialect.name == "postgresql":
            has_rows = select(literal(1)).select_from(reflected).limit(1)
            if connection.execute(has_rows).first() is not None:
                # A plain build locks out the app's inserts for as long as it reads the table.
                report.concurrent_indexes.append(index_name)
                continue
        if dry_run:
            continue
        # A failed concurrent build, or an index of another shape under usersctl's name: it
        # holds the name and does not keep case duplicates out. (DropIndex says the table
        # where MySQL wants it: DROP INDEX ... ON ...)
        for leftover in invalid:
            connection.execute(DropIndex(Index(leftover, reflected.c.email)))
        Index(index_name, email_index_expression(connection, reflected), unique=True).create(
            connection
        )
    if alembic:  # the index is in now, and the app's models must declare it
        for index_name in report.created_indexes:
            target = _index_table(report, tables, index_name)
            if target is not None:
                report.index_advice = email_index_advice(
                    target[0], connection.dialect.name, schema=target[1]
                )
    return report


def email_index_expression(connection: Connection, table: Table) -> Any:
    """What the unique email index is on: ``lower(email)``; on MySQL/MariaDB ``email`` itself,
    in its case-insensitive collation (see ``_mysql_email_index_state``)."""
    return table.c.email if connection.dialect.name == "mysql" else func.lower(table.c.email)


def case_sensitive_message(connection: Connection, table_name: str) -> str:
    """Why a MySQL/MariaDB table whose email collation tells case apart gets no index."""
    collation = email_collation(connection, table_name)
    return (
        f"the email column of {table_name!r} has the case-sensitive collation {collation}: no "
        "index can keep out addresses that differ only in case, nor serve a lookup in any case; "
        f"give the column a _ci collation (ALTER TABLE `{table_name}` MODIFY email "
        "VARCHAR(320) NOT NULL COLLATE utf8mb4_unicode_ci)"
    )


def _index_table(
    report: InitReport, tables: list[Table], index_name: str
) -> tuple[str, str | None] | None:
    """The table (name, schema) of the ``lower(email)`` index ``index_name``: the parent table
    that holds the email of a user table that inherits from it, else the table it is named
    after; None for another index."""
    if index_name in report.index_tables:
        return report.index_tables[index_name]
    for table in tables:
        if email_lower_index_name(table.name) == index_name:
            return table.name, table.schema
    return None


def _email_holder(connection: Connection, table: Table) -> tuple[str, str | None]:
    """The table (name, schema) that holds the email of the existing user table ``table``: the
    table itself, or for one that inherits from another (its ``id`` references the parent's) the
    parent that has it, where the unique ``lower(email)`` index belongs. ``TablesMissing`` when
    none has it."""
    from usersctl.user_tables import TableName, read_catalog

    catalog = read_catalog(connection)
    found = catalog.find(TableName(table.name, table.schema))
    if found is None or "email" in catalog.columns[found]:
        return table.name, table.schema
    for parent in catalog.parents(found):
        if "email" in catalog.columns[parent]:
            return parent.name, parent.schema
    raise TablesMissing(f"table {table.fullname!r} lacks the column email that FastAPI Users needs")


async def init_database(
    url: str,
    tables: list[Table],
    *,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    dry_run: bool = False,
    apply_anyway: bool = False,
) -> InitReport:
    """Create what is missing of ``tables`` and the ``lower(email)`` index, in one transaction.

    ``dry_run`` reports what would be created and rolls back (both databases roll back DDL); a
    SQLite file that does not exist yet is not created for it. A database that Alembic manages
    is left as it is, with advice for the app, unless ``apply_anyway``.
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
            report = await connection.run_sync(_init, tables, apply_anyway, dry_run)
            built = set(report.created_indexes) - set(report.concurrent_indexes)
            if dry_run or not (report.created_tables or built):
                # Nothing to commit: Ctrl-C stays free to stop a long concurrent build below.
                await transaction.rollback()
        if not dry_run:
            for index_name in report.concurrent_indexes:
                target = _index_table(report, tables, index_name)
                if target is not None:
                    await build_email_index_concurrently(engine, *target)
        return report
    finally:
        await engine.dispose()


async def build_email_index_concurrently(
    engine: AsyncEngine, table_name: str, schema: str | None = None
) -> None:
    """Build the unique ``lower(email)`` index on PostgreSQL with ``CONCURRENTLY``, so the app's
    writes go on meanwhile; the invalid leftover of a failed build is dropped first."""
    from sqlalchemy import Column, Index, MetaData, String
    from sqlalchemy.schema import DropIndex

    async with engine.connect() as connection:
        _, invalid = await connection.run_sync(email_index_state, table_name, schema)
    # A bare table of the same name: the index must not join the app's own metadata.
    table = Table(table_name, MetaData(), Column("email", String), schema=schema)
    drops = [
        DropIndex(Index(stale, table.c.email, postgresql_concurrently=True)) for stale in invalid
    ]
    index = Index(
        email_lower_index_name(table_name),
        func.lower(table.c.email),
        unique=True,
        postgresql_concurrently=True,
    )
    await execute_alone(engine, [*drops, CreateIndex(index, if_not_exists=True)])
