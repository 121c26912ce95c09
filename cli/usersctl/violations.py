"""A constraint the database enforced (unique, foreign key, NOT NULL, check), said in words.

Read from the driver's error: asyncpg names the constraint, the table and (in its detail) the
columns; SQLite names the table and columns of a unique or NOT NULL constraint, and nothing for
a foreign key (``broken_reference`` finds that one by reading the referred tables). The values
in the driver's detail are left out: they may be secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.engine import Connection

UNIQUE = "unique"
FOREIGN_KEY = "foreign key"
NOT_NULL = "not null"
CHECK = "check"

_SQLSTATES = {"23505": UNIQUE, "23503": FOREIGN_KEY, "23502": NOT_NULL, "23514": CHECK}


@dataclass(frozen=True)
class Violation:
    """Which kind of constraint refused the change, and a sentence that says so."""

    kind: str
    message: str
    #: SQLite's "UNIQUE constraint failed: user.username": the table and the columns it names.
    table: str | None = None
    columns: tuple[str, ...] = ()

    @property
    def is_conflict(self) -> bool:
        """A clash with rows already there (unique, foreign key), not a bad value."""
        return self.kind in (UNIQUE, FOREIGN_KEY)


def _quoted(text: str, after: str) -> str | None:
    found = re.search(after + r' "([^"]+)"', text)
    return found.group(1) if found else None


def _postgres(error: BaseException, kind: str) -> Violation:
    constraint = getattr(error, "constraint_name", None)
    table = getattr(error, "table_name", None)
    detail = str(getattr(error, "detail", None) or "")
    text = str(getattr(error, "message", None) or error)
    keys = re.match(r"Key \((.+?)\)=", detail)
    columns = keys.group(1) if keys else getattr(error, "column_name", None)
    named = f" {constraint}" if constraint else ""
    if kind == UNIQUE:
        where = f" on {table}.{columns}" if table and columns else ""
        return Violation(
            kind, f"unique constraint{named}{where}: another row already has that value"
        )
    if kind == FOREIGN_KEY:
        deleting = text.startswith("update or delete on table")
        if deleting:
            target = _quoted(text, "update or delete on table")
            return Violation(
                kind,
                f"foreign key{named}: rows of {table} still refer to the row of {target} being "
                f"changed or deleted ({target}.{columns})",
            )
        target = _quoted(detail, "is not present in table")
        return Violation(
            kind, f"foreign key{named} on {table}.{columns}: no row of {target} has that value"
        )
    if kind == NOT_NULL:
        column = getattr(error, "column_name", None)
        return Violation(kind, f"{table}.{column} cannot be empty (NOT NULL)")
    return Violation(kind, f"check constraint{named} on {table} refused the value")


def _sqlite(text: str) -> Violation | None:
    for prefix, kind in (
        ("UNIQUE constraint failed: ", UNIQUE),
        ("NOT NULL constraint failed: ", NOT_NULL),
        ("CHECK constraint failed: ", CHECK),
    ):
        if text.startswith(prefix):
            what = text[len(prefix) :].strip()
            if kind == UNIQUE:
                message = f"unique constraint on {what}: another row already has that value"
                named = [part.strip().partition(".") for part in what.split(",")]
                if all(dot for _, dot, _ in named) and len({t for t, _, _ in named}) == 1:
                    columns = tuple(column for _, _, column in named)
                    return Violation(kind, message, named[0][0], columns)
            elif kind == NOT_NULL:
                message = f"{what} cannot be empty (NOT NULL)"
            else:
                message = f"check constraint {what} refused the value"
            return Violation(kind, message)
    if text.startswith("FOREIGN KEY constraint failed"):
        return Violation(
            FOREIGN_KEY,
            "foreign key constraint (SQLite does not say which): a row would refer to a row "
            "that does not exist, or rows still refer to the row being deleted",
        )
    return None


def _mysql(number: int, text: str) -> Violation | None:
    """MySQL/MariaDB: the error number says which kind; the text names the key (a unique one),
    or the constraint, the tables and the columns (a foreign key), or the column (NOT NULL).
    A duplicate entry's value is left out, as it may be a secret."""
    if number in (1062, 1586):  # Duplicate entry 'x' for key 'name'
        key = re.search(r"for key '([^']+)'", text)
        named = f" {key.group(1).rpartition('.')[2]}" if key else ""
        return Violation(UNIQUE, f"unique constraint{named}: another row already has that value")
    if number in (1451, 1452):
        found = re.search(
            r'\(["`](?:[^"`]+)["`]\.["`]([^"`]+)["`], CONSTRAINT ["`]([^"`]+)["`] FOREIGN KEY '
            r'\(([^)]*)\) REFERENCES ["`]([^"`]+)["`] \(([^)]*)\)',
            text,
        )
        if found is None:
            return Violation(FOREIGN_KEY, f"foreign key constraint: {text}")
        table, constraint, columns, target, targets = (
            part.replace('"', "").replace("`", "") for part in found.groups()
        )
        if number == 1451:  # Cannot delete or update a parent row
            return Violation(
                FOREIGN_KEY,
                f"foreign key {constraint}: rows of {table} still refer to the row of {target} "
                f"being changed or deleted ({target}.{targets})",
            )
        return Violation(
            FOREIGN_KEY,
            f"foreign key {constraint} on {table}.{columns}: no row of {target} has that value",
        )
    if number in (1048, 1364):  # Column 'x' cannot be null / has no default value
        column = re.search(r"[Ff]ield '([^']+)'|Column '([^']+)'", text)
        name = (column.group(1) or column.group(2)) if column else "a column"
        return Violation(NOT_NULL, f"{name} cannot be empty (NOT NULL)")
    if number in (3819, 4025):  # CHECK constraint 'x' is violated / failed
        return Violation(CHECK, f"check constraint refused the value ({text})")
    return None


def describe_violation(exc: BaseException) -> Violation | None:
    """The constraint an ``IntegrityError`` reports, in words; None when it is none of these."""
    original = getattr(exc, "orig", None) or exc
    args: tuple[Any, ...] = tuple(getattr(original, "args", ()))
    if (
        type(original).__module__.startswith(("asyncmy", "pymysql"))
        and len(args) >= 2
        and isinstance(args[0], int)
    ):
        return _mysql(args[0], str(args[1]))
    cause = original.__cause__
    state = getattr(original, "sqlstate", None) or getattr(cause, "sqlstate", None)
    kind = _SQLSTATES.get(str(state or ""))
    if kind is not None:
        return _postgres(cause if cause is not None else original, kind)
    text = str(original).strip()
    return _sqlite(text.splitlines()[0] if text else "")


def broken_reference(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]]
) -> tuple[str, int] | None:
    """Which foreign key of ``table`` the ``rows`` (values by column name) break, in words, and
    the index of the first row that breaks it: SQLite says only "FOREIGN KEY constraint failed".
    None when none is broken."""
    from sqlalchemy import Column, MetaData, Table, inspect, select, tuple_, type_coerce

    inspector = inspect(connection)
    for key in inspector.get_foreign_keys(table.name, schema=table.schema):
        columns, targets = key["constrained_columns"], key["referred_columns"]
        if not all(name in table.c for name in columns):
            continue
        first: dict[tuple[Any, ...], int] = {}
        for index, row in enumerate(rows):
            value = tuple(row.get(name) for name in columns)
            if None not in value:
                first.setdefault(value, index)
        if not first:
            continue
        referred = Table(
            key["referred_table"],
            MetaData(),
            *(Column(name) for name in targets),
            schema=key.get("referred_schema"),
        )
        # Read and compared as the user table's columns store them (a UUID as CHAR(36) text).
        read = [
            type_coerce(referred.c[target], table.c[name].type)
            for name, target in zip(columns, targets, strict=True)
        ]
        present: set[tuple[Any, ...]] = set()
        wanted = list(first)
        for start in range(0, len(wanted), 500):
            batch = wanted[start : start + 500]
            left: Any = read[0] if len(read) == 1 else tuple_(*read)
            values = [value[0] for value in batch] if len(read) == 1 else batch
            found = connection.execute(select(*read).where(left.in_(values)))
            present.update(tuple(row) for row in found)
        missing = [value for value in wanted if value not in present]
        if missing:
            name = f" {key['name']}" if key.get("name") else ""
            where = ", ".join(f"{table.name}.{column}" for column in columns)
            message = (
                f"foreign key{name} on {where}: no row of {key['referred_table']} has that "
                f"{', '.join(targets)}"
            )
            return message, min(first[value] for value in missing)
    return None


def unique_constraint_name(
    connection: Connection, table: Table, columns: Sequence[str]
) -> str | None:
    """The name of ``table``'s unique constraint or index on exactly ``columns``: SQLite names
    only the columns. None when it has no name of its own (SQLite's ``sqlite_autoindex_...``)."""
    import warnings

    from sqlalchemy import inspect
    from sqlalchemy.exc import SAWarning

    inspector = inspect(connection)
    wanted: list[str | None] = list(columns)
    with warnings.catch_warnings():
        # An expression index (usersctl's own lower(email)) is skipped, and need not be read.
        warnings.simplefilter("ignore", SAWarning)
        candidates: list[tuple[str | None, list[str | None]]] = [
            (index["name"], list(index["column_names"]))
            for index in inspector.get_indexes(table.name, schema=table.schema)
            if index.get("unique")
        ]
        candidates += [
            (constraint["name"], list(constraint["column_names"]))
            for constraint in inspector.get_unique_constraints(table.name, schema=table.schema)
        ]
    for name, names in candidates:
        if names == wanted and name and not name.startswith("sqlite_autoindex"):
            return name
    return None
