"""Which tables are the app's: the user table found by its shape, whatever its name, and the
OAuth-account and access-token tables by their foreign key to it.

Apps name their user table ``user``, ``users`` or ``auth_user``, and put it in a schema of their
own; what every FastAPI Users user table has is its columns (``BASE_COLUMNS``). One catalog query
per dialect reads, for every table, which of FastAPI Users' column names it has and where its
``user_id`` points, so finding the tables costs the one query that listing the table names cost
before. On PostgreSQL the user table is looked for in the schemas of the search path; tables of
other schemas are only named in messages, and reached with ``--table schema.name``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Column, ForeignKey, MetaData, Table, text
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from usersctl.db import add_email_lower_index
from usersctl.errors import Conflict, InvalidInput, TablesMissing
from usersctl.models import (
    BASE_COLUMNS,
    OAUTH_COLUMNS,
    TOKEN_COLUMNS,
    USER_TABLE,
)

_COLUMNS = sorted(set(BASE_COLUMNS) | OAUTH_COLUMNS | TOKEN_COLUMNS)
MAX_LISTED = 20


@dataclass(frozen=True, order=True)
class TableName:
    """A table as SQL names it: ``schema`` is None for a table its bare name reaches (SQLite's,
    or on PostgreSQL one the search path finds first)."""

    name: str
    schema: str | None = None

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name


def parse_table_name(raw: str, *, postgresql: bool) -> TableName:
    """``--table NAME``, or ``schema.name`` on PostgreSQL (SQLite has no schemas)."""
    text_ = raw.strip()
    schema, dot, name = text_.partition(".") if postgresql else ("", "", text_)
    if not dot:
        schema, name = "", text_
    if not name or (dot and not schema):
        raise InvalidInput(f"--table {raw!r}: expected NAME or, on PostgreSQL, SCHEMA.NAME")
    return TableName(name, schema or None)


@dataclass
class Catalog:
    """What one look at the database's catalog found: every table, the FastAPI Users columns
    each has, the tables its ``user_id`` column references (by their ``id``), and the table its
    own ``id`` references, if any: the parent table of a joined-table subclass, which holds the
    rest of each row (the app's ``class User(Account)``)."""

    tables: list[TableName] = field(default_factory=list)
    columns: dict[TableName, set[str]] = field(default_factory=dict)
    user_id_targets: dict[TableName, set[TableName]] = field(default_factory=dict)
    id_targets: dict[TableName, set[TableName]] = field(default_factory=dict)
    #: PostgreSQL: the schema of each table, also of those its bare name reaches.
    schemas: dict[TableName, str] = field(default_factory=dict)
    #: PostgreSQL: the tables in schemas outside the search path (only ``--table`` reaches them).
    outside: set[TableName] = field(default_factory=set)
    #: SQLite: table names match in any case.
    any_case: bool = False

    def add(self, name: TableName, column: str | None) -> None:
        if name not in self.columns:
            self.tables.append(name)
            self.columns[name] = set()
        if column is not None:
            self.columns[name].add(column)

    def targets(self, column: str) -> dict[TableName, set[TableName]]:
        """Where the foreign keys on ``column`` (``user_id`` or ``id``) of each table point."""
        return self.id_targets if column == "id" else self.user_id_targets

    def in_path(self) -> list[TableName]:
        """The tables a bare name, or the search path, reaches."""
        return [name for name in self.tables if name not in self.outside]

    def parents(self, name: TableName) -> list[TableName]:
        """The tables ``name`` inherits from, nearest first: the one its ``id`` references by
        its ``id`` (a foreign key to one table only), then that one's, and so on."""
        found: list[TableName] = []
        while True:
            targets = self.id_targets.get(name, set()) - {name}
            if len(targets) != 1:
                return found
            (name,) = targets
            if name in found or name not in self.columns:
                return found
            found.append(name)

    def all_columns(self, name: TableName) -> set[str]:
        """The FastAPI Users columns of ``name`` and of the tables it inherits from."""
        return set().union(self.columns[name], *(self.columns[p] for p in self.parents(name)))

    def is_user_table(self, name: TableName) -> bool:
        """Whether ``name`` has every column of FastAPI Users' user table, itself or with the
        tables it inherits from (an ``email`` in the parent table), while its parent has not:
        a subclass of a whole user table (``class Admin(User)``) is not another user table."""
        if not self.all_columns(name) >= set(BASE_COLUMNS):
            return False
        parents = self.parents(name)
        return not parents or not self.all_columns(parents[0]) >= set(BASE_COLUMNS)

    def user_tables(self, *, anywhere: bool = False) -> list[TableName]:
        """The tables (of the search path, or ``anywhere``) that have every column of FastAPI
        Users' user table (see ``is_user_table``)."""
        return [
            name
            for name in (self.tables if anywhere else self.in_path())
            if self.is_user_table(name)
        ]

    def find(self, wanted: TableName) -> TableName | None:
        """The table ``wanted`` names, by its bare name or by ``schema.name``."""
        for name in self.tables:
            same = name.name.lower() == wanted.name.lower() if self.any_case else None
            if not (same or name.name == wanted.name):
                continue
            if wanted.schema is None and name.schema is None:
                return name
            if wanted.schema is not None and wanted.schema == self.schemas.get(name, name.schema):
                return name
        return None

    def related(
        self, user_table: TableName, columns: frozenset[str], preferred: str
    ) -> TableName | None:
        """The table with ``columns`` whose ``user_id`` references ``user_table``, or a table it
        inherits from (FastAPI Users' own name first, when several do)."""
        owners = {user_table, *self.parents(user_table)}
        found = [
            name
            for name in self.tables
            if self.columns[name] >= columns and owners & self.user_id_targets.get(name, set())
        ]
        for name in found:
            if name.name == preferred:
                return name
        return found[0] if found else None


_LISTED_COLUMNS = ", ".join(f"'{name}'" for name in _COLUMNS)

_SQLITE_CATALOG = f"""
SELECT m.name, c.name, f."table"
FROM sqlite_master AS m
LEFT JOIN pragma_table_info(m.name) AS c ON c.name IN ({_LISTED_COLUMNS})
LEFT JOIN pragma_foreign_key_list(m.name) AS f
       ON c.name IN ('user_id', 'id') AND f."from" = c.name AND coalesce(f."to", 'id') = 'id'
      AND NOT EXISTS (SELECT 1 FROM pragma_foreign_key_list(m.name) AS g
                      WHERE g.id = f.id AND g.seq > 0)
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
"""

# The tables of every schema but the system's, with their FastAPI Users columns and the table a
# one-column foreign key on user_id (or on id: a parent table) references by its id; and whether
# their schema is on the search path. pg_table_is_visible says whether a table's bare name reaches it: it is the first
# of its name along the search path.
_POSTGRESQL_CATALOG = f"""
SELECT c.relname, n.nspname, pg_table_is_visible(c.oid),
       n.nspname = ANY (current_schemas(false)), a.attname,
       r.relname, rn.nspname, pg_table_is_visible(r.oid)
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
     AND a.attname IN ({_LISTED_COLUMNS})
LEFT JOIN pg_constraint AS k ON a.attname IN ('user_id', 'id') AND k.conrelid = c.oid
     AND k.contype = 'f' AND k.conkey = ARRAY[a.attnum]
LEFT JOIN pg_attribute AS ra ON ra.attrelid = k.confrelid AND k.confkey = ARRAY[ra.attnum]
LEFT JOIN pg_class AS r ON r.oid = k.confrelid AND ra.attname = 'id'
LEFT JOIN pg_namespace AS rn ON rn.oid = r.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
"""


# MySQL/MariaDB: the tables of the connection's database, with their FastAPI Users columns and
# the table a one-column foreign key on user_id (or id) references by its id.
_MYSQL_CATALOG = f"""
SELECT t.TABLE_NAME, c.COLUMN_NAME, k.REFERENCED_TABLE_NAME
FROM information_schema.TABLES AS t
LEFT JOIN information_schema.COLUMNS AS c
       ON c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME
      AND c.COLUMN_NAME IN ({_LISTED_COLUMNS})
LEFT JOIN information_schema.KEY_COLUMN_USAGE AS k
       ON c.COLUMN_NAME IN ('user_id', 'id') AND k.TABLE_SCHEMA = t.TABLE_SCHEMA
      AND k.TABLE_NAME = t.TABLE_NAME AND k.COLUMN_NAME = c.COLUMN_NAME
      AND k.REFERENCED_TABLE_SCHEMA = t.TABLE_SCHEMA AND k.REFERENCED_COLUMN_NAME = 'id'
      AND NOT EXISTS (SELECT 1 FROM information_schema.KEY_COLUMN_USAGE AS g
                      WHERE g.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA
                        AND g.TABLE_NAME = k.TABLE_NAME
                        AND g.CONSTRAINT_NAME = k.CONSTRAINT_NAME AND g.ORDINAL_POSITION > 1)
WHERE t.TABLE_SCHEMA = DATABASE() AND t.TABLE_TYPE = 'BASE TABLE'
"""


def read_catalog(connection: Connection) -> Catalog:
    """Every table of the database (on PostgreSQL: of every schema, those outside the search
    path marked), in one query, with the FastAPI Users columns it has and where its ``user_id``
    points."""
    catalog = Catalog()
    if connection.dialect.name == "postgresql":
        rows = connection.execute(text(_POSTGRESQL_CATALOG))
        for row in rows:
            table, namespace, visible, on_path, column, target, target_namespace, reached = row
            name = TableName(table, None if visible else namespace)
            catalog.add(name, column)
            catalog.schemas[name] = namespace
            if not on_path:
                catalog.outside.add(name)
            if target is not None:
                referenced = TableName(target, None if reached else target_namespace)
                catalog.targets(column).setdefault(name, set()).add(referenced)
    elif connection.dialect.name == "mysql":
        for table, column, target in connection.execute(text(_MYSQL_CATALOG)):
            catalog.add(TableName(table), column)
            if target is not None:
                catalog.targets(column).setdefault(TableName(table), set()).add(TableName(target))
    else:
        catalog.any_case = True
        targets: list[tuple[TableName, str, str]] = []
        for table, column, target in connection.execute(text(_SQLITE_CATALOG)):
            catalog.add(TableName(table), column)
            if target is not None:
                targets.append((TableName(table), column, target))
        # SQLite matches table names in any case, as a foreign key may write them.
        by_lower = {name.name.lower(): name for name in catalog.tables}
        for name, column, target in targets:
            referenced = by_lower.get(target.lower(), TableName(target))
            catalog.targets(column).setdefault(name, set()).add(referenced)
    # A bare name (schema None) sorts before the same name in a schema: None and a schema's
    # name cannot be compared.
    catalog.tables.sort(key=lambda table: (table.name, table.schema or ""))
    return catalog


def _listed(names: Sequence[TableName]) -> str:
    shown = ", ".join(str(name) for name in names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return shown + (f" and {more} more" if more > 0 else "")


def find_user_table(catalog: Catalog, wanted: TableName | None = None) -> TableName:
    """The user table: the one ``wanted`` names (``--table``), else the one table of the search
    path that has FastAPI Users' user columns. Raises ``TablesMissing`` when there is none (naming
    the tables there are) and ``InvalidInput`` when several tables have the columns."""
    candidates = catalog.user_tables()
    elsewhere = [name for name in catalog.user_tables(anywhere=True) if name not in candidates]
    hint = (
        f"; outside the search path, {_listed(elsewhere)} has FastAPI Users' user columns: name "
        f"it with --table {elsewhere[0]}"
        if elsewhere
        else ""
    )
    if wanted is not None:
        found = catalog.find(wanted)
        if found is None:
            if candidates or elsewhere:
                which = _listed(candidates + elsewhere)
                found_hint = f"; the tables with FastAPI Users' user columns: {which}"
            elif catalog.tables:
                found_hint = f"; its tables: {_listed(catalog.tables)}"
            else:
                found_hint = f"; run `usersctl --table {wanted} init-db` to create it"
            raise TablesMissing(f"the database has no table {str(wanted)!r} (--table){found_hint}")
        missing = [name for name in BASE_COLUMNS if name not in catalog.all_columns(found)]
        if missing:
            raise TablesMissing(
                f"table {str(found)!r} lacks the column(s) {', '.join(missing)} that FastAPI "
                "Users needs"
            )
        return found
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise InvalidInput(
            f"several tables have FastAPI Users' user columns: {_listed(candidates)}; choose one "
            "with --table NAME (or USERSCTL_TABLE)"
        )
    tables = catalog.in_path()
    if not tables and not elsewhere:
        raise TablesMissing("the database has no user table; run `usersctl init-db` to create it")
    if not tables:
        raise TablesMissing(f"the database has no table in the search path{hint}")
    near = [
        f"{name} lacks {', '.join(c for c in BASE_COLUMNS if c not in catalog.all_columns(name))}"
        for name in tables
        if "email" in catalog.all_columns(name)
        and not catalog.all_columns(name) >= set(BASE_COLUMNS)
    ]
    raise TablesMissing(
        "no FastAPI Users user table found: no table has all of "
        f"{', '.join(BASE_COLUMNS)}{' (' + '; '.join(near) + ')' if near else ''}; "
        f"the database has: {_listed(tables)}{hint}"
    )


def refuse_second_user_table(catalog: Catalog, creating: TableName) -> None:
    """``init-db`` without ``--table``: refuse (``Conflict``) to create ``user`` beside a user table
    of another name (in any schema), which the app reads while the new one would stay empty."""
    if catalog.find(creating) is not None:
        return
    others = catalog.user_tables(anywhere=True)
    if others:
        name = str(others[0]) if len(others) == 1 else None
        which = (
            f"a FastAPI Users user table, {name!r}" if name else f"user tables: {_listed(others)}"
        )
        option = f"--table {name}" if name else "--table NAME"
        raise Conflict(
            f"the database already has {which}; init-db would create a second, empty "
            f"{str(creating)!r} table beside it. Run `usersctl {option} init-db` to work on it "
            "(it adds the lower(email) index)"
        )


def renamed_tables(
    tables: Sequence[Table], name: TableName, id_type: TypeEngine[Any] | None = None
) -> list[Table]:
    """usersctl's built-in tables (``user`` first), with the user table named ``name``: the OAuth
    and token tables keep their names and reference it instead, indexes are named after it.
    ``id_type`` is the id type of the app's table of that name, when it exists: the ``user_id``
    columns take it (an app's ids may be integers)."""
    metadata = MetaData()
    user, *others = tables
    renamed = Table(
        name.name, metadata, *(_copy(column) for column in user.columns), schema=name.schema
    )
    add_email_lower_index(renamed)
    built = [renamed]
    for table in others:
        columns = []
        for column in table.columns:
            copy = _copy(column)
            if column.foreign_keys and id_type is not None:
                copy.type = id_type
            if column.foreign_keys:
                copy.append_foreign_key(ForeignKey(renamed.c.id, ondelete="CASCADE"))
            columns.append(copy)
        built.append(Table(table.name, metadata, *columns, schema=name.schema))
    return built


def _copy(column: Column[Any]) -> Column[Any]:
    """The column's type and constraints (what CREATE TABLE says), without its table or keys."""
    return Column(
        column.name,
        column.type,
        primary_key=column.primary_key,
        nullable=column.nullable,
        index=column.index,
        unique=column.unique,
    )


async def refuse_beside_user_table(url: str, *, connect_timeout: float) -> None:
    """``refuse_second_user_table`` for ``user`` on the database at ``url``, if it exists yet."""
    from usersctl.engine import create_engine, normalize_url, sqlite_path

    parsed = normalize_url(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        return  # init-db creates the file: nothing there to clash with
    engine = create_engine(parsed, connect_timeout=connect_timeout, sqlite_begin="BEGIN")
    try:
        async with engine.connect() as connection:
            catalog = await connection.run_sync(read_catalog)
    finally:
        await engine.dispose()
    refuse_second_user_table(catalog, TableName(USER_TABLE))


async def existing_id_type(
    url: str, name: TableName, *, connect_timeout: float
) -> TypeEngine[Any] | None:
    """The type of the ``id`` of the table ``name`` at ``url``; None when it does not exist yet."""
    from sqlalchemy import inspect

    from usersctl.engine import create_engine, normalize_url, sqlite_path

    parsed = normalize_url(url)
    path = sqlite_path(parsed)
    if path is not None and not path.exists():
        return None
    engine = create_engine(parsed, connect_timeout=connect_timeout, sqlite_begin="BEGIN")

    def read(connection: Connection) -> TypeEngine[Any] | None:
        inspector = inspect(connection)
        if not inspector.has_table(name.name, schema=name.schema):
            return None
        columns = inspector.get_columns(name.name, schema=name.schema)
        return next((column["type"] for column in columns if column["name"] == "id"), None)

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(read)
    finally:
        await engine.dispose()


def table_for_url(url: str, raw: str) -> TableName:
    """``--table`` parsed for the database at ``url`` (``schema.name`` only on PostgreSQL)."""
    from usersctl.engine import normalize_url

    postgresql = normalize_url(url).get_backend_name() == "postgresql"
    return parse_table_name(raw, postgresql=postgresql)
