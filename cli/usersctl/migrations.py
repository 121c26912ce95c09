"""Databases whose schema an app's Alembic migrations manage, and what to tell their owners.

A database with an ``alembic_version`` table is the app's to change: an index usersctl adds
there is one the app's models do not declare, so ``alembic check`` fails and the app's next
``alembic revision --autogenerate`` writes a migration that drops it again. There usersctl
prints what to add to the app instead: the ``Index(...)`` for the model's ``__table_args__``,
and a migration that builds it (concurrently on PostgreSQL, so the app keeps writing).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from usersctl.db import email_lower_index_name

#: The table in which Alembic records a database's revision (Alembic's default name).
ALEMBIC_VERSION_TABLE = "alembic_version"


def is_alembic_managed(connection: Connection) -> bool:
    """Whether the database has Alembic's ``alembic_version`` table (in the default schema)."""
    from sqlalchemy import inspect

    return inspect(connection).has_table(ALEMBIC_VERSION_TABLE)


def database_index_names(connection: Connection, table_name: str) -> list[str]:
    """The names of the indexes on ``table_name`` that Alembic's autogenerate compares with the
    model's: all but those that serve a primary key or a unique constraint. Read from the
    catalogue, since SQLAlchemy does not reflect SQLite's expression indexes."""
    if connection.dialect.name == "postgresql":
        statement = text(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_class t ON t.oid = i.indrelid "
            "WHERE t.relname = :t AND pg_table_is_visible(t.oid) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) "
            "ORDER BY c.relname"
        )
    elif connection.dialect.name == "mysql":
        # Every index but the primary key's: a UNIQUE column's is an index there too, and
        # SQLAlchemy reflects it as one.
        statement = text(
            "SELECT DISTINCT INDEX_NAME FROM information_schema.STATISTICS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = :t AND INDEX_NAME <> 'PRIMARY' "
            "ORDER BY INDEX_NAME"
        )
    else:
        # Indexes that SQLite makes for constraints (sqlite_autoindex_...) have no SQL.
        statement = text(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = :t "
            "AND sql IS NOT NULL ORDER BY name"
        )
    return [str(name) for (name,) in connection.execute(statement, {"t": table_name})]


@dataclass(frozen=True)
class IndexAdvice:
    """What an Alembic-managed app adds to build the unique ``lower(email)`` index itself."""

    table_name: str
    index_name: str
    #: The line for the model's ``__table_args__``.
    model_line: str
    #: ``upgrade()`` and ``downgrade()`` for a new revision, for the database's dialect.
    migration: str

    def as_dict(self) -> dict[str, str]:
        return {
            "table": self.table_name,
            "index": self.index_name,
            "model": self.model_line,
            "migration": self.migration,
        }


def _call(function: str, arguments: list[str], indent: str) -> str:
    """``function(...)`` on one line when it fits in 99 characters, else one argument a line."""
    one_line = f"{indent}{function}({', '.join(arguments)})"
    if len(one_line) <= 99:
        return one_line
    inner = "".join(f"{indent}    {argument},\n" for argument in arguments)
    return f"{indent}{function}(\n{inner}{indent})"


def email_index_advice(
    table_name: str, dialect_name: str, *, schema: str | None = None
) -> IndexAdvice:
    """The ``Index(...)`` and the migration that give ``table_name`` usersctl's unique
    ``lower(email)`` index, for a database of ``dialect_name`` (``postgresql``, ``sqlite``; on
    ``mysql`` the unique index on ``email``)."""
    name = email_lower_index_name(table_name)
    if dialect_name == "mysql":
        # No expression indexes on MariaDB: the unique index is on email itself, whose _ci
        # collation compares addresses without their case (see schema._mysql_email_index_state).
        model_line = f'Index("{name}", "email", unique=True)'
        columns = '["email"]'
    else:
        model_line = f'Index("{name}", text("lower(email)"), unique=True)'
        columns = '[sa.text("lower(email)")]'
    concurrently = dialect_name == "postgresql"
    where = [f'schema="{schema}"'] if schema else []
    create = [f'"{name}"', f'"{table_name}"', columns, "unique=True", *where]
    drop = [f'"{name}"', f'table_name="{table_name}"', *where]
    if concurrently:
        create.append("postgresql_concurrently=True")
        drop.append("postgresql_concurrently=True")
        # CREATE INDEX CONCURRENTLY refuses to run inside a transaction, and Alembic runs each
        # migration in one: its autocommit block commits what came before and runs this alone.
        block = "    with op.get_context().autocommit_block():\n"
        upgrade = block + _call("op.create_index", create, " " * 8)
        downgrade = block + _call("op.drop_index", drop, " " * 8)
    else:
        upgrade = _call("op.create_index", create, " " * 4)
        downgrade = _call("op.drop_index", drop, " " * 4)
    migration = f"def upgrade() -> None:\n{upgrade}\n\n\ndef downgrade() -> None:\n{downgrade}\n"
    return IndexAdvice(table_name, name, model_line, migration)


def index_advice_for(
    database_url: str, model_path: str | None = None, table_name: str | None = None
) -> IndexAdvice:
    """The advice for the user table of the model at ``model_path`` (else the table named
    ``table_name``, ``schema.name`` on PostgreSQL, else ``user``), in the dialect of
    ``database_url``, without connecting."""
    from usersctl.engine import normalize_url
    from usersctl.models import USER_TABLE, load_user_model

    dialect = normalize_url(database_url).get_backend_name()
    if model_path is None:
        schema, _, name = (table_name or USER_TABLE).rpartition(".")
        return email_index_advice(name, dialect, schema=schema or None)
    table = load_user_model(model_path, table_name).table
    return email_index_advice(table.name, dialect, schema=table.schema)
